"""Reading submitted forms, and turning domain validation errors into per-field messages."""

from __future__ import annotations

import uuid

from aiohttp import web

from server.web.errors import ApiError

MAX_FIELD = 2000


async def form_data(request: web.Request) -> dict[str, str]:
    """Text fields of a urlencoded or multipart form, stripped (passwords are left exactly as typed)."""
    data = await request.post()
    fields: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, str) and name not in fields:
            value = value[:MAX_FIELD]
            fields[name] = value if "password" in name else value.strip()
    return fields


def field_errors(err: ApiError) -> dict[str, str]:
    """422 details (`{"fields": [{"field", "message"}]}`) as {field: message}; anything else as a form error."""
    errors: dict[str, str] = {}
    details = err.details if isinstance(err.details, dict) else {}
    for item in details.get("fields", []) or []:
        name = str(item.get("field") or "_form")
        errors.setdefault(name, str(item.get("message") or err.message))
    if not errors:
        field = details.get("field")
        errors[str(field) if field else "_form"] = err.message
    return errors


def parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise web.HTTPNotFound() from None


def parse_int(value: str | None, default: int, *, lo: int, hi: int) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return max(lo, min(hi, number))
