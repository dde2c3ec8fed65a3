"""Leasing keys through Redis: atomic, capacity-safe across processes, self-healing, preferring the best key."""

import asyncio
import json
import os
import sys

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from server.keybank import KEYBANK, KeyBankConfig
from server.keybank.leases import CandidateRow, Granted
from server.web.errors import ApiError, ServiceUnavailable
from keybank_support import add_key, bank, json_logs, new_secret, redis, secrets_made, sim, sim_settings  # noqa: F401

# --- fixtures (shared ones in keybank_support) ---------------------------------------------


@pytest.fixture
def bank_config():
    return KeyBankConfig(cooldown_base=5.0, no_key_retry_after=3.0)


async def try_acquire(bank, **kwargs):
    try:
        return await bank.acquire("elevenlabs", **kwargs)
    except ApiError as exc:  # capacity_exhausted or no_active_key
        return exc


# --- capacity ---------------------------------------------------------------------------------


async def test_100_concurrent_acquires_never_exceed_max_concurrency(bank, add_key):
    a, _ = await add_key("a", max_concurrency=3)
    b, _ = await add_key("b", max_concurrency=2)
    results = await asyncio.gather(*(try_acquire(bank) for _ in range(100)))
    leases = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, ServiceUnavailable)]
    assert len(leases) == 5 and len(refused) == 95
    assert sorted(lease.key_id for lease in leases) == sorted([a.id] * 3 + [b.id] * 2)
    assert all(r.code == "capacity_exhausted" for r in refused)
    states = await bank.leases.state([a.id, b.id])
    assert (states[a.id].in_flight, states[b.id].in_flight) == (3, 2)
    for lease in leases:
        await bank.release(lease)
    states = await bank.leases.state([a.id, b.id])
    assert (states[a.id].in_flight, states[b.id].in_flight) == (0, 0)


# A second OS process leasing through the same Lua script. Each holder bumps a shared counter
# while it holds a lease: the counter's peak is how many leases were really held at once.
CHILD = r"""
import asyncio, json, os, sys
import redis.asyncio as aioredis
from server.settings import Settings
from server.keybank.leases import Granted, LeaseStore

async def main():
    settings = Settings.from_env(json.loads(os.environ["KB_TEST_ENV"]))
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    store = LeaseStore(redis, settings)
    print(json.dumps(await hammer(store, redis, settings.rkey("kbtest", "holders"), int(sys.argv[1]))))
    await redis.aclose()

async def hammer(store, redis, counter, rounds):
    peak, granted = 0, 0
    async def worker():
        nonlocal peak, granted
        for _ in range(rounds):
            got = await store.acquire("elevenlabs", ttl=30)
            if isinstance(got, Granted):
                granted += 1
                peak = max(peak, await redis.incr(counter))
                await asyncio.sleep(0.002)
                await redis.decr(counter)
                await store.release(got.key_id, got.lease_id, succeeded=True)
            else:
                await asyncio.sleep(0.001)
    await asyncio.gather(*(worker() for _ in range(20)))
    return {"peak": peak, "granted": granted}

asyncio.run(main())
"""


async def test_capacity_holds_across_two_os_processes_sharing_redis(bank, add_key, test_env, settings, redis):
    view, _ = await add_key("shared", max_concurrency=3)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, "60",
        env={**os.environ, "KB_TEST_ENV": json.dumps(test_env)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    # The child needs a moment to import; run long enough in this process to overlap with it.
    counter = settings.rkey("kbtest", "holders")
    peak, granted = 0, 0

    async def worker():
        nonlocal peak, granted
        while child.returncode is None:
            got = await bank.leases.acquire("elevenlabs", ttl=30)
            if isinstance(got, Granted):
                granted += 1
                peak = max(peak, await redis.incr(counter))
                await asyncio.sleep(0.002)
                await redis.decr(counter)
                await bank.leases.release(got.key_id, got.lease_id, succeeded=True)
            else:
                await asyncio.sleep(0.001)

    workers = [asyncio.create_task(worker()) for _ in range(20)]
    out, err = await asyncio.wait_for(child.communicate(), 120)
    await asyncio.gather(*workers)
    assert child.returncode == 0, err.decode()
    theirs = json.loads(out.decode())
    assert theirs["granted"] > 0 and granted > 0
    assert max(peak, theirs["peak"]) <= 3
    # Both processes pushed the key to its cap at some point, so the bound was really tested.
    assert max(peak, theirs["peak"]) == 3
    assert (await bank.leases.state([view.id]))[view.id].in_flight == 0


async def test_an_expired_lease_frees_its_slot_without_a_release(bank, add_key):
    view, _ = await add_key("crashy", max_concurrency=1)
    await bank.acquire("elevenlabs", ttl=0.3)  # a worker that dies without releasing
    refused = await try_acquire(bank)
    assert isinstance(refused, ServiceUnavailable)
    await asyncio.sleep(0.4)
    assert (await bank.leases.state([view.id]))[view.id].in_flight == 0
    lease = await bank.acquire("elevenlabs")
    assert lease.key_id == view.id


async def test_no_key_means_503_capacity_exhausted_with_a_retry_after(bank, add_key):
    await add_key("only", max_concurrency=1)
    held = await bank.acquire("elevenlabs")
    refused = await try_acquire(bank)
    assert (refused.status, refused.code) == (503, "capacity_exhausted")
    assert refused.headers["Retry-After"] == "3"
    await bank.release(held)


async def test_retry_after_is_the_time_until_the_soonest_cooldown_ends(bank, add_key):
    a, _ = await add_key("a")
    b, _ = await add_key("b")
    await bank.leases.cool_down(a.id, base=20, maximum=20, retry_after=20, error_window=60)
    await bank.leases.cool_down(b.id, base=8, maximum=8, retry_after=8, error_window=60)
    refused = await try_acquire(bank)
    assert refused.code == "capacity_exhausted"
    assert 7 <= int(refused.headers["Retry-After"]) <= 10


async def test_capacity_exhausted_reaches_the_client_as_a_json_503_with_retry_after(aiohttp_client, sim_settings, add_key):
    """Through the real app: the key bank's refusal is the API's error envelope."""
    from server.app import create_app

    await add_key("busy", max_concurrency=1)
    app = create_app(sim_settings)

    async def generate(request):
        bank = request.app[KEYBANK]
        leases = [await bank.acquire("elevenlabs") for _ in range(2)]  # the second one cannot be had
        return web.json_response({"leases": len(leases)})

    app.router.add_post("/_test/generate", generate)
    client = await aiohttp_client(app)
    resp = await client.post("/_test/generate")
    body = await resp.json()
    assert resp.status == 503
    assert body["error"]["code"] == "capacity_exhausted"
    assert resp.headers["Retry-After"] == str(body["error"]["details"]["retry_after"])


# --- choosing a key --------------------------------------------------------------------------


async def test_the_heavier_key_is_preferred_until_its_load_evens_the_score(bank, add_key):
    heavy, _ = await add_key("heavy", max_concurrency=4, weight=3)
    light, _ = await add_key("light", max_concurrency=4, weight=1)
    picks = [(await bank.acquire("elevenlabs")).key_id for _ in range(4)]
    # Scores weight x free share: heavy 3, 2.25, 1.5, then 0.75 < light's 1.
    assert picks == [heavy.id, heavy.id, heavy.id, light.id]


async def test_the_key_with_more_remaining_quota_is_preferred(bank, add_key):
    poor, _ = await add_key("poor", max_concurrency=5, limit=100_000, used=90_000)
    rich, _ = await add_key("rich", max_concurrency=5, limit=100_000, used=10_000)
    for _ in range(5):
        lease = await bank.acquire("elevenlabs")
        assert lease.key_id == rich.id
        await bank.release(lease)
    # Under load the poorer key still takes the overflow rather than refusing requests.
    held = [await bank.acquire("elevenlabs") for _ in range(6)]
    assert [lease.key_id for lease in held].count(poor.id) == 1


async def test_a_disabled_key_receives_no_traffic(bank, add_key):
    on, _ = await add_key("on", max_concurrency=5)
    off, _ = await add_key("off", max_concurrency=5, weight=10)
    await bank.disable(off.id)
    for _ in range(20):
        lease = await bank.acquire("elevenlabs")
        assert lease.key_id == on.id
        await bank.release(lease)
    refused = await try_acquire(bank, key_ids={off.id})
    assert refused.code == "no_active_key"


async def test_with_every_key_disabled_the_refusal_says_so_and_gives_no_retry_advice(bank, add_key):
    """Busy keys free up in seconds; disabled keys wait for an operator. A client told to retry
    would retry forever, so the two answers differ."""
    a, _ = await add_key("a")
    b, _ = await add_key("b")
    await bank.disable(a.id)
    await bank.disable(b.id)
    refused = await try_acquire(bank)
    assert (refused.status, refused.code) == (503, "no_active_key")
    assert "Retry-After" not in refused.headers and "retry_after" not in refused.details
    await bank.enable(b.id)
    lease = await bank.acquire("elevenlabs")
    assert lease.key_id == b.id


async def test_acquire_can_be_restricted_to_some_keys_and_exclude_tried_ones(bank, add_key):
    a, _ = await add_key("a", max_concurrency=5, weight=5)
    b, _ = await add_key("b", max_concurrency=5)
    c, _ = await add_key("c", max_concurrency=5)
    assert (await bank.acquire("elevenlabs", key_ids={b.id})).key_id == b.id
    assert (await bank.acquire("elevenlabs", key_ids={a.id, b.id}, exclude={a.id})).key_id == b.id
    assert (await bank.acquire("elevenlabs", exclude={a.id, b.id})).key_id == c.id
    assert (await try_acquire(bank, key_ids=set())).code == "no_active_key"


async def test_a_cooling_key_is_skipped_until_its_cooldown_ends(bank, add_key):
    a, _ = await add_key("a", weight=5)
    b, _ = await add_key("b")
    await bank.leases.cool_down(a.id, base=0.3, maximum=0.3, retry_after=None, error_window=60)
    assert (await bank.acquire("elevenlabs")).key_id == b.id
    await asyncio.sleep(0.45)
    assert (await bank.acquire("elevenlabs")).key_id == a.id


async def test_backoff_doubles_with_consecutive_failures_and_a_success_resets_it(bank, add_key):
    view, _ = await add_key("flaky")
    durations = []
    for _ in range(3):
        cooldown = await bank.leases.cool_down(view.id, base=1, maximum=60, retry_after=None, error_window=60)
        durations.append(cooldown.duration_ms)
        await bank.leases.redis.delete(bank.leases.key("cool", view.id))  # let the next failure start afresh
    assert 800 <= durations[0] <= 1200
    assert 1600 <= durations[1] <= 2400
    assert 3200 <= durations[2] <= 4800
    lease = await bank.acquire("elevenlabs")
    await bank.release(lease, succeeded=True)
    cooldown = await bank.leases.cool_down(view.id, base=1, maximum=60, retry_after=None, error_window=60)
    assert cooldown.consecutive_failures == 1


async def test_retry_after_longer_than_the_backoff_is_honoured(bank, add_key):
    view, _ = await add_key("told")
    cooldown = await bank.leases.cool_down(view.id, base=1, maximum=60, retry_after=30, error_window=60)
    assert cooldown.duration_ms == 30_000


# --- the Redis copy of the candidates ---------------------------------------------------------


async def test_an_older_snapshot_cannot_put_a_disabled_key_back_into_rotation(bank, add_key, redis):
    view, _ = await add_key("k")
    stale_revision = int(await redis.get(bank.leases.key("rev", "elevenlabs")))
    await bank.disable(view.id)
    # A slow worker arrives with the snapshot it read before the disable.
    applied = await bank.leases.sync("elevenlabs", stale_revision, [CandidateRow(view.id, 2, 1, None)])
    assert applied is False
    assert await bank.leases.candidate_ids("elevenlabs") == set()


async def test_leasing_rebuilds_the_redis_copy_after_redis_lost_it(bank, add_key, redis):
    view, _ = await add_key("k")
    await redis.delete(*(bank.leases.key(kind, "elevenlabs") for kind in ("cand", "quota", "rev", "synced")))
    lease = await bank.acquire("elevenlabs")
    assert lease.key_id == view.id


async def test_a_key_that_cannot_be_decrypted_is_skipped_for_another(bank, add_key, db):
    broken, _ = await add_key("broken", weight=9)
    good, _ = await add_key("good")
    await db.execute("UPDATE provider_keys SET nonce = '\\x000000000000000000000000'::bytea WHERE id = $1", broken.id)
    lease = await bank.acquire("elevenlabs")
    assert lease.key_id == good.id
    assert (await bank.leases.state([broken.id]))[broken.id].in_flight == 0
    assert "authentication" in (await bank.get_key(broken.id)).last_error


async def test_a_lease_carries_the_plaintext_only_in_memory(bank, add_key, settings):
    view, secret = await add_key("k")
    lease = await bank.acquire("elevenlabs")
    assert lease.secret == secret and lease.label == "k"
    raw = aioredis.from_url(settings.redis_url)
    try:
        dumps = [await raw.dump(k) for k in await raw.keys(settings.rkey("*"))]
    finally:
        await raw.aclose()
    assert dumps and all(secret.encode() not in (d or b"") for d in dumps)
