"""Login throttling: shared through Redis, 429 with Retry-After, and silent about which emails exist."""

import redis.asyncio as aioredis
import pytest

from helpers import sign_up
from server.app import create_app
from server.auth.throttle import LoginThrottle
from server.web.errors import TooManyRequests


@pytest.fixture
async def redis_client(settings):
    client = aioredis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def strict_client(aiohttp_client, settings):
    """Three failures allowed per account or IP within a minute."""
    return await aiohttp_client(create_app(settings.replace(login_max_failures=3, login_failure_window=60)))


async def login(client, email, password="wrong password!"):
    return await client.post("/v1/auth/login", json={"email": email, "password": password, "device_name": "Probe"})


async def test_repeated_failures_for_an_account_answer_429_with_retry_after(strict_client):
    user = await sign_up(strict_client)
    for _ in range(3):
        assert (await login(strict_client, user.email)).status == 401
    blocked = await login(strict_client, user.email)
    assert blocked.status == 429
    retry_after = int(blocked.headers["Retry-After"])
    assert 0 < retry_after <= 60
    body = await blocked.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"]["retry_after"] == retry_after
    # Even the right password waits: otherwise a guesser would learn when it hit.
    assert (await login(strict_client, user.email, user.password)).status == 429


async def test_throttling_looks_the_same_for_unknown_and_existing_emails(strict_client, redis_client, settings):
    user = await sign_up(strict_client)
    throttle = LoginThrottle(redis_client, settings)

    async def transcript(email):
        answers = []
        for _ in range(4):
            resp = await login(strict_client, email)
            body = await resp.json()
            body["error"]["details"].pop("retry_after", None)  # counts down, so compared separately below
            answers.append((resp.status, body, "Retry-After" in resp.headers))
        # Both runs come from the test client's one IP; clear that counter so each email starts alike.
        await redis_client.delete(throttle.keys(email, "127.0.0.1")[1])
        return answers

    existing = await transcript(user.email)
    unknown = await transcript("nobody-here@example.com")
    assert existing == unknown
    assert [status for status, _, _ in existing] == [401, 401, 401, 429]


async def test_failures_from_one_ip_across_many_accounts_are_throttled(strict_client):
    for n in range(3):
        assert (await login(strict_client, f"spray-{n}@example.com")).status == 401
    resp = await login(strict_client, "fresh-target@example.com")
    assert resp.status == 429
    assert "Retry-After" in resp.headers


async def test_a_successful_login_clears_the_account_counter(strict_client):
    user = await sign_up(strict_client)
    for _ in range(2):
        assert (await login(strict_client, user.email)).status == 401
    assert (await login(strict_client, user.email, user.password)).status == 200
    # The account starts afresh; the IP's two failures still count, so one more failure is allowed.
    assert (await login(strict_client, user.email)).status == 401
    assert (await login(strict_client, user.email)).status == 429


async def test_the_account_counter_is_shared_across_ips_and_processes(redis_client, settings):
    """Two throttles (think: two worker processes) over one Redis see one count per account."""
    strict = settings.replace(login_max_failures=2, login_failure_window=30)
    worker_a, worker_b = LoginThrottle(redis_client, strict), LoginThrottle(redis_client, strict)
    await worker_a.failed("target@example.com", "10.0.0.1")
    await worker_b.failed("TARGET@example.com ", "10.0.0.2")
    with pytest.raises(TooManyRequests) as caught:
        await worker_a.check("target@example.com", "10.0.0.3")
    assert 0 < caught.value.details["retry_after"] <= 30
    await worker_b.check("someone-else@example.com", "10.0.0.3")  # a different account from a clean IP is fine


async def test_counters_expire_with_their_window_and_hold_no_email(redis_client, settings):
    throttle = LoginThrottle(redis_client, settings.replace(login_failure_window=45))
    await throttle.failed("private@example.com", "192.0.2.7")
    account_key, ip_key = throttle.keys("private@example.com", "192.0.2.7")
    for key in (account_key, ip_key):
        assert 0 < await redis_client.ttl(key) <= 45
    assert "private" not in account_key
    stored = [k async for k in redis_client.scan_iter(match=settings.redis_prefix + "*")]
    assert not any("private@example.com" in k for k in stored)
