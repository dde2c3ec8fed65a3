"""Sign-up throttling: one budget of account creations per client address, shared by the API and
the portal form and by every server process (Redis), with 429 and Retry-After beyond it."""

from __future__ import annotations

import uuid

import pytest

from helpers import DEFAULT_PASSWORD, unique_email
from server.settings import Settings
from test_portal_support import browser_factory  # noqa: F401 (fixture)

LIMIT = 3


@pytest.fixture
def settings(test_env) -> Settings:
    """Three sign-ups per address per hour, counted under a prefix of this test's own (the
    session's counter for 127.0.0.1 holds every other test's sign-ups)."""
    prefix = f"{test_env['REDIS_PREFIX']}signup-{uuid.uuid4().hex[:8]}:"
    return Settings.from_env({**test_env, "SIGNUP_MAX_PER_IP": str(LIMIT), "REDIS_PREFIX": prefix})


async def register(client, email: str | None = None):
    return await client.post("/v1/auth/register", json={
        "email": email or unique_email("signup"), "password": DEFAULT_PASSWORD, "device_name": "Throttle test"})


async def test_beyond_the_limit_an_address_gets_429_with_retry_after_and_no_account(client, db):
    for _ in range(LIMIT):
        assert (await register(client)).status == 202
    email = unique_email("one-too-many")
    blocked = await register(client, email)
    assert blocked.status == 429
    body = await blocked.json()
    assert body["error"]["code"] == "rate_limited"
    retry_after = int(blocked.headers["Retry-After"])
    assert 3500 < retry_after <= 3600 and body["error"]["details"]["retry_after"] == retry_after
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0


async def test_attempts_with_a_taken_email_count_too(client):
    first = unique_email("taken")
    assert (await register(client, first)).status == 202
    for _ in range(LIMIT - 1):
        assert (await register(client, first)).status == 202
    assert (await register(client)).status == 429, "probing for existing emails spends the same budget"


async def test_the_portal_form_and_the_api_share_one_budget(client, browser_factory, db):  # noqa: F811
    for _ in range(LIMIT - 1):
        assert (await register(client)).status == 202
    portal = await browser_factory()
    account = await portal.sign_up()  # the last one allowed
    assert account.email
    email = unique_email("portal-blocked")
    resp = await (await browser_factory()).post(
        "/signup", {"email": email, "password": DEFAULT_PASSWORD, "password_confirm": DEFAULT_PASSWORD})
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "Too many accounts were created from your network" in await resp.text()
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
    assert (await register(client)).status == 429
