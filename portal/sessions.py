"""Browser sessions: an encrypted cookie that points at a server-side record in Redis.

The cookie (aiohttp-session, Fernet-encrypted, HttpOnly, SameSite=Lax, Secure in production)
holds a random session id, the user id and the CSRF token. Redis holds the session id, so
signing out, changing the password, suspension and account deletion end sessions at once
instead of waiting for a cookie to expire.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from dataclasses import dataclass

from aiohttp import web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from portal import SESSION_STORAGE
from server.appkeys import DB, REDIS, SETTINGS
from server.settings import Settings, SettingsError

COOKIE_NAME = "sfx_portal"
SESSION_TTL = 14 * 86400

PORTAL_USER = web.RequestKey("portal_user", object)  # PortalUser | None, cached per request
SESSION = web.RequestKey("portal_session", Session)


@dataclass(frozen=True)
class PortalUser:
    id: uuid.UUID
    email: str
    role: str
    status: str
    session_id: str
    email_verified: bool = True

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def session_key(secret: str) -> bytes:
    """SESSION_SECRET as 32 raw bytes; standard and URL-safe base64 are both accepted."""
    try:
        raw = base64.urlsafe_b64decode(secret.strip().replace("+", "-").replace("/", "_") + "==")
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SettingsError("SESSION_SECRET must be 32 random bytes, base64-encoded")
    return raw


def cookie_storage(settings: Settings) -> EncryptedCookieStorage:
    return EncryptedCookieStorage(
        session_key(settings.session_secret),
        cookie_name=COOKIE_NAME,
        max_age=SESSION_TTL,
        httponly=True,
        secure=settings.is_production,
        samesite="Lax",
    )


# aiohttp-session's own middleware keeps its objects under plain string keys on the request;
# the portal loads and saves through the same storage class under typed keys instead.


async def get_session(request: web.Request) -> Session:
    session = request.get(SESSION)
    if session is None:
        session = await request.app[SESSION_STORAGE].load_session(request)
        request[SESSION] = session
    return session


async def save_session(request: web.Request, response: web.StreamResponse) -> None:
    session = request.get(SESSION)
    if session is not None and session._changed and not response.prepared:
        await request.app[SESSION_STORAGE].save_session(request, response, session)


def _session_key(settings: Settings, sid: str) -> str:
    return settings.rkey("portal", "session", sid)


def _user_sessions_key(settings: Settings, user_id: uuid.UUID) -> str:
    return settings.rkey("portal", "user-sessions", user_id)


async def current_user(request: web.Request) -> PortalUser | None:
    """The signed-in, active user of this browser, or None."""
    if PORTAL_USER in request:
        return request[PORTAL_USER]  # type: ignore[return-value]
    user = await _load_user(request)
    request[PORTAL_USER] = user
    return user


async def _load_user(request: web.Request) -> PortalUser | None:
    session = await get_session(request)
    sid, uid = session.get("sid"), session.get("uid")
    if not sid or not uid:
        return None
    settings = request.app[SETTINGS]
    if await request.app[REDIS].get(_session_key(settings, sid)) != uid:
        _forget(session)
        return None
    row = await request.app[DB].fetchrow(
        "SELECT id, email::text AS email, role, status, email_verified_at FROM users WHERE id = $1", uuid.UUID(uid)
    )
    if row is None or row["status"] != "active":
        await end_session(request)
        return None
    return PortalUser(id=row["id"], email=row["email"], role=row["role"], status=row["status"], session_id=sid,
                      email_verified=row["email_verified_at"] is not None)


async def start_session(request: web.Request, user_id: uuid.UUID) -> None:
    """Sign this browser in; a fresh session id and CSRF token guard against session fixation."""
    settings = request.app[SETTINGS]
    redis = request.app[REDIS]
    sid = secrets.token_urlsafe(24)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(_session_key(settings, sid), str(user_id), ex=SESSION_TTL)
        pipe.sadd(_user_sessions_key(settings, user_id), sid)
        pipe.expire(_user_sessions_key(settings, user_id), SESSION_TTL)
        await pipe.execute()
    session = await get_session(request)
    session.invalidate()
    session["sid"] = sid
    session["uid"] = str(user_id)
    session["csrf"] = secrets.token_urlsafe(32)
    request.pop(PORTAL_USER, None)


async def end_session(request: web.Request) -> None:
    session = await get_session(request)
    sid, uid = session.get("sid"), session.get("uid")
    if sid:
        settings = request.app[SETTINGS]
        redis = request.app[REDIS]
        await redis.delete(_session_key(settings, sid))
        if uid:
            await redis.srem(_user_sessions_key(settings, uuid.UUID(uid)), sid)
    _forget(session)
    request[PORTAL_USER] = None


def _forget(session: Session) -> None:
    flashes = session.get("flash")
    session.invalidate()
    # A new anonymous CSRF token: the old one belonged to the signed-in session.
    session["csrf"] = secrets.token_urlsafe(32)
    if flashes:
        session["flash"] = flashes


async def end_all_sessions(app: web.Application, user_id: uuid.UUID, *, keep: str | None = None) -> int:
    """End every browser session of a user (except `keep`); returns how many ended."""
    settings = app[SETTINGS]
    redis = app[REDIS]
    key = _user_sessions_key(settings, user_id)
    sids = [s for s in await redis.smembers(key) if s != keep]
    if sids:
        await redis.delete(*[_session_key(settings, s) for s in sids])
        await redis.srem(key, *sids)
    return len(sids)


# --- flash messages ------------------------------------------------------------


async def flash(request: web.Request, message: str, level: str = "success") -> None:
    session = await get_session(request)
    session["flash"] = [*session.get("flash", []), [level, message]]


async def pop_flashes(request: web.Request) -> list[tuple[str, str]]:
    session = await get_session(request)
    flashes = session.get("flash") or []
    if flashes:
        del session["flash"]
    return [(level, message) for level, message in flashes]
