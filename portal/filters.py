"""Template filters: numbers, money, dates and durations written the way people read them."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import jinja2

CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (float, Decimal)) and value != int(value):
        return f"{float(value):,.2f}".rstrip("0").rstrip(".")
    return f"{int(value):,}"


def money(cents: Any, currency: str = "usd") -> str:
    if cents is None:
        return "—"
    symbol = CURRENCY_SYMBOLS.get((currency or "usd").lower())
    sign = "-" if int(cents) < 0 else ""  # -$27.00, not $-27.00
    amount = f"{abs(int(cents)) / 100:,.2f}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def datefmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, datetime):
        value = _aware(value).astimezone(timezone.utc)
        return f"{value.day} {value.strftime('%b %Y')}"
    if isinstance(value, date):
        return f"{value.day} {value.strftime('%b %Y')}"
    return str(value)


def datetimefmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, datetime):
        value = _aware(value).astimezone(timezone.utc)
        return f"{value.day} {value.strftime('%b %Y, %H:%M')} UTC"
    return str(value)


def isoformat(value: Any) -> str:
    return _aware(value).isoformat() if isinstance(value, datetime) else str(value or "")


def ago(value: Any) -> str:
    if not isinstance(value, datetime):
        return "—"
    seconds = (datetime.now(timezone.utc) - _aware(value)).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def seconds(value: Any) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)}:{int(value % 60):02d}"


def filesize(value: Any) -> str:
    size = float(value or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def install(env: jinja2.Environment) -> None:
    env.filters.update(
        num=num, money=money, date=datefmt, datetime=datetimefmt, iso=isoformat, ago=ago, seconds=seconds,
        pretty_json=pretty_json, filesize=filesize,
    )
