"""Generations through a pool of keys where some keys misbehave: rotation, parking, disabling,
and a concurrency cap that holds across two server processes."""

import asyncio
import os
import socket
import sys
import time

import aiohttp

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import post, remaining, user_with, wav_info
from server.credits import service as credits
from server.keybank.refresher import refresh_once

SFX = {"prompt": "metal clang", "duration_seconds": 1}


async def statuses(bank):
    return {k.label: k.status for k in await bank.list_keys("elevenlabs")}


async def test_requests_succeed_while_any_healthy_key_remains(api, db, add_key, sim, bank):
    # The bank prefers the key with the most quota left, so the faulty keys are tried first.
    _, invalid = await add_key("invalid", limit=5_000_000)
    _, broken = await add_key("broken", limit=4_000_000)
    _, busy = await add_key("busy", limit=3_000_000)
    _, healthy = await add_key("healthy", limit=1_000_000)
    sim.state.inject(invalid, "401_invalid")
    sim.state.inject(broken, "503")
    sim.state.inject(busy, "429_busy", retry_after=30)
    user = await user_with(api, db, 20)
    for n in range(5):
        resp, data = await post(api, "/v1/sfx", user, {**SFX, "prompt": f"clang {n}"})
        assert resp.status == 200, data
        assert wav_info(data)[0] == 48000
    assert len(sim.calls(healthy, "sound-generation")) == 5
    # Each bad key was tried once, then kept out of rotation: disabled, or cooling down.
    assert len(sim.calls(invalid, "sound-generation")) == 1
    assert len(sim.calls(broken, "sound-generation")) == 1
    assert len(sim.calls(busy, "sound-generation")) == 1
    assert (await statuses(bank))["invalid"] == "disabled"
    assert await remaining(db, user.user_id) == 15


async def test_a_hanging_key_costs_one_attempt_timeout_not_the_request(api, db, add_key, sim):
    _, hanging = await add_key("hanging", limit=5_000_000)
    _, healthy = await add_key("healthy", limit=1_000_000)
    sim.state.inject(hanging, "hang")
    user = await user_with(api, db, 20)
    started = time.monotonic()
    resp, data = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 200, data
    assert 1.4 < time.monotonic() - started < 4.5  # the 1.5 s attempt bound, then the healthy key
    row = await db.fetchrow("SELECT upstream_attempts, upstream_key_id FROM generations")
    assert row["upstream_attempts"] == 2
    # Cooling now: the next request goes straight to the healthy key.
    started = time.monotonic()
    resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": "second"})
    assert resp.status == 200 and time.monotonic() - started < 1.0
    assert len(sim.calls(hanging, "sound-generation")) == 1


async def test_concurrency_cap_429_moves_to_another_key_at_once(api, db, add_key, sim, bank):
    _, capped = await add_key("capped", limit=5_000_000)
    _, other = await add_key("other", limit=1_000_000)
    sim.state.inject(capped, "429_concurrency", times=1)
    user = await user_with(api, db, 20)
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 200
    assert len(sim.calls(other, "sound-generation")) == 1
    # Not cooled down: the capped key takes the next request.
    resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": "again"})
    assert resp.status == 200
    assert len(sim.calls(capped, "sound-generation")) == 2


async def test_corrupt_empty_and_truncated_answers_are_retried_on_another_key(api, db, add_key, sim):
    bad = [(await add_key(f"bad-{n}", limit=5_000_000 - n))[1] for n in range(3)]
    _, good = await add_key("good", limit=1_000_000)
    for secret, fault in zip(bad, ("corrupt", "empty", "truncated")):
        sim.state.inject(secret, fault)
    user = await user_with(api, db, 20)
    resp, data = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 200, data
    assert wav_info(data)[0] == 48000
    row = await db.fetchrow("SELECT upstream_attempts, credits_charged FROM generations")
    assert row["upstream_attempts"] == 4 and row["credits_charged"] == 1
    assert len(sim.calls(good, "sound-generation")) == 1


async def test_no_healthy_key_is_502_and_no_key_at_all_is_503_without_retry_advice(api, db, add_key, sim, bank):
    user = await user_with(api, db, 20)
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "no_active_key" and "Retry-After" not in resp.headers
    assert "retry_after" not in body["error"]["details"]
    _, secret = await add_key("only")
    sim.state.inject(secret, "500")
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unavailable"
    reasons = [r["failure_reason"] for r in await db.fetch("SELECT failure_reason FROM generations ORDER BY created_at")]
    assert reasons[0].startswith("no_active_key") and reasons[1].startswith("upstream_unavailable")
    assert await remaining(db, user.user_id) == 20


async def test_a_disabled_key_receives_no_more_traffic(api, db, add_key, sim, bank):
    disabled_id, disabled = await add_key("to-disable", limit=5_000_000)
    _, active = await add_key("active", limit=1_000_000)
    user = await user_with(api, db, 20)
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert len(sim.calls(disabled, "sound-generation")) == 1  # preferred while enabled
    await bank.disable(disabled_id, "rotated out by an operator")
    for n in range(6):
        resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": f"after {n}"})
        assert resp.status == 200
    assert len(sim.calls(disabled, "sound-generation")) == 1
    assert len(sim.calls(active, "sound-generation")) == 6


async def test_quota_exhaustion_parks_the_key_until_its_reset(api, db, add_key, sim, bank):
    reset_at = int(time.time()) + 2
    _, parked = await add_key("parked", limit=5_000_000, reset_unix=reset_at)
    _, spare = await add_key("spare", limit=1_000_000)
    sim.state.inject(parked, "401_quota", times=1)
    user = await user_with(api, db, 20)
    for n in range(3):
        resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": f"parked {n}"})
        assert resp.status == 200
    assert (await statuses(bank))["parked"] == "exhausted"
    assert len(sim.calls(parked, "sound-generation")) == 1
    assert len(sim.calls(spare, "sound-generation")) == 3
    # Before the reset a refresh leaves it parked; after it, one probe brings it back.
    await refresh_once(bank)
    assert (await statuses(bank))["parked"] == "exhausted"
    await asyncio.sleep(max(0.0, reset_at - time.time()) + 0.3)
    await refresh_once(bank)
    assert (await statuses(bank))["parked"] == "active"
    resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": "after reset"})
    assert resp.status == 200
    assert len(sim.calls(parked, "sound-generation")) == 2


# --- two server processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_second_server(gen_env) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {**os.environ, **gen_env, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "INFO"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--no-migrate", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
    proc.kill()
    _, err = await proc.communicate()
    raise AssertionError("second server did not start: " + err.decode()[-2000:])


async def test_a_keys_concurrency_cap_holds_across_two_server_processes(api, db, add_key, sim, gen_env, leaks):
    # Both the bank and the simulator allow 2 at once; the simulator would answer 429 to a third.
    _, secret = await add_key("shared", max_concurrency=2)
    sim.state.inject(secret, "slow", delay=0.25)
    proc, second_url = await start_second_server(gen_env)
    try:
        users = [await user_with(api, db, 0, plan="enterprise") for _ in range(2)]
        async with aiohttp.ClientSession() as session:

            async def one(base_url: str, user, n: int) -> list[int]:
                seen = []
                while True:
                    async with session.post(
                        base_url + "/v1/sfx", json={"prompt": f"take {n}", "duration_seconds": 1},
                        headers={**user.headers, "Idempotency-Key": f"{base_url}-{n}"},
                    ) as resp:
                        body = await resp.read()
                        leaks.responses.append(body)
                        seen.append(resp.status)
                        if resp.status != 503:
                            return seen
                        assert (await resp.json())["error"]["code"] == "capacity_exhausted"
                    await asyncio.sleep(0.05)

            first_url = str(api.make_url("")).rstrip("/")
            results = await asyncio.gather(
                *(one(first_url, users[0], n) for n in range(6)),
                *(one(second_url, users[1], n) for n in range(6)),
            )
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    logs = err.decode()
    assert [s for s in leaks.values if s in logs] == []
    # Nobody was turned away: requests beyond the cap waited in the shared line for their turn
    # (tests/test_key_wait.py covers that line and what happens when the wait runs out).
    assert results == [[200]] * 12, results
    key = sim.state.key(secret)
    assert key.peak_in_flight == 2
    assert key.rejected_concurrency == 0
    assert await db.fetchval("SELECT count(*) FROM generations WHERE status = 'succeeded'") == 12
    assert (await credits.summary(db, users[1].user_id)).unlimited
