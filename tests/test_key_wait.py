"""The fair wait for a busy key: requests beyond a key's cap wait in one line shared by every server
process, in turn and fairly between accounts, leave it when their client goes, are never charged
when the wait runs out, and our own slowness is never blamed on the key."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import post, remaining, settled, user_with
from server.settings import Settings
from test_generation_rotation import start_second_server


@pytest.fixture
def wait_env() -> dict[str, str]:
    return {}


@pytest.fixture
def gen_env(test_env, sim, wait_env) -> dict[str, str]:
    return {**test_env, "ELEVENLABS_BASE_URL": sim.url, "UPSTREAM_DEADLINE": "5", "UPSTREAM_MAX_ATTEMPTS": "4",
            "UPSTREAM_ATTEMPT_TIMEOUT": "1.5", **wait_env}


@pytest.fixture
def gen_settings(gen_env) -> Settings:
    return Settings.from_env(gen_env)


async def in_line(bank) -> int:
    return await bank.line.redis.zcard(bank.line.key("wait", "elevenlabs"))


async def burst(urls_and_users, per_user: int, *, prompt: str = "take"):
    """Everyone's requests at once, spread over the servers; returns (status, headers, body) each."""
    async with aiohttp.ClientSession() as session:

        async def one(url, user, n):
            async with session.post(url + "/v1/sfx", json={"prompt": f"{prompt} {n}", "duration_seconds": 1},
                                    headers={**user.headers, "Idempotency-Key": f"{user.user_id}-{n}"}) as resp:
                return resp.status, dict(resp.headers), await resp.read()

        return await asyncio.gather(*(one(url, user, n) for url, user in urls_and_users for n in range(per_user)))


async def test_twenty_requests_on_a_key_capped_at_two_all_succeed_through_two_processes(
    api, db, add_key, sim, gen_env, leaks,
):
    _, secret = await add_key("only", max_concurrency=2)
    sim.state.inject(secret, "slow", delay=0.2)  # each generation keeps the key busy for a while
    proc, second_url = await start_second_server(gen_env)
    try:
        users = [await user_with(api, db, 50) for _ in range(4)]
        first_url = str(api.make_url("")).rstrip("/")
        results = await burst([(first_url, users[0]), (first_url, users[1]), (second_url, users[2]),
                               (second_url, users[3])], per_user=5)
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert [s for s in leaks.values if s in err.decode()] == []
    assert [status for status, _, _ in results] == [200] * 20, [b[:200] for _, _, b in results]
    key = sim.state.key(secret)
    assert key.peak_in_flight == 2 and key.rejected_concurrency == 0
    assert len(sim.calls(secret, "sound-generation")) == 20  # one provider call each, no retries
    for user in users:  # each charged once: five 1-credit generations
        assert await remaining(db, user.user_id) == 45
    assert await db.fetchval("SELECT count(*) FROM generations WHERE status = 'succeeded'") == 20


@pytest.mark.parametrize("wait_env", [{"KEY_WAIT_SECONDS": "0.6"}])
async def test_when_the_wait_runs_out_the_late_ones_get_503_with_retry_after_and_no_charge(
    api, db, add_key, sim, gen_env, leaks,
):
    _, secret = await add_key("only", max_concurrency=2)
    sim.state.inject(secret, "slow", delay=0.5)  # a generation takes longer than the line may wait
    proc, second_url = await start_second_server(gen_env)
    try:
        users = [await user_with(api, db, 50) for _ in range(4)]
        first_url = str(api.make_url("")).rstrip("/")
        started = time.monotonic()
        results = await burst([(first_url, users[0]), (first_url, users[1]), (second_url, users[2]),
                               (second_url, users[3])], per_user=5)
        elapsed = time.monotonic() - started
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), 30)
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert 2 <= len(served) <= 6, [r[0] for r in results]
    assert len(served) + len(refused) == 20
    for status, headers, body in refused:
        assert status == 503
        error = json.loads(body)["error"]
        assert error["code"] == "capacity_exhausted" and error["details"]["reason"] == "wait_timeout"
        assert error["details"]["waited_seconds"] >= 0.5
        assert int(headers["Retry-After"]) >= 1
    assert elapsed < 10
    key = sim.state.key(secret)
    assert key.peak_in_flight <= 2 and key.rejected_concurrency == 0
    assert len(sim.calls(secret, "sound-generation")) == len(served)  # the refused never reached the provider
    charged = sum([50 - await remaining(db, u.user_id) for u in users])
    assert charged == len(served)
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE status = 'released'") == len(refused)


async def test_one_accounts_batch_does_not_starve_another_account(api, db, add_key, sim):
    _, secret = await add_key("only", max_concurrency=1)
    sim.state.inject(secret, "slow", delay=0.15)
    heavy, light = await user_with(api, db, 50), await user_with(api, db, 50)
    finished: list[str] = []

    async def one(user, name, n):
        resp, data = await post(api, "/v1/sfx", user, {"prompt": f"{name} {n}", "duration_seconds": 1})
        assert resp.status == 200, data
        finished.append(name)

    batch = [asyncio.create_task(one(heavy, "heavy", n)) for n in range(6)]
    await asyncio.sleep(0.1)  # the batch is running and waiting in line
    await asyncio.gather(one(light, "light", 0), *batch)
    # In arrival order alone the light request would come last; in rounds it is served right after
    # the heavy account's first waiting request.
    assert finished.index("light") <= 2, finished


@pytest.mark.parametrize("wait_env", [{"KEY_WAIT_PER_USER": "2"}])
async def test_an_account_may_have_only_so_many_requests_waiting(api, db, add_key, sim, bank):
    _, secret = await add_key("only", max_concurrency=1)
    sim.state.inject(secret, "slow", delay=0.3)
    user = await user_with(api, db, 50)
    results = await asyncio.gather(*(
        post(api, "/v1/sfx", user, {"prompt": f"take {n}", "duration_seconds": 1}) for n in range(5)
    ))
    statuses = sorted(resp.status for resp, _ in results)
    assert statuses == [200, 200, 200, 503, 503], statuses  # one running, two waiting, two turned away
    for resp, data in results:
        if resp.status == 503:
            error = json.loads(data)["error"]
            assert error["details"] == {"reason": "too_many_waiting", "limit": 2, "retry_after": 3}
    assert await remaining(db, user.user_id) == 47
    assert await in_line(bank) == 0


async def test_a_waiting_request_whose_client_leaves_drops_out_of_the_line(api, db, add_key, sim, bank):
    _, secret = await add_key("only", max_concurrency=1)
    sim.state.inject(secret, "slow", delay=1.0)
    user, other = await user_with(api, db, 50), await user_with(api, db, 50)
    first = asyncio.create_task(post(api, "/v1/sfx", other, {"prompt": "running", "duration_seconds": 1}))
    for _ in range(200):  # until the first request holds the key
        if sim.state.key(secret).in_flight == 1:
            break
        await asyncio.sleep(0.02)
    async with aiohttp.ClientSession() as session:
        leaving = asyncio.create_task(session.post(
            str(api.make_url("/v1/sfx")), json={"prompt": "impatient", "duration_seconds": 1},
            headers={**user.headers, "Idempotency-Key": "impatient"},
        ))
        for _ in range(200):
            if await in_line(bank) == 1:
                break
            await asyncio.sleep(0.02)
        resp = await api.get("/v1/queue", headers=user.headers)  # what the panel polls to say it is waiting
        assert await resp.json() == {"waiting": 1, "ahead": 0, "wait_limit_seconds": 10.0}
        resp = await api.get("/v1/queue", headers=other.headers)
        assert await resp.json() == {"waiting": 0, "ahead": None, "wait_limit_seconds": 10.0}
        leaving.cancel()  # the editor closed the panel
    for _ in range(100):
        if await in_line(bank) == 0:
            break
        await asyncio.sleep(0.05)
    assert await in_line(bank) == 0
    # The next request is served as soon as the key is free, not after a ghost's turn.
    resp, _ = await post(api, "/v1/sfx", other, {"prompt": "next", "duration_seconds": 1})
    assert resp.status == 200
    assert (await first)[0].status == 200
    await settled(db)
    row = await db.fetchrow("SELECT status, credits_charged FROM generations WHERE prompt = 'impatient'")
    assert (row["status"], row["credits_charged"]) == ("cancelled", 0)
    assert len(sim.calls(secret, "sound-generation")) == 2
    assert await remaining(db, user.user_id) == 50
    assert await remaining(db, other.user_id) == 48


@pytest.mark.parametrize("wait_env", [{"UPSTREAM_ATTEMPT_TIMEOUT": "0.5"}])
async def test_our_own_stalled_event_loop_is_not_the_keys_timeout(api, db, add_key, sim, bank):
    key_id, secret = await add_key("only", max_concurrency=2)
    sim.state.inject(secret, "slow", delay=0.3)  # the provider answers within the attempt's 0.5 s
    user = await user_with(api, db, 50)
    request = asyncio.create_task(post(api, "/v1/sfx", user, {"prompt": "under load", "duration_seconds": 1}))
    await asyncio.sleep(0.1)
    time.sleep(0.8)  # noqa: ASYNC251 (the point: this process cannot run anything for a while)
    resp, data = await request
    assert resp.status == 200, data
    view = await bank.get_key(key_id)
    assert view.cooldown_until is None and view.consecutive_failures == 0 and view.recent_errors == 0
    assert len(sim.calls(secret, "sound-generation")) == 1

    # A key that really is slower than the attempt's bound still times out and cools down.
    sim.state.clear_faults(secret)
    sim.state.inject(secret, "slow", delay=1.2, times=1)
    resp, _ = await post(api, "/v1/sfx", user, {"prompt": "slow key", "duration_seconds": 1})
    view = await bank.get_key(key_id)
    assert view.consecutive_failures == 1 and view.cooldown_until is not None


@pytest.mark.parametrize("wait_env", [{"KEY_WAIT_SECONDS": "0"}])
async def test_a_wait_of_zero_refuses_at_once_as_before(api, db, add_key, sim):
    _, secret = await add_key("only", max_concurrency=1)
    sim.state.inject(secret, "slow", delay=0.5)
    user = await user_with(api, db, 50)
    running = asyncio.create_task(post(api, "/v1/sfx", user, {"prompt": "first", "duration_seconds": 1}))
    await asyncio.sleep(0.15)
    started = time.monotonic()
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "second", "duration_seconds": 1})
    assert time.monotonic() - started < 0.3
    assert resp.status == 503 and json.loads(data)["error"]["code"] == "capacity_exhausted"
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await running)[0].status == 200
    assert await remaining(db, user.user_id) == 49
