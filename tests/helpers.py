"""Helpers every domain's tests use to get a signed-in user through the real API."""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from dataclasses import dataclass, field

from server.web.logs import JsonFormatter

DEFAULT_PASSWORD = "correct horse battery"


@dataclass
class SignedIn:
    user_id: uuid.UUID
    email: str
    password: str
    access_token: str
    refresh_token: str
    device_id: uuid.UUID
    headers: dict[str, str] = field(default_factory=dict)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def sign_up(client, email: str | None = None, password: str = DEFAULT_PASSWORD, device_name: str = "Edit Suite") -> SignedIn:
    """Registers a new account through POST /v1/auth/register, confirms its address through the auth
    service (as following the mailed link does) and signs a device in: a user who may generate."""
    from server.appkeys import DB
    from server.auth import verification

    email = email or unique_email()
    resp = await client.post("/v1/auth/register", json={"email": email, "password": password})
    assert resp.status == 202, await resp.text()
    pool = client.server.app[DB]
    user_id = await pool.fetchval("SELECT id FROM users WHERE email = $1", email.strip())
    await verification.mark_verified(pool, user_id)
    return await sign_in(client, email, password, device_name)


async def sign_in(client, email: str, password: str = DEFAULT_PASSWORD, device_name: str = "Edit Suite") -> SignedIn:
    """Signs an existing account in on a new device through POST /v1/auth/login."""
    resp = await client.post("/v1/auth/login", json={"email": email, "password": password, "device_name": device_name})
    body = await resp.json()
    assert resp.status == 200, body
    return signed_in(body, password)


def signed_in(body: dict, password: str) -> SignedIn:
    return SignedIn(
        user_id=uuid.UUID(body["user"]["id"]),
        email=body["user"]["email"],
        password=password,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        device_id=uuid.UUID(body["device_id"]),
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )


async def make_admin(db, user_id: uuid.UUID) -> None:
    """Promotes an account; its existing access tokens act as admin at once (roles are read per request)."""
    status = await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", user_id)
    assert status == "UPDATE 1", status


@contextlib.contextmanager
def json_log_capture(caplog):
    """Every log line written meanwhile, as the production JSON formatter writes it (a StringIO),
    with caplog at DEBUG so the raw records are kept too: secret-leak checks read both."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
