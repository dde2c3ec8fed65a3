"""The assist API as an editor meets it: features, fallbacks between providers, token metering,
plan flags, input limits, idempotent retries, history, and cues kept inside the sequence.

Providers are reached through their official SDKs at the LLM simulator; every scenario ends with
the books balancing and no key in any log line or response (see assist_support).
"""

from __future__ import annotations

import math

import pytest

from assist_support import (  # noqa: F401  (fixtures)
    add_llm_key,
    api,
    ask,
    assist_env,
    assist_settings,
    bank,
    books_balance,
    leaks,
    llm,
    no_secret_in_logs_or_responses,
    user_with,
)
from generation_support import remaining
from server.app import create_app
from server.assist.models import SfxPromptsReply, SpotReply, VoiceScriptReply
from server.keybank import KEYBANK
from server.settings import Settings
from server.simulator.llm_replies import reply_for

MARKERS = [
    {"time": 1.5, "name": "Door slam", "comments": "heavy oak, echoing hall"},
    {"time": 12.0, "name": "Rain starts", "comments": "light rain on a window", "duration": 20},
    {"time": 58.0, "name": "Glass", "comments": "a wine glass tips over and breaks"},
]


def credits_for(usage: dict) -> int:
    return math.ceil((usage["input_tokens"] + usage["output_tokens"]) / 2000)


# --- what each feature answers ------------------------------------------------------------------------


async def test_spot_proposes_cues_at_the_markers_and_charges_the_tokens_used(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 100)
    resp, data = await ask(api, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": MARKERS})
    assert resp.status == 200, data
    assert [c["time"] for c in data["cues"]] == [1.5, 12.0, 58.0]
    assert data["cues"][1]["loop"] is True and data["cues"][1]["duration_seconds"] == 20
    # The glass at 58 s asked for 2 s, which fits; nothing was moved.
    assert not any(c["clamped"] for c in data["cues"]) and data["dropped"] == 0
    [usage] = [r["usage"] for r in llm.answered()]
    assert data["usage"]["credits_charged"] == credits_for(usage)
    assert await remaining(db, user.user_id) == 100 - credits_for(usage)


async def test_voice_script_is_tidied_and_its_spoken_length_estimated_for_the_voice_speed(api, db, add_llm_key):
    await add_llm_key("anthropic")
    user = await user_with(api, db, 100)
    script = "welcome  back.   today we   look at three ways to cut dialogue, quickly and cleanly"
    resp, data = await ask(api, "/v1/assist/voice-script", user, {"script": script, "target_seconds": 5})
    assert resp.status == 200, data
    assert data["script"] == "Welcome back. Today we look at three ways to cut dialogue, quickly and cleanly."
    assert data["words"] == 14
    # 14 words at 150 a minute, two sentence ends, one comma.
    assert data["estimated_seconds"] == round(14 / 150 * 60 + 2 * 0.3 + 0.15, 1)
    assert data["fits"] is False and data["target_seconds"] == 5
    slower, slow = await ask(api, "/v1/assist/voice-script", user,
                             {"script": script, "speed": 0.7, "voice_id": "21m00Tcm4TlvDq8ikWAM"})
    assert slower.status == 200 and slow["estimated_seconds"] > data["estimated_seconds"]
    assert slow["voice_id"] == "21m00Tcm4TlvDq8ikWAM"


# --- cues are placed by the server, not by the model ------------------------------------------------


async def test_cues_outside_the_sequence_are_clamped_into_it_and_duplicates_dropped(api, db, add_llm_key, llm):
    await add_llm_key("gemini")
    llm.state.replies["spot_cues"] = {"cues": [
        {"time": -4.0, "prompt": "whoosh before the start", "duration_seconds": 3, "loop": False, "note": "pre-lap"},
        {"time": 59.8, "prompt": "glass shatters on stone", "duration_seconds": 6, "loop": False, "note": "late"},
        {"time": 400.0, "prompt": "thunder far beyond the end", "duration_seconds": 2, "loop": False, "note": "after"},
        {"time": 10.0, "prompt": "rain bed", "duration_seconds": 90, "loop": True, "note": "too long"},
        {"time": 10.0, "prompt": "Rain bed", "duration_seconds": 20, "loop": True, "note": "duplicate"},
        {"time": 30.0, "prompt": "tiny click", "duration_seconds": 0.01, "loop": False, "note": "too short"},
    ]}
    user = await user_with(api, db, 100)
    resp, data = await ask(api, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": MARKERS})
    assert resp.status == 200, data
    placed = [(c["time"], c["duration_seconds"], c["clamped"]) for c in data["cues"]]
    assert placed == [
        (0.0, 3.0, True),     # moved to the start
        (10.0, 30.0, True),   # 90 s is beyond what the sound model makes
        (30.0, 0.5, True),    # raised to the shortest sound
        (59.5, 0.5, True),    # moved so a shortest sound still ends by 60 s
        (59.5, 0.5, True),    # 400 s: the end of the sequence
    ]
    assert all(0 <= c["time"] and c["time"] + c["duration_seconds"] <= 60 for c in data["cues"])
    assert data["dropped"] == 1


async def test_a_marker_after_the_sequence_end_is_refused_before_any_call(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 100)
    markers = [*MARKERS, {"time": 61, "name": "too late"}]
    resp, data = await ask(api, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": markers})
    assert resp.status == 422 and data["error"]["code"] == "validation_failed"
    assert "after the sequence" in data["error"]["details"]["fields"][0]["message"]
    assert llm.calls() == [] and await remaining(db, user.user_id) == 100


# --- routes: configuration, in order, falling through ----------------------------------------------


async def test_providers_are_tried_in_the_configured_order_and_a_failing_one_falls_through(api, db, add_llm_key, llm):
    _, openai_key = await add_llm_key("openai")
    await add_llm_key("anthropic")
    await add_llm_key("gemini")
    llm.state.inject(openai_key, "500", times=None)
    user = await user_with(api, db, 100)
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert resp.status == 200, data
    assert data["usage"]["provider"] == "anthropic" and data["usage"]["model"] == "claude-haiku-4-5"
    assert [c["provider"] for c in llm.calls()] == ["openai", "anthropic"]
    # Only the answer that was used is charged.
    [usage] = [r["usage"] for r in llm.answered()]
    assert data["usage"]["credits_charged"] == credits_for(usage)


async def test_a_busy_pool_lines_the_request_up_as_its_own_account(api, db, bank, add_llm_key, llm, monkeypatch):
    # The fair wait caps each account's waiting requests; an assist call must count against its
    # own account's share, not a shared anonymous one that every editor's ideas would fight over.
    await add_llm_key("openai")
    user = await user_with(api, db, 100)
    lined_up_as = []
    run = bank.run

    async def recording_run(*args, **kwargs):
        lined_up_as.append(kwargs.get("queue_as"))
        return await run(*args, **kwargs)

    monkeypatch.setattr(bank, "run", recording_run)
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert resp.status == 200, data
    assert lined_up_as == [str(user.user_id)]


async def test_a_provider_without_an_active_key_is_skipped(api, db, bank, add_llm_key, llm):
    openai_id, _ = await add_llm_key("openai")
    await bank.disable(openai_id)
    await add_llm_key("gemini")
    user = await user_with(api, db, 100)
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert resp.status == 200 and data["usage"]["provider"] == "gemini"
    assert [c["provider"] for c in llm.calls()] == ["gemini"]


async def test_each_feature_follows_its_own_route(aiohttp_client, assist_env, db, leaks, llm):
    settings = Settings.from_env({**assist_env, "ASSIST_ROUTES":
                                  "default=openai:gpt-4.1-mini>gemini:gemini-2.5-flash;spot=gemini:gemini-2.5-pro>openai:gpt-4.1"})
    client = await aiohttp_client(create_app(settings))
    client.leaks = leaks
    for provider in ("openai", "gemini"):
        secret = f"{provider}-route-" + "7" * 20
        leaks.values.append(secret)
        llm.state.add_key(provider, secret)
        await client.server.app[KEYBANK].add_key(provider=provider, label=provider, secret=secret, max_concurrency=2)
    user = await user_with(client, db, 100)
    _, spot = await ask(client, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": MARKERS})
    _, idea = await ask(client, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert (spot["usage"]["provider"], spot["usage"]["model"]) == ("gemini", "gemini-2.5-pro")
    assert (idea["usage"]["provider"], idea["usage"]["model"]) == ("openai", "gpt-4.1-mini")


# --- failures are never charged -------------------------------------------------------------------------


async def test_when_every_provider_answers_off_its_schema_nothing_is_charged(api, db, add_llm_key, llm):
    for provider, fault in (("openai", "off_schema"), ("anthropic", "malformed"), ("gemini", "corrupt")):
        _, secret = await add_llm_key(provider)
        llm.state.inject(secret, fault, times=None)
    user = await user_with(api, db, 100)
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert resp.status == 502 and data["error"]["code"] == "upstream_unavailable"
    assert [r["provider"] for r in data["error"]["details"]["routes"]] == ["openai", "anthropic", "gemini"]
    assert await remaining(db, user.user_id) == 100
    row = await db.fetchrow("SELECT status, credits_charged, failure_reason FROM assist_requests")
    assert row["status"] == "failed" and row["credits_charged"] == 0
    assert row["failure_reason"].startswith("upstream_unavailable")
    assert await db.fetchval("SELECT count(*) FROM credit_ledger WHERE kind = 'capture'") == 0


async def test_with_every_llm_key_disabled_the_answer_is_no_active_key_without_retry_advice(api, db, bank, add_llm_key, llm):
    for provider in ("openai", "anthropic"):
        key_id, _ = await add_llm_key(provider)
        await bank.disable(key_id)
    user = await user_with(api, db, 100)
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert (resp.status, data["error"]["code"]) == (503, "no_active_key")
    assert "Retry-After" not in resp.headers and "retry_after" not in data["error"]["details"]
    assert llm.calls() == [] and await remaining(db, user.user_id) == 100


async def test_without_enough_credits_the_request_is_refused_before_any_call(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 1)
    # Thirty markers with long comments: the token ceiling costs more than one credit.
    markers = [{"time": i, "name": f"hit {i}", "comments": "metal on concrete, " * 40} for i in range(30)]
    resp, data = await ask(api, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": markers})
    assert resp.status == 402 and data["error"]["code"] == "insufficient_credits"
    assert llm.calls() == [] and await remaining(db, user.user_id) == 1


async def test_the_hold_is_the_token_ceilings_price_and_the_capture_the_tokens_reported(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 100)
    markers = [{"time": i, "name": f"hit {i}", "comments": "metal on concrete, " * 20} for i in range(40)]
    resp, data = await ask(api, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": markers})
    assert resp.status == 200, data
    [usage] = [r["usage"] for r in llm.answered()]
    charged = credits_for(usage)
    assert charged >= 2 and data["usage"]["credits_charged"] == charged
    hold = await db.fetchrow("SELECT amount, captured FROM credit_holds")
    assert hold["amount"] > charged and hold["captured"] == charged
    kinds = [(r["kind"], r["credits"]) for r in await db.fetch(
        "SELECT kind, credits FROM credit_ledger WHERE kind IN ('reserve', 'capture') ORDER BY id")]
    assert kinds == [("reserve", hold["amount"]), ("capture", charged)]


# --- idempotency and history ----------------------------------------------------------------------------


async def test_a_retried_request_is_answered_again_without_a_second_call_or_charge(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 100)
    first, a = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"}, key="click-1")
    again, b = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"}, key="click-1")
    assert first.status == again.status == 200
    assert a["id"] == b["id"] and a["prompts"] == b["prompts"] and b["usage"]["replayed"] is True
    assert len(llm.calls(path_part="chat")) == 1
    assert await remaining(db, user.user_id) == 100 - a["usage"]["credits_charged"]
    other, c = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "window"}, key="click-1")
    assert other.status == 409 and c["error"]["code"] == "idempotency_conflict"


async def test_history_lists_each_request_with_its_provider_tokens_and_credits(api, db, add_llm_key, llm):
    _, secret = await add_llm_key("openai")
    user = await user_with(api, db, 100)
    _, ok = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    llm.state.inject(secret, "500", times=None)
    await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "window"})
    resp = await api.get("/v1/assist/history", headers=user.headers)
    body = await resp.json()
    api.leaks.responses.append(str(body).encode())
    assert resp.status == 200
    failed, succeeded = body["items"]
    assert (failed["status"], failed["credits_charged"]) == ("failed", 0)
    assert (succeeded["status"], succeeded["provider"], succeeded["feature"]) == ("succeeded", "openai", "sfx_prompt")
    assert succeeded["input_tokens"] == ok["usage"]["input_tokens"]
    assert body["credits_this_month"] == ok["usage"]["credits_charged"]
    assert body["tokens_this_month"] == ok["usage"]["input_tokens"] + ok["usage"]["output_tokens"]


# --- plans and limits -------------------------------------------------------------------------------------


async def test_an_unconfirmed_email_address_gets_no_answers(api, db, add_llm_key, llm):
    from helpers import DEFAULT_PASSWORD, sign_in, unique_email

    await add_llm_key("openai")
    email = unique_email()
    assert (await api.post("/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})).status == 202
    user = await sign_in(api, email)
    api.leaks.values += [user.access_token, user.refresh_token]
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert (resp.status, data["error"]["code"]) == (403, "email_not_verified")
    assert llm.calls() == []


async def test_plans_gate_the_features(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 20, plan="free")
    resp, data = await ask(api, "/v1/assist/spot", user, {"sequence_duration": 60, "markers": MARKERS})
    assert resp.status == 403 and data["error"]["code"] == "plan_feature_unavailable"
    assert data["error"]["details"]["feature"] == "spot"
    resp, _ = await ask(api, "/v1/assist/sfx-prompt", user, {"idea": "door"})
    assert resp.status == 200
    pricing = await (await api.get("/v1/pricing")).json()
    offered = {p["code"]: p["features"]["assist"] for p in pricing["plans"]}
    assert offered["free"] == ["sfx_prompt"] and set(offered["pro"]) == {"sfx_prompt", "spot", "voice_script"}


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/assist/sfx-prompt", {"idea": ""}, "idea"),
    ("/v1/assist/sfx-prompt", {"idea": "x" * 201}, "idea"),
    ("/v1/assist/sfx-prompt", {"idea": "door", "context": "y" * 1001}, "context"),
    ("/v1/assist/sfx-prompt", {"idea": "door", "temperature": 2}, "temperature"),
    ("/v1/assist/spot", {"sequence_duration": 60, "markers": []}, "markers"),
    ("/v1/assist/spot", {"sequence_duration": 60, "markers": [{"time": 1}] * 201}, "markers"),
    ("/v1/assist/spot", {"sequence_duration": 0, "markers": MARKERS}, "sequence_duration"),
    ("/v1/assist/voice-script", {"script": "z" * 5001}, "script"),
    ("/v1/assist/voice-script", {"script": "hello", "speed": 2}, "speed"),
])
async def test_inputs_beyond_the_limits_are_422_naming_the_field(path, body, field, api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 100)
    resp, data = await ask(api, path, user, body)
    assert resp.status == 422 and data["error"]["code"] == "validation_failed"
    assert [f["field"].split(".")[0] for f in data["error"]["details"]["fields"]] == [field]
    assert llm.calls() == []


async def test_a_script_longer_than_the_plan_allows_is_a_plan_limit(api, db, add_llm_key, llm):
    await add_llm_key("openai")
    user = await user_with(api, db, 100, plan="basic")
    resp, data = await ask(api, "/v1/assist/voice-script", user, {"script": "word " * 600})
    assert resp.status == 422
    [problem] = data["error"]["details"]["fields"]
    assert (problem["field"], problem["type"], problem["limit"]) == ("script", "plan_limit", 2500)


# --- the simulator's canned answers are what the API accepts ----------------------------------------------


def test_the_simulators_canned_replies_validate_against_the_apis_models():
    sfx = reply_for("sfx_prompts", 'Request (JSON): {"idea": "door", "context": "a barn"}')
    spot = reply_for("spot_cues", '{"sequence_duration": 60, "markers": [{"time": 3, "name": "hit", "duration": 40}]}')
    voice = reply_for("voice_script", '{"script": "hello   there.  general kenobi"}')
    assert len(SfxPromptsReply.model_validate(sfx).prompts) == 3
    assert SpotReply.model_validate(spot).cues[0].duration_seconds == 30
    assert VoiceScriptReply.model_validate(voice).script == "Hello there. General kenobi."


async def test_a_client_that_disconnects_while_the_model_thinks_is_charged_nothing(aiohttp_client, assist_env, db, leaks, llm):
    import asyncio

    import aiohttp

    settings = Settings.from_env({**assist_env, "UPSTREAM_ATTEMPT_TIMEOUT": "20", "ASSIST_DEADLINE": "30"})
    client = await aiohttp_client(create_app(settings))
    client.leaks = leaks
    secret = "openai-gone-" + "5" * 20
    leaks.values.append(secret)
    llm.state.add_key("openai", secret)
    await client.server.app[KEYBANK].add_key(provider="openai", label="slow", secret=secret, max_concurrency=2)
    llm.state.inject(secret, "timeout")
    user = await user_with(client, db, 100)
    with pytest.raises(asyncio.TimeoutError):
        await client.post("/v1/assist/sfx-prompt", json={"idea": "door"}, headers=user.headers,
                          timeout=aiohttp.ClientTimeout(total=0.5))
    deadline = asyncio.get_running_loop().time() + 10
    while await db.fetchval("SELECT status FROM assist_requests") == "pending":
        assert asyncio.get_running_loop().time() < deadline, "the request kept running after its client left"
        await asyncio.sleep(0.05)
    row = await db.fetchrow("SELECT status, credits_charged, failure_reason FROM assist_requests")
    # Cancelled by the server or noticed by the service's own watch, depending on the server's setting.
    assert (row["status"], row["credits_charged"]) == ("cancelled", 0)
    assert row["failure_reason"] in ("cancelled", "client_closed_request")
    assert await remaining(db, user.user_id) == 100


async def test_a_voice_nobody_can_speak_with_is_refused_before_any_call(aiohttp_client, assist_env, db, leaks, llm, aiohttp_server):
    """The estimate is for a chosen voice: one the voice list does not know is a 422, as for /v1/voice."""
    from server.simulator import SimulatorState, create_simulator_app

    voices = SimulatorState()
    eleven = await aiohttp_server(create_simulator_app(voices))
    settings = Settings.from_env({**assist_env, "ELEVENLABS_BASE_URL": str(eleven.make_url("")).rstrip("/")})
    client = await aiohttp_client(create_app(settings))
    client.leaks = leaks
    bank = client.server.app[KEYBANK]
    for provider, secret in (("elevenlabs", "sk_" + "e1" * 24), ("openai", "openai-voice-" + "3" * 20)):
        leaks.values.append(secret)
        if provider == "elevenlabs":
            voices.add_key(secret)
        else:
            llm.state.add_key(provider, secret)
        await bank.add_key(provider=provider, label=provider, secret=secret, max_concurrency=2)
    user = await user_with(client, db, 100)
    resp, data = await ask(client, "/v1/assist/voice-script", user, {"script": "Hello there.", "voice_id": "no-such-voice"})
    assert resp.status == 422 and data["error"]["details"]["fields"][0]["type"] == "voice_not_found"
    assert llm.calls() == []
    known = voices.premade_voices[0]["voice_id"]
    resp, data = await ask(client, "/v1/assist/voice-script", user, {"script": "Hello there.", "voice_id": known})
    assert resp.status == 200 and data["voice_id"] == known
