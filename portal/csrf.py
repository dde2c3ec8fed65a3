"""CSRF protection: a per-session token that every state-changing form must send back.

SameSite=Lax already keeps the cookie off most cross-site POSTs; the token also covers
older browsers and same-site attackers (other apps on a sibling subdomain).
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from portal.forms import read_form
from portal.sessions import get_session

FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRejected(Exception):
    """The form came without its token, or with a wrong one."""


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def check(request: web.Request) -> None:
    if request.method in SAFE_METHODS:
        return
    session = await get_session(request)
    expected = session.get("csrf")
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = (await read_form(request)).get(FIELD)
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()
