"""Reading submitted forms, and turning domain validation errors into per-field messages."""

from __future__ import annotations

import uuid
from typing import Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from server.web.api import NUL
from server.web.errors import ApiError

MAX_FIELD = 2000

# Fields the page re-rendered after a rejected form shows beside its inputs (set by the portal
# middleware, merged into the page's `errors` by `portal.web.render`).
REJECTED_FIELDS = web.RequestKey("portal_rejected_fields", dict)

NUL_MESSAGE = "must not contain the NUL character"


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class FormRejected(Exception):
    """A submitted form or query string holds text no field may hold; `errors` is {field: message}."""

    def __init__(self, errors: dict[str, str], location: str) -> None:
        self.errors = errors
        self.location = location  # "form", "query" or "path"
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "; ".join(f"“{name}” {message}" for name, message in self.errors.items())


async def read_form(request: web.Request) -> MultiDictProxy:
    """The submitted form (aiohttp keeps it, so later reads are free). A body that is not valid
    UTF-8 or not well-formed multipart is the client's mistake: 400, never a 500."""
    try:
        return await request.post()
    except (ValueError, HttpProcessingError):  # UnicodeDecodeError is a ValueError
        raise web.HTTPBadRequest(reason="The form could not be read") from None


async def check_input(request: web.Request) -> None:
    """Refuse text no field may hold in the address (path and query) and, for a submitted form, its fields."""
    reject_nul(request.match_info, "path")
    reject_nul(request.query, "query")
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.content_type in FORM_TYPES:
        reject_nul(await read_form(request), "form")


def reject_nul(values: Mapping[str, object], location: str) -> None:
    """One check for every field of every form and query string, before any handler runs:
    Postgres cannot store U+0000, so it would otherwise surface as a 500."""
    errors = {
        _printable(name): NUL_MESSAGE
        for name, value in values.items()
        if NUL in name or (isinstance(value, str) and NUL in value)
    }
    if errors:
        raise FormRejected(errors, location)


def _printable(name: str) -> str:
    return name.replace(NUL, "\\u0000")


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
