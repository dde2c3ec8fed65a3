"""`python -m server keys ...`: the operator's view of the key bank. Secrets go in, never out."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone
from typing import Awaitable, Callable

from server.keybank.service import PROVIDERS, KeyBank, KeyView
from server.settings import Settings
from server.web.errors import ApiError


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="manage the provider key bank (ElevenLabs and LLM keys)")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    add = sub.add_parser("add", help="validate a key with its provider and store it encrypted (secret read from stdin)")
    add.add_argument("--provider", required=True, choices=PROVIDERS)
    add.add_argument("--label", required=True, help="a name for the key, unique per provider")
    add.add_argument("--max-concurrency", type=int, required=True, help="concurrent requests this key may carry")
    add.add_argument("--weight", type=int, default=1, help="relative share of traffic (default 1)")
    add.set_defaults(func=cmd_add)

    lst = sub.add_parser("list", help="list keys with status, load, cooldown and quota (never the secrets)")
    lst.add_argument("--provider", choices=PROVIDERS)
    lst.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    lst.set_defaults(func=cmd_list)

    disable = sub.add_parser("disable", help="take a key out of rotation")
    disable.add_argument("id", type=int)
    disable.add_argument("--reason", default="disabled by an operator")
    disable.set_defaults(func=cmd_disable)

    enable = sub.add_parser("enable", help="put a key back into rotation, clearing its cooldown")
    enable.add_argument("id", type=int)
    enable.set_defaults(func=cmd_enable)

    remove = sub.add_parser("remove", help="delete a key from the bank")
    remove.add_argument("id", type=int)
    remove.set_defaults(func=cmd_remove)

    rotate = sub.add_parser("rotate-master", help="re-encrypt every key under KEYBANK_ACTIVE_VERSION")
    rotate.set_defaults(func=cmd_rotate_master)


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from server.cli import read_secret

    secret = read_secret(f"{args.provider} API key (input hidden): ")

    async def go(bank: KeyBank) -> None:
        key = await bank.add_key(
            provider=args.provider, label=args.label, secret=secret, max_concurrency=args.max_concurrency, weight=args.weight
        )
        print(f"added key #{key.id} {key.provider} {key.label!r} ({key.masked}), status {key.status}, quota {_quota(key)}")

    return _run(settings, go)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def go(bank: KeyBank) -> None:
        keys = await bank.list_keys(args.provider)
        if args.json:
            print(json.dumps({"keys": [k.to_dict() for k in keys]}, indent=2))
        else:
            print(format_table(keys))

    return _run(settings, go)


def cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    async def go(bank: KeyBank) -> None:
        key = await bank.disable(args.id, args.reason)
        print(f"key #{key.id} {key.label!r} disabled")

    return _run(settings, go)


def cmd_enable(args: argparse.Namespace, settings: Settings) -> int:
    async def go(bank: KeyBank) -> None:
        key = await bank.enable(args.id)
        print(f"key #{key.id} {key.label!r} enabled")

    return _run(settings, go)


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def go(bank: KeyBank) -> None:
        await bank.remove(args.id)
        print(f"key #{args.id} removed")

    return _run(settings, go)


def cmd_rotate_master(args: argparse.Namespace, settings: Settings) -> int:
    async def go(bank: KeyBank) -> None:
        count = await bank.rotate_master()
        print(f"{count} key(s) re-encrypted under master key version {settings.keybank_active_version}")

    return _run(settings, go)


def _run(settings: Settings, action: Callable[[KeyBank], Awaitable[None]]) -> int:
    async def main() -> int:
        async with KeyBank.open(settings) as bank:
            try:
                await action(bank)
            except ApiError as exc:
                # The service's errors are written for people; no traceback needed.
                print(f"error: {exc.message}", file=sys.stderr)
                return 1
        return 0

    return asyncio.run(main())


COLUMNS = ("ID", "PROVIDER", "LABEL", "KEY", "STATUS", "IN-FLIGHT", "WEIGHT", "COOLDOWN", "QUOTA", "RESETS", "LAST ERROR")


def format_table(keys: list[KeyView]) -> str:
    if not keys:
        return "no provider keys"
    now = datetime.now(timezone.utc)
    rows = [
        (
            str(k.id),
            k.provider,
            k.label,
            k.masked,
            k.status + (f" ({k.disabled_reason})" if k.disabled_reason else ""),
            f"{k.in_flight}/{k.max_concurrency}",
            str(k.weight),
            f"{(k.cooldown_until - now).total_seconds():.0f}s" if k.cooldown_until else "-",
            _quota(k),
            k.quota_reset_at.strftime("%Y-%m-%d %H:%M") if k.quota_reset_at else "-",
            (k.last_error or "-")[:60],
        )
        for k in keys
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _quota(key: KeyView) -> str:
    if key.quota_limit is None:
        # LLM providers do not tell a key's limit; what this bank sent through it is still known.
        return f"{key.quota_used} used, limit unknown" if key.quota_used else "unknown"
    return f"{key.quota_used or 0}/{key.quota_limit} used"
