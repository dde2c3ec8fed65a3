"""Money: nothing is charged for audio the user did not get, nothing is charged twice, and the
ledger balances after every scenario (checked by the autouse books_balance fixture)."""

import asyncio

import pytest

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import get, post, remaining, settled, user_with, wav_info
from helpers import sign_up
from server.credits import service as credits, sweep
from server.generation.models import SfxRequest
from server.generation.params import sfx_spec

SFX = {"prompt": "glass breaking", "duration_seconds": 2}


async def generation_rows(db):
    return [dict(r) for r in await db.fetch(
        "SELECT status, failure_reason, credits_charged, hold_id FROM generations ORDER BY created_at")]


async def test_a_failed_generation_charges_nothing_and_records_why(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    sim.state.inject(secret, "500")
    resp, data = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "upstream_unavailable"
    assert await remaining(db, user.user_id) == 10
    [row] = await generation_rows(db)
    assert row["status"] == "failed" and row["credits_charged"] == 0
    assert row["failure_reason"] == "upstream_unavailable: server_error"
    hold = await db.fetchrow("SELECT status FROM credit_holds WHERE id = $1", row["hold_id"])
    assert hold["status"] == "released"


async def test_a_timed_out_generation_charges_nothing(api, db, add_key, sim, service):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    service.settings = service.settings.replace(upstream_deadline=1.0)
    sim.state.inject(secret, "hang")
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unavailable"
    assert await remaining(db, user.user_id) == 10
    [row] = await generation_rows(db)
    assert row["status"] == "failed" and row["failure_reason"].startswith("upstream_unavailable")


async def test_corrupt_or_empty_audio_is_an_upstream_error_and_charges_nothing(api, db, add_key, sim, bank):
    key_id, secret = await add_key()
    user = await user_with(api, db, 10)
    for fault in ("corrupt", "empty"):
        await bank.enable(key_id)  # clears the cooldown the previous round left
        sim.state.inject(secret, fault)
        resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": f"broken {fault}"})
        assert resp.status == 502, fault
        assert (await resp.json())["error"]["code"] == "upstream_unavailable"
    assert await remaining(db, user.user_id) == 10
    assert [r["status"] for r in await generation_rows(db)] == ["failed", "failed"]


async def test_audio_that_decodes_to_nothing_usable_is_not_charged(api, db, add_key, sim, service, monkeypatch):
    await add_key()
    user = await user_with(api, db, 10)
    original = service.upstream.sound_effect

    async def silent(*args, **kwargs):
        audio = await original(*args, **kwargs)
        header, body = audio.data[:44], audio.data[44:]
        return type(audio)(header + bytes(len(body)), audio.output_format, audio.request_id, audio.character_cost)

    # A well-formed WAV of pure silence passes the transport checks; post-processing refuses it.
    monkeypatch.setattr(service.upstream, "sound_effect", silent)
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "upstream_unavailable" and error["details"]["reason"] == "corrupt_audio"
    assert await remaining(db, user.user_id) == 10
    [row] = await generation_rows(db)
    assert row["failure_reason"] == "corrupt_audio"


BOTH_SERVERS = pytest.mark.parametrize("api", [False, True], ids=["default-server", "cancelling-server"], indirect=True)


@BOTH_SERVERS
async def test_a_client_that_leaves_while_waiting_for_the_provider_is_charged_nothing(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    sim.state.inject(secret, "slow", delay=3.0, times=1)
    request = asyncio.ensure_future(post(api, "/v1/sfx", user, SFX))
    while sim.state.key(secret).in_flight == 0:
        await asyncio.sleep(0.02)
    request.cancel()  # the editor closed the panel: the connection goes away
    await settled(db)
    [row] = await generation_rows(db)
    assert row["status"] == "cancelled" and row["credits_charged"] == 0
    assert await remaining(db, user.user_id) == 10
    # The provider call was abandoned too, and the key's slot given back.
    for _ in range(100):
        if sim.state.key(secret).in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.state.key(secret).in_flight == 0
    resp, _ = await post(api, "/v1/sfx", user, {**SFX, "prompt": "next one"})
    assert resp.status == 200


@BOTH_SERVERS
async def test_a_client_that_leaves_after_the_audio_arrived_finds_it_in_history_charged_once(
    api, db, add_key, sim, service, monkeypatch
):
    await add_key()
    user = await user_with(api, db, 10)
    storing = asyncio.Event()
    original_put = service.storage.put

    async def slow_put(data, ext):
        storing.set()
        await asyncio.sleep(0.5)
        return await original_put(data, ext)

    monkeypatch.setattr(service.storage, "put", slow_put)
    request = asyncio.ensure_future(post(api, "/v1/sfx", user, SFX, key="leave-late"))
    await storing.wait()
    request.cancel()
    await settled(db)
    [row] = await generation_rows(db)
    assert row["status"] == "succeeded" and row["credits_charged"] == 1
    assert await remaining(db, user.user_id) == 9
    resp, _ = await get(api, "/v1/generations", user)
    [item] = (await resp.json())["items"]
    resp, audio = await get(api, item["download_url"], user)
    assert resp.status == 200 and wav_info(audio)[0] == 48000
    # Retrying the same click returns that result, still charged once.
    resp, again = await post(api, "/v1/sfx", user, SFX, key="leave-late")
    assert resp.status == 200 and again == audio
    assert await remaining(db, user.user_id) == 9


async def test_fifty_concurrent_generations_with_credits_for_twenty_give_twenty_results_and_thirty_402s(
    api, db, add_key, sim
):
    await add_key(max_concurrency=30)
    await add_key(max_concurrency=30)
    user = await user_with(api, db, 20)
    results = await asyncio.gather(*(post(api, "/v1/sfx", user, {**SFX, "prompt": f"shot {n}"}) for n in range(50)))
    codes = [resp.status for resp, _ in results]
    assert codes.count(200) == 20 and codes.count(402) == 30, codes
    for resp, data in results:
        if resp.status == 402:
            error = (await resp.json())["error"]
            assert error["code"] == "insufficient_credits"
            assert error["details"]["needed"] == 1 and error["details"]["remaining"] == 0
            assert error["details"]["upgrade_url"]
        else:
            assert wav_info(data)[0] == 48000
    assert await remaining(db, user.user_id) == 0
    rows = await generation_rows(db)
    assert sum(r["credits_charged"] for r in rows) == 20
    assert sum(r["failure_reason"] == "insufficient_credits" for r in rows) == 30
    # Requests refused for credits never reached the provider.
    assert len(sim.calls(path_part="sound-generation")) == 20


async def test_the_same_idempotency_key_sent_many_times_at_once_charges_once(api, db, add_key, sim):
    await add_key()
    user = await user_with(api, db, 10)
    results = await asyncio.gather(*(post(api, "/v1/sfx", user, SFX, key="one-click") for _ in range(8)))
    assert {resp.status for resp, _ in results} == {200}
    assert len({resp.headers["X-Generation-Id"] for resp, _ in results}) == 1
    assert len(sim.calls(path_part="sound-generation")) == 1
    assert await remaining(db, user.user_id) == 9


async def test_not_enough_credits_for_every_variation_reserves_none(api, db, add_key, sim):
    await add_key()
    user = await user_with(api, db, 2)
    resp, _ = await post(api, "/v1/sfx", user, {**SFX, "variations": 3})
    assert resp.status == 402
    error = (await resp.json())["error"]
    assert error["details"]["needed"] == 1 and error["details"]["remaining"] == 0
    assert await remaining(db, user.user_id) == 2
    assert sim.calls(path_part="sound-generation") == []
    assert {r["status"] for r in await generation_rows(db)} == {"failed"}


async def test_an_unlimited_plan_is_metered_but_never_refused(api, db, add_key):
    await add_key()
    user = await sign_up(api)
    await credits.set_plan(db, user.user_id, "enterprise")
    resp, _ = await post(api, "/v1/sfx", user, SFX)
    assert resp.status == 200
    assert resp.headers["X-Credits-Charged"] == "1"
    assert resp.headers["X-Credits-Remaining"] == "unlimited"


async def test_a_free_account_spends_its_monthly_allowance(api, db, add_key):
    await add_key()
    user = await sign_up(api)  # free: 20 credits this month
    resp, _ = await post(api, "/v1/sfx", user, {**SFX, "duration_seconds": 10})
    assert resp.status == 200
    assert resp.headers["X-Credits-Charged"] == "1" and resp.headers["X-Credits-Remaining"] == "19"


async def test_upstream_user_errors_are_400_and_charge_nothing(api, db, add_key, sim):
    await add_key()
    user = await user_with(api, db, 10)
    resp, _ = await post(api, "/v1/voice", user, {"text": "Hello.", "voice_id": "21m00Tcm4TlvDq8ikWAM",
                                                  "model_id": "eleven_imaginary_v9"})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_request" and error["details"]["upstream_code"] == "model_not_found"
    assert await remaining(db, user.user_id) == 10
    [row] = await generation_rows(db)
    assert row["failure_reason"] == "invalid_request: model_not_found"



async def test_a_request_cancelled_while_its_records_are_opened_holds_nothing_and_can_be_retried(
    api, db, add_key, service, monkeypatch
):
    await add_key()
    user = await user_with(api, db, 10)
    original_open = service._open
    opened = asyncio.Event()

    async def slow_open(job, cached):
        claim = await original_open(job, cached)
        opened.set()
        await asyncio.sleep(0.3)  # the client leaves right after the records and the hold were committed
        return claim

    monkeypatch.setattr(service, "_open", slow_open)
    spec = sfx_spec(SfxRequest(**SFX), model_id=service.settings.sfx_model_id)
    request = asyncio.ensure_future(service.create(user.user_id, spec, "open-then-leave"))
    await opened.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    for _ in range(100):
        if await db.fetchval("SELECT status FROM generation_requests") == "failed":
            break
        await asyncio.sleep(0.02)
    [row] = await generation_rows(db)
    assert row["status"] == "cancelled"
    assert await remaining(db, user.user_id) == 10
    # The same click retried: generated and charged once, not stuck behind an "in progress" record.
    monkeypatch.setattr(service, "_open", original_open)
    resp, _ = await post(api, "/v1/sfx", user, SFX, key="open-then-leave")
    assert resp.status == 200
    assert await remaining(db, user.user_id) == 9


async def test_a_take_whose_hold_expired_before_its_audio_arrived_is_not_charged(api, db, add_key, sim):
    """The hold sweep frees a hold at its expiry even while its request still waits on the provider
    (a take that outlived CREDIT_HOLD_TTL). The audio that then arrives is not charged: the closing
    statement finds the hold released and writes nothing, and the take fails."""
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    sim.state.inject(secret, "slow", delay=0.6)
    request = asyncio.ensure_future(post(api, "/v1/sfx", user, SFX))
    while await db.fetchval("SELECT count(*) FROM credit_holds WHERE status = 'held'") == 0:
        await asyncio.sleep(0.02)
    await db.execute("UPDATE credit_holds SET expires_at = now() - interval '1 second'")
    assert await sweep.sweep_once(db) == 1
    resp, _ = await request
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "hold_closed"
    assert await remaining(db, user.user_id) == 10
    [row] = await generation_rows(db)
    assert row["status"] == "failed" and row["credits_charged"] == 0 and row["failure_reason"] == "hold_closed"
    assert await db.fetchval("SELECT status FROM credit_holds") == "expired"
    assert await db.fetchval("SELECT status FROM generation_requests") == "failed"
