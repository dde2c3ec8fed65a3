"""Which address is the client's: the TCP peer, or X-Forwarded-For when (and only when) the peer
is one of our reverse proxies. Per-address limits (sign-in, sign-up) depend on getting this right."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from helpers import DEFAULT_PASSWORD, unique_email
from server.app import create_app
from server.settings import Settings, SettingsError
from server.web.middleware import forwarded_client

PROXIES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.1/32"))


@pytest.mark.parametrize(("header", "client"), [
    (["203.0.113.7"], "203.0.113.7"),
    (["198.51.100.1, 203.0.113.7"], "203.0.113.7"),  # the client's own claim on the left is not believed
    (["203.0.113.7, 10.1.2.3"], "203.0.113.7"),  # our inner proxy appended the outer one
    (["198.51.100.1", "203.0.113.7, 10.0.0.5"], "203.0.113.7"),  # several header lines are one list
    (["2001:db8::1"], "2001:db8::1"),
    (["10.0.0.9, 10.0.0.8"], "10.0.0.9"),  # only proxies: the farthest one
    (["not-an-address, 203.0.113.7"], "203.0.113.7"),
    (["203.0.113.7, garbage"], None),  # a hop we cannot read: keep the peer
    ([], None),
])
def test_the_client_is_the_rightmost_address_that_is_not_our_proxy(header, client):
    assert forwarded_client(header, PROXIES) == client


def test_a_trusted_proxies_typo_fails_at_start(test_env):
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.from_env({**test_env, "TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.300"})


def strict(test_env, **extra) -> Settings:
    """One sign-up per address, on a counter of this test's own."""
    return Settings.from_env({**test_env, "SIGNUP_MAX_PER_IP": "1",
                              "REDIS_PREFIX": f"{test_env['REDIS_PREFIX']}xff-{uuid.uuid4().hex[:8]}:", **extra})


async def register(client, forwarded: str, email: str | None = None):
    return await client.post("/v1/auth/register", headers={"X-Forwarded-For": forwarded}, json={
        "email": email or unique_email("xff"), "password": DEFAULT_PASSWORD, "device_name": "Proxy test"})


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(aiohttp_client, test_env, db):
    client = await aiohttp_client(create_app(strict(test_env, TRUSTED_PROXIES="127.0.0.1")))
    email = unique_email("behind-proxy")
    assert (await register(client, "203.0.113.7", email)).status == 202
    assert (await register(client, "203.0.113.8")).status == 202
    assert (await register(client, "203.0.113.7")).status == 429
    # The device session remembers the editor's address, not the proxy's.
    resp = await client.post("/v1/auth/login", headers={"X-Forwarded-For": "203.0.113.7"},
                             json={"email": email, "password": DEFAULT_PASSWORD, "device_name": "Proxy test"})
    assert resp.status == 200
    session_ip = await db.fetchval(
        "SELECT host(s.ip) FROM device_sessions s JOIN users u ON u.id = s.user_id WHERE u.email = $1", email)
    assert session_ip == "203.0.113.7"


async def test_without_trusted_proxies_a_forged_header_does_not_buy_a_new_budget(aiohttp_client, test_env):
    client = await aiohttp_client(create_app(strict(test_env)))
    assert (await register(client, "203.0.113.7")).status == 202
    assert (await register(client, "203.0.113.99")).status == 429
