"""Per-user request limits from the plan, shared through Redis by every worker process."""

import asyncio
import dataclasses
import uuid

import pytest
import redis.asyncio as aioredis

from server.app import create_app
from server.appkeys import REDIS, SETTINGS
from server.credits import service
from server.credits.models import Plan
from server.credits.ratelimit import RateLimiter
from server.web.api import ApiRoutes, json_response
from server.web.errors import TooManyRequests


@pytest.fixture
async def redis_client(redis_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def free_plan(db) -> Plan:
    return next(p for p in await service.plans(db) if p.code == "free")


def limited(plan: Plan, per_minute: int, per_hour: int) -> Plan:
    return dataclasses.replace(plan, requests_per_minute=per_minute, requests_per_hour=per_hour)


async def test_requests_within_the_minute_limit_pass_and_the_next_gets_429(redis_client, settings, free_plan):
    limiter = RateLimiter(redis_client, settings)
    plan = limited(free_plan, 3, 100)
    user = uuid.uuid4()

    for _ in range(3):
        await limiter.hit(user, plan)
    with pytest.raises(TooManyRequests) as caught:
        await limiter.hit(user, plan)

    err = caught.value
    assert (err.status, err.code) == (429, "rate_limited")
    # 3 a minute refill one every 20 s, so the next request is possible within 20 s.
    assert 1 <= int(err.headers["Retry-After"]) <= 20
    assert err.details["window"] == "minute" and err.details["limit"] == 3


async def test_the_hour_limit_binds_too_with_a_long_retry_after(redis_client, settings, free_plan):
    limiter = RateLimiter(redis_client, settings)
    plan = limited(free_plan, 100, 2)
    user = uuid.uuid4()

    await limiter.hit(user, plan)
    await limiter.hit(user, plan)
    with pytest.raises(TooManyRequests) as caught:
        await limiter.hit(user, plan)

    assert caught.value.details["window"] == "hour"
    assert 1700 <= int(caught.value.headers["Retry-After"]) <= 1800


async def test_a_refused_request_does_not_use_up_the_allowance(redis_client, settings, free_plan):
    limiter = RateLimiter(redis_client, settings)
    plan = limited(free_plan, 1, 100)
    user = uuid.uuid4()
    await limiter.hit(user, plan)
    with pytest.raises(TooManyRequests) as first:
        await limiter.hit(user, plan)
    with pytest.raises(TooManyRequests) as second:
        await limiter.hit(user, plan)
    # Waiting is not made longer by asking again.
    assert int(second.value.headers["Retry-After"]) <= int(first.value.headers["Retry-After"])


async def test_users_are_limited_separately(redis_client, settings, free_plan):
    limiter = RateLimiter(redis_client, settings)
    plan = limited(free_plan, 1, 100)
    await limiter.hit(uuid.uuid4(), plan)
    await limiter.hit(uuid.uuid4(), plan)


async def test_concurrent_requests_from_two_workers_share_one_limit(redis_url, settings, free_plan):
    """Two limiters with their own Redis connections stand for two worker processes."""
    clients = [aioredis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    try:
        limiters = [RateLimiter(c, settings) for c in clients]
        plan = limited(free_plan, 10, 100)
        user = uuid.uuid4()

        async def attempt(i: int) -> bool:
            try:
                await limiters[i % 2].hit(user, plan)
                return True
            except TooManyRequests:
                return False

        results = await asyncio.gather(*(attempt(i) for i in range(50)))
    finally:
        for c in clients:
            await c.aclose()

    assert sum(results) == 10


async def test_an_unreachable_redis_lets_requests_through(settings, free_plan):
    dead = aioredis.from_url("redis://127.0.0.1:1/0", decode_responses=True, socket_connect_timeout=0.5)
    try:
        await RateLimiter(dead, settings).hit(uuid.uuid4(), limited(free_plan, 1, 1))
        await RateLimiter(dead, settings).hit(uuid.uuid4(), limited(free_plan, 1, 1))
    finally:
        await dead.aclose()


async def test_over_http_the_limit_is_a_429_envelope_with_retry_after(aiohttp_client, settings, free_plan):
    app = create_app(settings)
    api = ApiRoutes("test")
    user = uuid.uuid4()
    plan = limited(free_plan, 2, 100)

    @api.post("/v1/limited", summary="limited", auth=False)
    async def limited_route(request):
        await RateLimiter(request.app[REDIS], request.app[SETTINGS]).hit(user, plan)
        return json_response({"ok": True})

    api.register(app)
    client = await aiohttp_client(app)

    statuses = [(await client.post("/v1/limited")).status for _ in range(2)]
    refused = await client.post("/v1/limited")

    assert statuses == [200, 200]
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    body = await refused.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"]["retry_after"] == int(refused.headers["Retry-After"])
