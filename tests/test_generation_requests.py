"""What a generation request may ask for, how the answer is shaped, idempotency, the reuse cache,
plan limits, and voices (which key owns which voice)."""

import asyncio
import uuid

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import get, post, remaining, user_with, wav_info
from helpers import sign_up

RACHEL = "21m00Tcm4TlvDq8ikWAM"


# --- answer shapes -------------------------------------------------------------------------


async def test_accept_json_gives_the_listing_instead_of_the_audio(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 10)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "rain on a tin roof", "duration_seconds": 2},
                            accept="application/json")
    assert resp.status == 200
    body = await resp.json()
    assert body["credits"] == {"charged": 1, "remaining": 9}
    [item] = body["generations"]
    assert item["prompt"] == "rain on a tin roof" and item["variation"] == 0 and item["credits"] == 1
    assert item["download_url"] == f"/v1/generations/{item['id']}/audio"
    resp, audio = await get(api, item["download_url"], user)
    assert wav_info(audio)[0] == 48000


async def test_variations_are_separate_generations_made_concurrently_and_listed_as_json(api, db, add_key, sim):
    _, secret = await add_key(max_concurrency=4)
    user = await user_with(api, db, 10)
    sim.state.inject(secret, "slow", delay=0.3, times=3)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "sword clash", "duration_seconds": 2, "variations": 3})
    assert resp.status == 200, data
    body = await resp.json()
    assert [g["variation"] for g in body["generations"]] == [0, 1, 2]
    assert len({g["id"] for g in body["generations"]}) == 3
    assert body["credits"]["charged"] == 3 and body["failed"] == []
    assert len(sim.calls(secret, "sound-generation")) == 3
    assert sim.peak(secret) == 3  # each call takes 0.3 s: the provider had all three at once


async def test_a_failed_variation_is_reported_and_not_charged_while_the_others_are_kept(api, db, add_key, sim):
    _, secret = await add_key(max_concurrency=4)
    user = await user_with(api, db, 10)
    # One take meets a slow 500; the only key is then cooling, so that take has nowhere else to go.
    sim.state.inject(secret, "500", times=1, delay=0.3)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "thunder", "duration_seconds": 2, "variations": 2})
    assert resp.status == 200, data
    body = await resp.json()
    assert len(body["generations"]) == 1 and body["credits"]["charged"] == 1
    [failed] = body["failed"]
    assert failed["error"]["code"] == "upstream_unavailable"
    assert await remaining(db, user.user_id) == 9


# --- validation and plan limits -----------------------------------------------------------------


async def test_malformed_requests_are_422_with_the_fields_named(api, db):
    user = await user_with(api, db, 10)
    cases = [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"prompt": "x", "duration_seconds": 0.2}, "duration_seconds"),
        ({"prompt": "x", "duration_seconds": 31}, "duration_seconds"),
        ({"prompt": "x", "prompt_influence": 1.5}, "prompt_influence"),
        ({"prompt": "x", "variations": 5}, "variations"),
        ({"prompt": "x", "format": "flac"}, "format"),
        ({"prompt": "x", "bit_depth": 32}, "bit_depth"),
        ({"prompt": "x", "surprise": True}, "surprise"),
    ]
    for body, field in cases:
        resp, _ = await post(api, "/v1/sfx", user, body)
        assert resp.status == 422, body
        error = (await resp.json())["error"]
        assert error["code"] == "validation_failed"
        assert field in [f["field"] for f in error["details"]["fields"]], body
    resp, _ = await post(api, "/v1/voice", user, {"text": "hi", "voice_id": RACHEL, "voice_settings": {"speed": 2}})
    assert resp.status == 422
    assert await db.fetchval("SELECT count(*) FROM generations") == 0


async def test_plan_limits_are_422_with_the_limit_and_the_upgrade_link(api, db, add_key):
    await add_key()
    user = await sign_up(api)  # free: 10 s, one variation, 500 characters
    cases = [
        ("/v1/sfx", {"prompt": "long drone", "duration_seconds": 12}, "duration_seconds", 10),
        ("/v1/sfx", {"prompt": "takes", "duration_seconds": 1, "variations": 2}, "variations", 1),
        ("/v1/voice", {"text": "a" * 501, "voice_id": RACHEL}, "text", 500),
    ]
    for path, body, field, limit in cases:
        resp, _ = await post(api, path, user, body)
        assert resp.status == 422, body
        error = (await resp.json())["error"]
        assert error["details"]["fields"][0]["field"] == field
        assert error["details"]["fields"][0]["limit"] == limit
        assert error["details"]["upgrade_url"]
    assert await db.fetchval("SELECT count(*) FROM credit_holds") == 0


async def test_the_rate_limit_answers_429_with_retry_after(api, db, add_key):
    await add_key()
    user = await sign_up(api)  # free: 10 requests a minute
    statuses = []
    for n in range(11):
        resp, _ = await post(api, "/v1/sfx", user, {"prompt": f"tick {n}", "duration_seconds": 1})
        statuses.append(resp.status)
    assert statuses[:10].count(429) == 0
    assert statuses[10] == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]["code"] == "rate_limited"


async def test_an_unknown_voice_is_422_before_anything_is_reserved(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 10)
    resp, _ = await post(api, "/v1/voice", user, {"text": "Hello.", "voice_id": "NoSuchVoice123"})
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["details"]["fields"][0]["field"] == "voice_id"
    assert await db.fetchval("SELECT count(*) FROM credit_holds") == 0


async def test_a_bad_idempotency_key_is_400(api, db):
    user = await user_with(api, db, 10)
    resp, _ = await post(api, "/v1/sfx", user, {"prompt": "x"}, key="x" * 151)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_idempotency_key"


# --- idempotency -----------------------------------------------------------------------------


async def test_the_same_idempotency_key_returns_the_first_result_and_charges_once(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    body = {"prompt": "cash register", "duration_seconds": 2}
    first, audio = await post(api, "/v1/sfx", user, body, key="click-1")
    again, audio_again = await post(api, "/v1/sfx", user, {**body, "prompt": "  cash   register "}, key="click-1")
    assert first.status == again.status == 200
    assert again.headers["X-Generation-Id"] == first.headers["X-Generation-Id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert audio_again == audio
    assert len(sim.calls(secret, "sound-generation")) == 1
    assert await remaining(db, user.user_id) == 9
    assert await db.fetchval("SELECT count(*) FROM generations") == 1


async def test_the_credits_charged_metric_counts_a_retried_request_once(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 10)
    body = {"prompt": "cash register", "duration_seconds": 12}  # 2 credits
    for _ in range(2):
        resp, _ = await post(api, "/v1/sfx", user, body, key="click-metric")
        assert resp.status == 200
    metrics = await (await api.get("/metrics")).text()
    assert 'credits_charged_total{kind="sfx"} 2.0' in metrics
    assert await remaining(db, user.user_id) == 8


async def test_an_idempotency_key_reused_with_other_parameters_is_409(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 10)
    resp, _ = await post(api, "/v1/sfx", user, {"prompt": "cat meows", "duration_seconds": 2}, key="k-2")
    assert resp.status == 200
    resp, _ = await post(api, "/v1/sfx", user, {"prompt": "dog barks", "duration_seconds": 2}, key="k-2")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "idempotency_conflict"
    assert await remaining(db, user.user_id) == 9


async def test_idempotency_keys_belong_to_one_user(api, db, add_key):
    await add_key()
    alice = await user_with(api, db, 10)
    bob = await user_with(api, db, 10)
    body = {"prompt": "door bell", "duration_seconds": 2}
    a, _ = await post(api, "/v1/sfx", alice, body, key="shared-key")
    b, _ = await post(api, "/v1/sfx", bob, body, key="shared-key")
    assert a.status == b.status == 200
    assert a.headers["X-Generation-Id"] != b.headers["X-Generation-Id"]
    assert await remaining(db, alice.user_id) == await remaining(db, bob.user_id) == 9


async def test_a_duplicate_sent_while_the_first_is_running_waits_for_it_and_is_not_charged_again(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    sim.state.inject(secret, "slow", delay=0.5, times=1)
    body = {"prompt": "helicopter flyby", "duration_seconds": 2}
    first, second = await asyncio.gather(
        post(api, "/v1/sfx", user, body, key="double-click"),
        post(api, "/v1/sfx", user, body, key="double-click"),
    )
    assert first[0].status == second[0].status == 200
    assert first[0].headers["X-Generation-Id"] == second[0].headers["X-Generation-Id"]
    assert first[1] == second[1]
    assert len(sim.calls(secret, "sound-generation")) == 1
    assert await remaining(db, user.user_id) == 9


async def test_a_key_whose_request_failed_may_be_retried_and_is_charged_once(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    sim.state.inject(secret, "500", times=1)
    body = {"prompt": "engine start", "duration_seconds": 2}
    resp, _ = await post(api, "/v1/sfx", user, body, key="retry-me")
    assert resp.status == 502
    assert await remaining(db, user.user_id) == 10
    await bank_recovers(api, sim, secret)
    resp, data = await post(api, "/v1/sfx", user, body, key="retry-me")
    assert resp.status == 200, data
    assert await remaining(db, user.user_id) == 9
    statuses = await db.fetch("SELECT status FROM generations ORDER BY created_at")
    assert [r["status"] for r in statuses] == ["failed", "succeeded"]


async def bank_recovers(api, sim, secret):
    """The one key cooled down after its 500; bring it back the way an operator would."""
    from server.keybank import KEYBANK

    bank = api.server.app[KEYBANK]
    [key] = await bank.list_keys("elevenlabs")
    await bank.enable(key.id)


# --- the reuse cache ------------------------------------------------------------------------


async def test_reuse_serves_an_identical_earlier_result_from_the_cache_at_the_cache_price(api, db, add_key, sim):
    _, secret = await add_key()
    first_user = await user_with(api, db, 10)
    other_user = await user_with(api, db, 10)
    body = {"prompt": "Crowd cheering in a stadium", "duration_seconds": 3}
    resp, original = await post(api, "/v1/sfx", first_user, body)
    assert resp.status == 200
    calls = len(sim.calls(secret, "sound-generation"))

    resp, cached = await post(api, "/v1/sfx", other_user, {**body, "prompt": "crowd  cheering in a stadium ", "reuse": True})
    # Normalised the same way except case, which the model may hear differently: not the same request.
    assert len(sim.calls(secret, "sound-generation")) == calls + 1
    resp, cached = await post(api, "/v1/sfx", other_user, {**body, "reuse": True})
    assert resp.status == 200
    assert cached == original
    assert resp.headers["X-Credits-Charged"] == "0"
    assert len(sim.calls(secret, "sound-generation")) == calls + 1
    row = await db.fetchrow("SELECT * FROM generations WHERE id = $1", uuid.UUID(resp.headers["X-Generation-Id"]))
    assert row["cached"] and row["user_id"] == other_user.user_id and row["upstream_key_id"] is None
    # Without reuse, the same request is a new take from the provider.
    resp, _ = await post(api, "/v1/sfx", other_user, body)
    assert resp.headers["X-Credits-Charged"] == "1"
    assert len(sim.calls(secret, "sound-generation")) == calls + 2


async def test_a_new_variation_never_comes_from_the_cache(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    body = {"prompt": "laser blast", "duration_seconds": 1}
    resp, _ = await post(api, "/v1/sfx", user, body)
    assert resp.status == 200
    resp, data = await post(api, "/v1/sfx", user, {**body, "variations": 2, "reuse": True})
    result = await resp.json()
    by_variation = {g["variation"]: g for g in result["generations"]}
    assert by_variation[0]["cached"] is True and by_variation[0]["credits"] == 0
    assert by_variation[1]["cached"] is False and by_variation[1]["credits"] == 1
    assert len(sim.calls(secret, "sound-generation")) == 2


async def test_voice_scripts_are_never_reused_across_accounts(api, db, add_key, sim):
    _, secret = await add_key()
    alice = await user_with(api, db, 10)
    bob = await user_with(api, db, 10)
    body = {"text": "Our quarterly numbers are confidential.", "voice_id": RACHEL}
    await post(api, "/v1/voice", alice, body)
    resp, _ = await post(api, "/v1/voice", bob, {**body, "reuse": True})
    assert resp.headers["X-Credits-Charged"] == "1"
    resp, _ = await post(api, "/v1/voice", alice, {**body, "reuse": True})
    assert resp.headers["X-Credits-Charged"] == "0"
    assert len(sim.calls(secret, "text-to-speech")) == 2


# --- voices ---------------------------------------------------------------------------------


async def test_voices_merge_every_key_and_cloned_voices_go_to_the_key_that_owns_them(api, db, add_key, sim):
    _, plain = await add_key("plain")
    _, owner = await add_key("owner", voices=["Studio Narrator"])
    user = await user_with(api, db, 10)
    resp, _ = await get(api, "/v1/voices", user)
    voices = (await resp.json())["voices"]
    names = [v["name"] for v in voices]
    assert names[0] == "Studio Narrator" and "Rachel" in names
    assert len(names) == len(set(names))  # premade voices of both keys listed once
    narrator = voices[0]
    assert narrator["category"] == "cloned" and set(narrator) == {
        "voice_id", "name", "category", "labels", "preview_url", "description"}

    for n in range(4):
        resp, data = await post(api, "/v1/voice", user, {"text": f"Take {n}.", "voice_id": narrator["voice_id"]})
        assert resp.status == 200, data
    assert len(sim.calls(owner, "text-to-speech")) == 4
    assert sim.calls(plain, "text-to-speech") == []


async def test_the_voice_list_is_cached_and_follows_the_set_of_keys(api, db, add_key, sim, bank):
    first_id, first = await add_key("first", voices=["Alpha"])
    user = await user_with(api, db, 10)
    resp, _ = await get(api, "/v1/voices", user)
    assert "Alpha" in [v["name"] for v in (await resp.json())["voices"]]
    await get(api, "/v1/voices", user)
    assert len(sim.calls(first, "/v1/voices")) == 1  # the second listing came from Redis

    _, second = await add_key("second", voices=["Beta"])
    resp, _ = await get(api, "/v1/voices", user)
    assert {"Alpha", "Beta"} <= {v["name"] for v in (await resp.json())["voices"]}
    await bank.disable(first_id)
    resp, _ = await get(api, "/v1/voices", user)
    names = {v["name"] for v in (await resp.json())["voices"]}
    assert "Beta" in names and "Alpha" not in names
