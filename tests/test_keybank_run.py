"""KeyBank.run: what each upstream failure does to the key, when it retries elsewhere, and when it stops.

The first half drives run() with attempts that raise the SDK's real exception types; the second
half calls the ElevenLabs simulator over HTTP through the official SDK, faults injected per key.
The last part covers the background refresher that keeps quotas current and revives parked keys.
"""

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis.asyncio as aioredis
from elevenlabs.core.api_error import ApiError as ProviderApiError

from server.keybank import KEYBANK, KeyBank, KeyBankConfig, RetryOnAnotherKey, UpstreamUserError
from server.keybank.refresher import refresh_once
from server.keybank.service import NoActiveKey
from server.web.errors import ServiceUnavailable, UpstreamError
from server.web.logs import JsonFormatter
from keybank_support import add_key, bank, json_logs, new_secret, redis, secrets_made, sim, sim_settings  # noqa: F401

# --- fixtures (shared ones in keybank_support) ---------------------------------------------


@pytest.fixture
def bank_config():
    return KeyBankConfig(cooldown_base=5.0, quota_reset_default=600.0)


# --- helpers ------------------------------------------------------------------------------------


def provider_error(status, code, message="", headers=None):
    return ProviderApiError(status_code=status, headers=headers or {}, body={"detail": {"status": code, "message": message}})


def scripted(**by_label):
    """An attempt whose outcome depends on the key's label: an exception to raise, else it succeeds."""
    calls = []

    async def attempt(lease):
        calls.append(lease.label)
        outcome = by_label.get(lease.label)
        if isinstance(outcome, list):
            outcome = outcome.pop(0) if outcome else None
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return await outcome(lease)
        return f"audio from {lease.label}"

    return attempt, calls


async def two_keys(add_key):
    """'first' is tried first (heavier), then 'second'."""
    first, first_secret = await add_key("first", weight=3)
    second, _ = await add_key("second", weight=1)
    return first, second, first_secret


async def run(bank, attempt, **kwargs):
    kwargs.setdefault("deadline", 5.0)
    kwargs.setdefault("max_attempts", 4)
    return await bank.run("elevenlabs", attempt, **kwargs)


# --- failure handling ---------------------------------------------------------------------------


async def test_a_concurrency_cap_429_moves_on_to_another_key_at_once_without_cooldown(bank, add_key):
    first, second, _ = await two_keys(add_key)
    attempt, calls = scripted(first=provider_error(429, "too_many_concurrent_requests"))
    started = time.monotonic()
    assert await run(bank, attempt) == "audio from second"
    assert time.monotonic() - started < 1
    assert calls == ["first", "second"]
    state = await bank.get_key(first.id)
    assert state.cooldown_until is None and state.status == "active"
    assert state.recent_errors == 1 and "concurrency_limited" in state.last_error
    assert state.in_flight == 0


async def test_a_busy_429_cools_the_key_for_its_retry_after_and_retries_elsewhere(bank, add_key):
    first, second, _ = await two_keys(add_key)
    attempt, calls = scripted(first=provider_error(429, "system_busy", headers={"retry-after": "30"}))
    assert await run(bank, attempt) == "audio from second"
    view = await bank.get_key(first.id)
    remaining = (view.cooldown_until - datetime.now(timezone.utc)).total_seconds()
    assert 28 <= remaining <= 30
    assert view.consecutive_failures == 1 and "busy 429 system_busy" in view.last_error
    # While it cools, traffic goes to the other key even though 'first' is heavier.
    assert (await run(bank, scripted()[0])) == "audio from second"


@pytest.mark.parametrize(
    "failure",
    [
        provider_error(500, "internal_server_error"),
        provider_error(503, "service_unavailable"),
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        asyncio.TimeoutError(),
        RetryOnAnotherKey("the audio was empty"),
    ],
    ids=["500", "503", "connect", "reset", "disconnect", "read-timeout", "asyncio-timeout", "unusable-answer"],
)
async def test_transient_failures_cool_the_key_with_backoff_and_retry_on_another(bank, add_key, failure):
    first, second, _ = await two_keys(add_key)
    attempt, calls = scripted(first=failure)
    assert await run(bank, attempt) == "audio from second"
    assert calls == ["first", "second"]
    view = await bank.get_key(first.id)
    assert view.cooldown_until is not None and view.consecutive_failures == 1
    assert view.status == "active" and view.last_error_at is not None
    remaining = (view.cooldown_until - datetime.now(timezone.utc)).total_seconds()
    assert 3.5 <= remaining <= 6.1  # cooldown_base 5 s with jitter


async def test_quota_exceeded_parks_the_key_until_its_reset_time(bank, add_key, sim):
    first, second, _ = await two_keys(add_key)
    stored_reset = first.quota_reset_at
    attempt, _ = scripted(first=provider_error(401, "quota_exceeded", "This request exceeds your quota"))
    assert await run(bank, attempt) == "audio from second"
    view = await bank.get_key(first.id)
    assert view.status == "exhausted"
    assert view.quota_reset_at == stored_reset
    assert view.quota_remaining == 0
    assert await bank.leases.candidate_ids("elevenlabs") == {second.id}


async def test_quota_exceeded_without_a_known_reset_parks_the_key_for_the_default_time(bank, add_key, db):
    first, second, _ = await two_keys(add_key)
    await db.execute("UPDATE provider_keys SET quota_reset_at = NULL WHERE id = $1", first.id)
    attempt, _ = scripted(first=provider_error(401, "quota_exceeded"))
    await run(bank, attempt)
    view = await bank.get_key(first.id)
    expected = datetime.now(timezone.utc) + timedelta(seconds=600)
    assert view.status == "exhausted"
    assert abs((view.quota_reset_at - expected).total_seconds()) < 5


@pytest.mark.parametrize("code", ["invalid_api_key", "missing_permissions"])
async def test_an_invalid_or_misconfigured_key_is_disabled_with_a_reason_for_the_admin(bank, add_key, code, json_logs):
    first, second, _ = await two_keys(add_key)
    attempt, _ = scripted(first=provider_error(401, code, "The key is not usable"))
    assert await run(bank, attempt) == "audio from second"
    view = await bank.get_key(first.id)
    assert view.status == "disabled"
    assert code in view.disabled_reason
    assert view.last_error == view.disabled_reason
    for _ in range(5):
        attempt, calls = scripted()
        await run(bank, attempt)
        assert calls == ["second"]
    # The admin alert: an ERROR line naming the key, never its secret.
    alerts = [line for line in json_logs.getvalue().splitlines() if '"level": "ERROR"' in line and "disabled" in line]
    assert alerts and f'"key_id": {first.id}' in alerts[0]


@pytest.mark.parametrize(
    ("status", "code", "api_status", "api_code"),
    [(400, "voice_not_found", 400, "invalid_request"), (400, "max_character_limit_exceeded", 400, "invalid_request"),
     (422, None, 422, "validation_failed")],
)
async def test_a_request_the_provider_rejects_is_a_user_error_and_never_retried(bank, add_key, status, code, api_status, api_code):
    first, second, secret = await two_keys(add_key)
    attempt, calls = scripted(first=provider_error(status, code, "bad request"))
    with pytest.raises(UpstreamUserError) as err:
        await run(bank, attempt)
    assert (err.value.status, err.value.code) == (api_status, api_code)
    assert calls == ["first"]
    view = await bank.get_key(first.id)
    assert view.status == "active" and view.cooldown_until is None and view.in_flight == 0
    assert secret not in str(err.value.body())
    assert err.value.__cause__ is None  # the provider's exception (with its headers) is not chained


async def test_retries_stop_at_max_attempts(bank, add_key):
    for n, weight in enumerate((3, 2, 1)):
        await add_key(f"k{n}", weight=weight)
    attempt, calls = scripted(k0=provider_error(500, "x"), k1=provider_error(503, "x"), k2=provider_error(500, "x"))
    with pytest.raises(UpstreamError) as err:
        await run(bank, attempt, max_attempts=2)
    assert calls == ["k0", "k1"]
    assert err.value.code == "upstream_unavailable" and err.value.status == 502
    assert err.value.details == {"attempts": 2, "reason": "server_error"}


async def test_when_every_key_failed_the_answer_is_upstream_unavailable(bank, add_key):
    await two_keys(add_key)
    attempt, calls = scripted(first=provider_error(500, "x"), second=httpx.ConnectError("refused"))
    with pytest.raises(UpstreamError) as err:
        await run(bank, attempt, max_attempts=5)
    assert calls == ["first", "second"]
    assert err.value.code == "upstream_unavailable"


async def test_when_every_key_is_at_its_cap_upstream_the_answer_is_capacity_exhausted(bank, add_key):
    await two_keys(add_key)
    cap = provider_error(429, "too_many_concurrent_requests")
    attempt, calls = scripted(first=cap, second=cap)
    with pytest.raises(ServiceUnavailable) as err:
        await run(bank, attempt)
    assert calls == ["first", "second"]
    assert err.value.code == "capacity_exhausted" and "Retry-After" in err.value.headers


async def test_no_key_at_all_is_no_active_key_without_calling_the_attempt(bank):
    attempt, calls = scripted()
    with pytest.raises(NoActiveKey) as err:
        await run(bank, attempt)
    assert (err.value.status, err.value.code) == (503, "no_active_key") and calls == []
    assert "Retry-After" not in err.value.headers


async def test_a_hanging_key_is_cut_off_at_the_deadline_cooled_and_released(bank, add_key):
    view, _ = await add_key("hangs")

    async def hang(lease):
        await asyncio.sleep(3600)

    attempt, _ = scripted(hangs=hang)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as err:
        await run(bank, attempt, deadline=0.3)
    assert 0.25 <= time.monotonic() - started < 1.5
    assert err.value.code == "upstream_unavailable" and err.value.details["reason"] == "deadline"
    state = await bank.get_key(view.id)
    assert state.in_flight == 0 and state.cooldown_until is not None and "timeout" in state.last_error


async def test_the_deadline_covers_all_attempts_together(bank, add_key):
    await two_keys(add_key)

    async def slow_failure(lease):
        await asyncio.sleep(0.2)
        raise provider_error(500, "x")

    attempt, calls = scripted(first=slow_failure, second=slow_failure)
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        await run(bank, attempt, deadline=0.3, max_attempts=10)
    assert time.monotonic() - started < 1.0
    assert calls == ["first", "second"]


async def test_cancelling_the_caller_releases_the_lease_without_blaming_the_key(bank, add_key):
    view, _ = await add_key("k")
    entered = asyncio.Event()

    async def wait_forever(lease):
        entered.set()
        await asyncio.sleep(3600)

    attempt, _ = scripted(k=wait_forever)
    task = asyncio.create_task(run(bank, attempt, deadline=30))
    await entered.wait()
    assert (await bank.get_key(view.id)).in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = await bank.get_key(view.id)
    assert state.in_flight == 0 and state.cooldown_until is None and state.consecutive_failures == 0


async def test_an_error_that_is_not_the_providers_propagates_unchanged(bank, add_key):
    view, _ = await add_key("k")
    attempt, calls = scripted(k=ValueError("our own bug"))
    with pytest.raises(ValueError, match="our own bug"):
        await run(bank, attempt)
    state = await bank.get_key(view.id)
    assert calls == ["k"] and state.in_flight == 0 and state.cooldown_until is None


async def test_restricting_to_key_ids_only_uses_those_keys(bank, add_key):
    first, second, _ = await two_keys(add_key)
    attempt, calls = scripted(second=provider_error(500, "x"))
    with pytest.raises(UpstreamError):
        await run(bank, attempt, key_ids={second.id})
    assert calls == ["second"]


async def test_reported_cost_keeps_the_quota_current_in_postgres_and_redis(bank, add_key, redis):
    view, _ = await add_key("k", limit=10_000, used=1_000)

    async def costly(lease):
        lease.report_headers({"Character-Cost": "250", "request-id": "abc"})
        return "ok"

    attempt, _ = scripted(k=costly)
    await run(bank, attempt)
    after = await bank.get_key(view.id)
    assert after.quota_used == 1_250
    assert int(await redis.hget(bank.leases.key("quota", "elevenlabs"), str(view.id))) == 8_750


def costing(amount):
    async def attempt(lease):
        lease.report_headers({"character-cost": str(amount)})
        return "ok"

    return attempt


async def test_a_success_counts_its_cost_in_redis_and_the_flush_writes_it_to_postgres_once(bank, add_key, db):
    view, _ = await add_key("k", limit=10_000, used=1_000)
    for _ in range(3):
        await run(bank, scripted(k=costing(100))[0])
    # Off the request path: Postgres has not been written yet, but the bank already shows the usage.
    assert await db.fetchval("SELECT quota_used FROM provider_keys WHERE id = $1", view.id) == 1_000
    assert (await bank.get_key(view.id)).quota_used == 1_300

    assert await bank.flush_usage() == {view.id: 300}
    assert await db.fetchval("SELECT quota_used FROM provider_keys WHERE id = $1", view.id) == 1_300
    assert await bank.flush_usage() == {}  # nothing is written twice
    assert await db.fetchval("SELECT quota_used FROM provider_keys WHERE id = $1", view.id) == 1_300
    assert (await bank.get_key(view.id)).quota_used == 1_300


async def test_two_workers_flushing_together_write_each_amount_once(bank, add_key, db, sim_settings):
    view, _ = await add_key("k", limit=10_000, used=0)
    await run(bank, scripted(k=costing(40))[0])
    other_redis = aioredis.from_url(sim_settings.redis_url, decode_responses=True)
    other_worker = KeyBank(sim_settings, db, other_redis)
    try:
        await asyncio.gather(bank.flush_usage(), other_worker.flush_usage())
        await asyncio.gather(bank.flush_usage(), other_worker.flush_usage())
    finally:
        await other_worker.aclose()
        await other_redis.aclose()
    assert await db.fetchval("SELECT quota_used FROM provider_keys WHERE id = $1", view.id) == 40


async def test_a_resync_before_the_flush_keeps_the_unflushed_usage_off_the_remaining_quota(bank, add_key, redis):
    rich, _ = await add_key("rich", limit=10_000, used=0)
    poor, _ = await add_key("poor", limit=10_000, used=4_000)
    await run(bank, scripted(rich=costing(8_000))[0], key_ids={rich.id})
    await bank.sync("elevenlabs")  # e.g. another worker's refresher, before any flush
    assert int(await redis.hget(bank.leases.key("quota", "elevenlabs"), str(rich.id))) == 2_000
    lease = await bank.acquire("elevenlabs")
    assert lease.key_id == poor.id  # 6,000 left beats 2,000 left
    await bank.release(lease, succeeded=False)


async def test_the_refresher_flushes_before_reading_so_the_providers_count_is_not_added_twice(bank, add_key, sim, db):
    state, _ = sim
    view, secret = await add_key("k", limit=10_000, used=0)
    await run(bank, scripted(k=costing(500))[0])
    state.set_usage(secret, character_count=500)  # the provider counted the same 500 characters
    await refresh_once(bank, force=True)
    await bank.flush_usage()
    assert await db.fetchval("SELECT quota_used FROM provider_keys WHERE id = $1", view.id) == 500
    assert (await bank.get_key(view.id)).quota_used == 500


async def test_upstream_outcomes_are_counted_in_metrics(bank, add_key):
    await two_keys(add_key)
    attempt, _ = scripted(first=provider_error(503, "x"))
    await run(bank, attempt)
    counter = bank.metrics.upstream
    assert counter.labels("elevenlabs", "server_error")._value.get() == 1
    assert counter.labels("elevenlabs", "ok")._value.get() == 1


async def test_errors_never_carry_the_secret(bank, add_key):
    view, secret = await add_key("k")

    async def leaky(lease):
        # A provider echoing the key back in its error must not reach our error or logs.
        raise provider_error(401, "invalid_api_key", f"key {lease.secret} is invalid")

    attempt, _ = scripted(k=leaky)
    with pytest.raises(UpstreamError) as err:
        await run(bank, attempt)
    assert secret not in str(err.value.body()) and secret not in str(err.value)
    view = await bank.get_key(view.id)
    assert secret not in view.disabled_reason and "[REDACTED]" in view.disabled_reason


# --- against the simulator, through the official SDK ---------------------------------------------


def sfx_attempt(bank, seen=None):
    async def attempt(lease):
        client = bank.client(lease)
        async with client.text_to_sound_effects.with_raw_response.convert(
            text="a door slams", duration_seconds=0.5, output_format="mp3_44100_128", request_options={"max_retries": 0}
        ) as response:
            lease.report_headers(response.headers)
            audio = b"".join([chunk async for chunk in response.data])
        if seen is not None:
            seen.append(lease.label)
        return audio

    return attempt


def generation_calls(state, secret):
    return [r for r in state.requests if r["path"] == "/v1/sound-generation" and r["key"] == secret[-4:]]


async def test_simulated_faults_rotate_to_a_healthy_key_and_leave_each_key_in_the_right_state(bank, add_key, sim):
    state, _ = sim
    keys = {}
    for label, weight in (("capped", 5), ("broken", 4), ("invalid", 3), ("spent", 2), ("healthy", 1)):
        keys[label] = await add_key(label, weight=weight)
    state.inject(keys["capped"][1], "429_concurrency", times=1)
    state.inject(keys["broken"][1], "500", times=1)
    state.inject(keys["invalid"][1], "401_invalid")
    state.inject(keys["spent"][1], "401_quota", times=1)
    seen = []
    audio = await bank.run("elevenlabs", sfx_attempt(bank, seen), deadline=10, max_attempts=5)
    assert len(audio) > 1000 and seen == ["healthy"]
    views = {v.label: v for v in await bank.list_keys()}
    assert views["capped"].status == "active" and views["capped"].cooldown_until is None
    assert views["broken"].cooldown_until is not None
    assert views["invalid"].status == "disabled" and "invalid_api_key" in views["invalid"].disabled_reason
    assert views["spent"].status == "exhausted"
    assert views["healthy"].quota_used > 0  # the character-cost header was recorded
    assert all(v.in_flight == 0 for v in views.values())


async def test_simulated_hang_and_connection_reset_cool_the_key(bank, add_key, sim):
    state, _ = sim
    hang, hang_secret = await add_key("hang", weight=3)
    reset, reset_secret = await add_key("reset", weight=2)
    ok, _ = await add_key("ok", weight=1)
    state.inject(hang_secret, "hang", times=1)
    state.inject(reset_secret, "reset", times=1)

    async def attempt(lease):
        # The generation domain's per-call timeout; the simulator never answers a hang. Generous
        # enough for the healthy key's answer (an MP3 made by ffmpeg) on a machine busy with
        # the rest of the suite: at 0.3 s it sometimes timed out too.
        async with asyncio.timeout(2.0):
            return await sfx_attempt(bank)(lease)

    audio = await bank.run("elevenlabs", attempt, deadline=10, max_attempts=4)
    assert audio
    views = {v.label: v for v in await bank.list_keys()}
    assert "timeout" in views["hang"].last_error and views["hang"].cooldown_until is not None
    assert "connection_error" in views["reset"].last_error and views["reset"].cooldown_until is not None


async def test_a_voice_that_does_not_exist_is_a_400_for_the_user_and_no_other_key_is_tried(bank, add_key, sim):
    state, _ = sim
    await add_key("a", weight=2)
    await add_key("b")

    async def speak(lease):
        client = bank.client(lease)
        chunks = client.text_to_speech.convert("no-such-voice", text="hello", request_options={"max_retries": 0})
        return b"".join([c async for c in chunks])

    with pytest.raises(UpstreamUserError) as err:
        await bank.run("elevenlabs", speak, deadline=5, max_attempts=4)
    assert err.value.status in (400, 422) and err.value.code in ("invalid_request", "validation_failed")
    assert len([r for r in state.requests if r["path"].startswith("/v1/text-to-speech")]) == 1


async def test_a_disabled_key_gets_no_upstream_traffic(bank, add_key, sim):
    state, _ = sim
    off, off_secret = await add_key("off", weight=5)
    on, on_secret = await add_key("on")
    await bank.disable(off.id)
    for _ in range(5):
        await bank.run("elevenlabs", sfx_attempt(bank), deadline=10, max_attempts=2)
    assert generation_calls(state, off_secret) == []
    assert len(generation_calls(state, on_secret)) == 5


# --- the refresher ------------------------------------------------------------------------------


async def test_refresh_reads_each_keys_quota_from_the_provider(bank, add_key, sim):
    state, _ = sim
    view, secret = await add_key("k", limit=10_000, used=0)
    state.set_usage(secret, character_count=4_321)
    report = await refresh_once(bank, force=True)
    assert [p.key_id for p in report.probed] == [view.id]
    after = await bank.get_key(view.id)
    assert after.quota_used == 4_321 and after.quota_checked_at > view.quota_checked_at


async def test_only_stale_keys_are_refreshed(bank, add_key, sim, db):
    fresh, _ = await add_key("fresh")
    stale, _ = await add_key("stale")
    await db.execute("UPDATE provider_keys SET quota_checked_at = now() - interval '1 day' WHERE id = $1", stale.id)
    report = await refresh_once(bank)
    assert [p.key_id for p in report.probed] == [stale.id]


async def test_an_exhausted_key_is_probed_after_its_reset_and_one_good_probe_reenables_it(bank, add_key, sim, db):
    state, _ = sim
    view, secret = await add_key("spent", limit=1_000, used=0)
    attempt, _ = scripted(spent=provider_error(401, "quota_exceeded"))
    with pytest.raises(UpstreamError):
        await bank.run("elevenlabs", attempt, deadline=5, max_attempts=1)
    assert (await bank.get_key(view.id)).status == "exhausted"

    # Before the reset time the refresher leaves it alone.
    assert (await refresh_once(bank)).probed == []
    assert (await bank.get_key(view.id)).status == "exhausted"

    # The reset time passes; the provider's counter has started over.
    await db.execute("UPDATE provider_keys SET quota_reset_at = now() - interval '1 second' WHERE id = $1", view.id)
    state.set_usage(secret, character_count=0)
    report = await refresh_once(bank)
    assert report.reactivated == [view.id]
    after = await bank.get_key(view.id)
    assert after.status == "active" and after.quota_used == 0
    assert (await bank.acquire("elevenlabs")).key_id == view.id


async def test_a_key_still_without_quota_after_the_reset_stays_parked(bank, add_key, sim, db):
    state, _ = sim
    view, secret = await add_key("spent", limit=1_000, used=1_000)
    assert view.status == "exhausted"
    await db.execute("UPDATE provider_keys SET quota_reset_at = now() - interval '1 second' WHERE id = $1", view.id)
    future = int(time.time()) + 7200
    state.set_usage(secret, character_count=1_000, reset_unix=future)
    report = await refresh_once(bank)
    assert [p.key_id for p in report.probed] == [view.id] and report.reactivated == []
    after = await bank.get_key(view.id)
    assert after.status == "exhausted" and int(after.quota_reset_at.timestamp()) == future


async def test_a_cooled_key_is_probed_once_its_cooldown_is_over_and_a_good_answer_clears_its_backoff(bank, add_key, sim):
    view, _ = await add_key("flaky")
    await bank.leases.cool_down(view.id, base=0.2, maximum=0.2, retry_after=None, error_window=60)
    await bank.leases.cool_down(view.id, base=0.2, maximum=0.2, retry_after=None, error_window=60)
    assert (await refresh_once(bank)).probed == []  # still cooling: not yet
    await asyncio.sleep(0.3)
    report = await refresh_once(bank)
    assert [p.key_id for p in report.probed] == [view.id] and report.probed[0].ok
    assert (await bank.get_key(view.id)).consecutive_failures == 0


async def test_a_probe_that_finds_the_key_revoked_disables_it(bank, add_key, sim):
    state, _ = sim
    view, secret = await add_key("revoked")
    state.inject(secret, "401_invalid")
    report = await refresh_once(bank, force=True)
    assert report.probed[0].ok is False
    after = await bank.get_key(view.id)
    assert after.status == "disabled" and "invalid_api_key" in after.disabled_reason


async def test_the_refresh_lock_lets_one_worker_refresh_at_a_time(bank, add_key, sim, sim_settings, db):
    state, _ = sim
    secrets_ = [(await add_key(f"k{n}"))[1] for n in range(3)]
    for secret in secrets_:
        state.inject(secret, "slow", delay=0.3, scope="all")
    other_redis = aioredis.from_url(sim_settings.redis_url, decode_responses=True)
    other_worker = KeyBank(sim_settings, db, other_redis)
    before = len([r for r in state.requests if r["path"] == "/v1/user/subscription"])
    try:
        reports = await asyncio.gather(refresh_once(bank, force=True), refresh_once(other_worker, force=True))
    finally:
        await other_worker.aclose()
        await other_redis.aclose()
    assert sorted(r is None for r in reports) == [False, True]
    done = next(r for r in reports if r is not None)
    assert len(done.probed) == 3
    after = len([r for r in state.requests if r["path"] == "/v1/user/subscription"])
    assert after - before == 3
    # The lock is released afterwards: the next round may run.
    assert await refresh_once(bank, force=True) is not None


async def test_the_app_runs_the_refresher_in_the_background(aiohttp_client, sim_settings, add_key, sim, db):
    state, _ = sim
    view, secret = await add_key("k", limit=10_000)
    state.set_usage(secret, character_count=777)
    await db.execute("UPDATE provider_keys SET quota_checked_at = now() - interval '1 day' WHERE id = $1", view.id)
    from server.app import create_app

    app = create_app(sim_settings.replace(keybank_refresh_interval=0.5))
    client = await aiohttp_client(app)
    assert isinstance(client.app[KEYBANK], KeyBank)
    for _ in range(40):
        if (await client.app[KEYBANK].get_key(view.id)).quota_used == 777:
            break
        await asyncio.sleep(0.1)
    assert (await client.app[KEYBANK].get_key(view.id)).quota_used == 777


async def test_a_decrypted_secret_is_registered_for_redaction_in_every_log_line(bank, add_key):
    view, secret = await add_key("k")
    lease = await bank.acquire("elevenlabs")
    # A library logging the key it was given: the production formatter scrubs it.
    record = logging.LogRecord("some.library", logging.WARNING, __file__, 1, "upstream said %s", (lease.secret,), None)
    line = JsonFormatter().format(record)
    assert secret not in line and "[REDACTED]" in line
    await bank.release(lease)
