"""Recovery: Postgres, Redis or the provider blinks under load, and afterwards everything holds.

Each scenario runs against private Postgres and Redis servers (outage_support; the machine's
shared ones are never touched) while six clients keep generating. For every scenario:
- no answer is a 500: an outage is a JSON 503 with Retry-After (or the provider's 502/503);
- retrying a failed Idempotency-Key right after recovery is served within a few seconds;
- every 200 is charged exactly once, and nothing is charged for keys never served;
- within the credit hold TTL nothing is left pending, in progress, held or leased.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
import time
import uuid

import aiohttp
import asyncpg
import pytest
import redis.exceptions

from outage_support import free_port, in_thread, private_postgres, private_redis, wait_for_postgres  # noqa: F401
from recovery_support import (  # noqa: F401 (fixtures, used by name)
    HOLD_TTL, SFX, api, assert_each_served_request_charged_once, assert_nothing_left_open, empty_outage_database,
    key_id, outage_env, outage_settings, pro_user, provider, query, retry_failures, retry_until_served, send,
    under_load,
)
from server.generation.service import hold_key
from server.keybank import KEYBANK
from server.outages import is_unavailable
from test_portal_support import Portal


@pytest.mark.parametrize("exc, outage", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), True),
    (asyncpg.CannotConnectNowError("the database system is shutting down"), True),
    (asyncpg.AdminShutdownError("terminating connection due to administrator command"), True),
    (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True),
    (redis.exceptions.ConnectionError("Connection closed by server."), True),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), True),
    # Our bugs and the disk's trouble stay 500s: retrying them would not help.
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (asyncpg.UniqueViolationError("duplicate key value"), False),
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
    (redis.exceptions.ResponseError("WRONGTYPE"), False),
    (KeyError("x"), False),
])
def test_only_connection_failures_count_as_an_outage(exc, outage):
    assert is_unavailable(exc) is outage


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_postgres_restart_under_load_costs_a_retry_at_most(api, outage_settings, key_id, private_postgres, mode):
    users = [await pro_user(api, outage_settings) for _ in range(3)]

    [before] = await query(outage_settings, "SELECT pg_postmaster_start_time() AS t")

    async def restart() -> None:
        await in_thread(private_postgres.restart, mode)

    load = await under_load(api, users, restart)
    # (Requests caught by the restart may all have ridden it out: no 503 is required.)
    [after] = await query(outage_settings, "SELECT pg_postmaster_start_time() AS t")
    assert after["t"] > before["t"]
    await retry_failures(api, load, within=8)
    await assert_each_served_request_charged_once(outage_settings, load, users)
    await assert_nothing_left_open(api, outage_settings, key_id)


@pytest.mark.parametrize("how", ["restart", "flush"])
async def test_after_a_redis_restart_or_flush_no_request_fails(api, outage_settings, key_id, private_redis, how):
    users = [await pro_user(api, outage_settings) for _ in range(3)]
    back_at = 0.0

    async def blink() -> None:
        nonlocal back_at
        await in_thread(private_redis.restart if how == "restart" else private_redis.flush)
        back_at = time.monotonic()

    load = await under_load(api, users, blink, answered_after=6)
    # Every pooled connection died with the restart: the client reconnects and sends the command
    # again, and the key bank copies its keys back from Postgres into the emptied Redis. So no
    # request sent once Redis was back fails, and a flush fails none at all.
    assert [a for a in load.answers if a.status != 200 and (how == "flush" or a.sent_at > back_at)] == []
    assert len([a for a in load.answers if a.sent_at > back_at]) >= 6
    await retry_failures(api, load, within=5)
    await assert_each_served_request_charged_once(outage_settings, load, users)
    await assert_nothing_left_open(api, outage_settings, key_id)


async def test_the_provider_down_for_a_moment_answers_502_or_503_and_a_retry_is_served(
    api, outage_settings, key_id, provider
):
    users = [await pro_user(api, outage_settings) for _ in range(3)]

    async def provider_blinks() -> None:
        await provider.stop()
        await asyncio.sleep(1.5)
        await provider.start()

    load = await under_load(api, users, provider_blinks)
    assert {a.status for a in load.answers} & {502, 503}, "the outage went unnoticed"
    # The key cooled down after its failures (2 s, doubling): the retry waits that out.
    await retry_failures(api, load, within=15)
    await assert_each_served_request_charged_once(outage_settings, load, users)
    await assert_nothing_left_open(api, outage_settings, key_id)


async def test_audio_that_arrived_during_a_database_outage_is_kept_for_the_retry(
    api, outage_settings, key_id, provider, private_postgres
):
    user = await pro_user(api, outage_settings, credits_=50)
    for secret in provider.secrets:
        provider.state.inject(secret, "slow", times=1, delay=1.0)  # a second to stop the database in
    key = uuid.uuid4().hex
    first = asyncio.create_task(send(api, user, key))
    while not provider.generation_calls():  # the provider is working on it...
        await asyncio.sleep(0.02)
    await in_thread(private_postgres.stop, "fast")  # ...when the database goes away
    # The audio arrives, its capture cannot be written: after SETTLE_WAIT_SECONDS the client is
    # told to come back.
    answer = await first
    assert (answer.status, answer.code) == (503, "service_unavailable") and answer.retry_after == "2"
    await in_thread(private_postgres.start)

    served, took = await retry_until_served(api, user, key, within=5)
    assert took < 4
    assert len(provider.generation_calls()) == 1, "the retry called the provider a second time"
    assert served.charged == 1
    [row] = await query(outage_settings, "SELECT status, credits_charged FROM generations WHERE idempotency_key = $1", key)
    assert dict(row) == {"status": "succeeded", "credits_charged": 1}
    [summary] = await query(outage_settings, "SELECT period_balance FROM credit_accounts WHERE user_id = $1", user.user_id)
    assert summary["period_balance"] == 49
    await assert_nothing_left_open(api, outage_settings, key_id)


async def test_a_retry_takes_over_at_once_from_a_worker_that_was_killed(api, outage_env, outage_settings, key_id, provider):
    """Another server process takes two requests, starts their provider calls and is killed
    (SIGKILL). A retry of one of them on this server takes it over within about a second, closes
    the dead try's history row and charges the one credit hold once. The other, never retried,
    is closed as abandoned and its hold released within the hold TTL."""
    user = await pro_user(api, outage_settings, credits_=50)
    port = free_port()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--no-migrate", env={**os.environ, **outage_env, "PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    retried, forgotten = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await until_up(http, url + "/healthz")
            for secret in provider.secrets:
                provider.state.inject(secret, "hang", times=2)
            hanging = [asyncio.create_task(http.post(url + "/v1/sfx", json=SFX,
                                                     headers={**user.headers, "Idempotency-Key": key}))
                       for key in (retried, forgotten)]
            while len(provider.generation_calls()) < 2:
                await asyncio.sleep(0.02)
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            killed_at = time.time()
            for request in hanging:
                with pytest.raises(aiohttp.ClientError):
                    await request

        await retry_until_served(api, user, retried, within=10)
        # The retry did not wait for the dead try: its own provider call started right away.
        taken_over_after = provider.generation_calls()[2]["time"] - killed_at
        assert taken_over_after < 2.0, f"the takeover took {taken_over_after:.2f} s"
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    # The dead try's row is closed by the takeover, or a moment before it by the orphan sweep.
    [dead, alive] = await history_of(outage_settings, retried)
    assert dead in [("failed", "taken_over", 0), ("failed", "abandoned", 0)] and alive == ("succeeded", None, 1)
    assert await holds_of(outage_settings, user, retried) == [("captured", 1)]

    deadline = time.monotonic() + HOLD_TTL + 2
    while await holds_of(outage_settings, user, forgotten) != [("expired", None)]:
        assert time.monotonic() < deadline, await holds_of(outage_settings, user, forgotten)
        await asyncio.sleep(0.2)
    assert await history_of(outage_settings, forgotten) == [("failed", "abandoned", 0)]
    [request] = await query(outage_settings, "SELECT status FROM generation_requests WHERE idempotency_key = $1", forgotten)
    assert request["status"] == "failed"


async def until_up(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "the worker did not start"
        await asyncio.sleep(0.1)


async def history_of(settings, key: str) -> list[tuple]:
    rows = await query(settings, """SELECT status, failure_reason, credits_charged FROM generations
                                     WHERE idempotency_key = $1 ORDER BY created_at""", key)
    return [tuple(r) for r in rows]


async def holds_of(settings, user, key: str) -> list[tuple]:
    rows = await query(settings, "SELECT status, captured FROM credit_holds WHERE key = $1 ORDER BY created_at",
                       hold_key(user.user_id, key, 0))
    return [tuple(r) for r in rows]


async def test_while_postgres_or_redis_is_down_the_api_and_the_portal_answer_503_with_retry_after(
    api, outage_settings, key_id, private_postgres, private_redis
):
    user = await pro_user(api, outage_settings)
    browser = Portal(api)
    try:
        signed_up = await browser.sign_up()
        # Reading history needs Postgres; a generation needs Redis too (its provider-key lease).
        for down, up, request in [
            (lambda: private_postgres.stop("fast"), private_postgres.start,
             lambda: api.get("/v1/generations", headers=user.headers)),
            (private_redis.stop, private_redis.start,
             lambda: api.post("/v1/sfx", json=SFX, headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex})),
        ]:
            await in_thread(down)
            try:
                resp = await request()
                body = await resp.json()
                assert resp.status == 503 and body["error"]["code"] == "service_unavailable", body
                assert int(resp.headers["Retry-After"]) >= 1

                page = await browser.get("/dashboard")
                html = await page.text()
                assert page.status == 503 and page.content_type == "text/html"
                assert "Briefly unavailable" in html and int(page.headers["Retry-After"]) >= 1
            finally:
                await in_thread(up)
        await wait_for_postgres(outage_settings.database_url)
        # Back up: the API answers again at once (the portal's sessions lived in the Redis that
        # restarted empty, so the browser signs in again).
        resp = await api.get("/v1/generations", headers=user.headers)
        assert resp.status == 200
        resp = await browser.sign_in(signed_up.email, signed_up.password)
        assert resp.status == 303
    finally:
        await browser.client.close()


async def test_a_lease_whose_release_redis_missed_is_freed_once_redis_is_back(api, key_id, private_redis):
    """Redis restarts with its data (a lease still in it) and was away when the lease was given
    back: the release is sent again before the next lease, not left until the lease's TTL."""
    leases = api.server.app[KEYBANK].leases
    granted = await leases.acquire("elevenlabs", ttl=600)
    await in_thread(private_redis.stop, save=True)
    try:
        assert await leases.release(granted.key_id, granted.lease_id, succeeded=True) == 0
    finally:
        await in_thread(private_redis.start)
    assert (await leases.state([key_id]))[key_id].in_flight == 1  # Redis has it back from disk
    again = await leases.acquire("elevenlabs", ttl=600)
    assert (await leases.state([key_id]))[key_id].in_flight == 1  # only the new one
    await leases.release(again.key_id, again.lease_id, succeeded=True)
    assert (await leases.state([key_id]))[key_id].in_flight == 0
