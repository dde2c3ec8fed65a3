"""The LLM simulator's admin surface, over HTTP as a developer drives it while the app runs:
keys in, faults in, forced answers in, and a log that never shows a whole key."""

from __future__ import annotations

import pytest

from server.simulator.llm import LlmSimulatorState, create_llm_simulator_app

KEY = "sk-simulated-openai-0000000000001234"


@pytest.fixture
async def sim(aiohttp_client):
    return await aiohttp_client(create_llm_simulator_app(LlmSimulatorState()))


async def chat(sim, key=KEY):
    return await sim.post("/openai/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={
        "model": "gpt-4.1-mini", "messages": [{"role": "user", "content": '{"idea": "door"}'}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "sfx_prompts", "schema": {}}},
    })


async def test_keys_faults_and_forced_answers_are_set_over_http(sim):
    assert (await sim.post("/_sim/keys", json={"provider": "openai", "key": KEY})).status == 201
    assert (await sim.post("/_sim/faults", json={"key": KEY, "fault": "busy", "retry_after": 9})).status == 200
    busy = await chat(sim)
    assert busy.status == 429 and busy.headers["retry-after"] == "9"
    assert (await busy.json())["error"]["code"] == "rate_limit_exceeded"
    await sim.post("/_sim/replies", json={"schema_name": "sfx_prompts", "reply": {"prompts": []}})
    ok = await chat(sim)
    body = await ok.json()
    assert ok.status == 200 and body["choices"][0]["message"]["content"] == '{"prompts": []}'
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    log = (await (await sim.get("/_sim/requests")).json())["requests"]
    assert [(r["status"], r["fault"]) for r in log] == [(429, "busy"), (200, None)]
    stats = await (await sim.get("/_sim/stats")).text()
    assert KEY not in stats and KEY not in str(log) and KEY[-4:] in stats


async def test_an_unknown_key_or_fault_is_refused(sim):
    assert (await chat(sim, key="sk-nobody-knows-this-key")).status == 401
    await sim.post("/_sim/keys", json={"provider": "openai", "key": KEY})
    assert (await sim.post("/_sim/faults", json={"key": KEY, "fault": "gremlins"})).status == 400
    assert (await sim.post("/_sim/keys", json={"provider": "mistral", "key": KEY})).status == 400
