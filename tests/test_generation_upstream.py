"""Both ways generation reaches ElevenLabs, against the simulator's network faults: the SDK with
the HTTP client production builds for it (httpx API, aiohttp underneath), and the direct aiohttp
path production uses for the two hot calls. Each failure must reach the key bank as the kind of
trouble it is, because the kind decides what happens to the key."""

from __future__ import annotations

import asyncio

import pytest

from generation_support import sim  # noqa: F401  (fixture)
from server.providers import FailureKind, RetryOnAnotherKey
from server.providers.elevenlabs import DirectUpstream, ElevenLabs, Upstream, create_http_client, create_session
from server.settings import Settings

classify = ElevenLabs(Settings()).classify

KEY = "sk_" + "5" * 48
SFX = {"text": "glass breaks", "duration_seconds": 1.0, "prompt_influence": 0.3, "loop": False,
       "model_id": "eleven_text_to_sound_v2"}


@pytest.fixture(params=["sdk", "direct"])
async def upstream(request, sim):  # noqa: F811
    sim.state.add_key(KEY, character_limit=10**9, max_concurrency=10)
    http = create_http_client(10)
    if request.param == "sdk":
        yield Upstream(http, sim.url)
    else:
        session = create_session(10)
        yield DirectUpstream(http, sim.url, session)
        await session.close()
    await http.aclose()


async def failure_of(upstream: Upstream, *, bound: float = 5.0) -> FailureKind:
    """The kind of failure one call ends in; `bound` plays the generation domain's per-attempt timeout."""
    with pytest.raises(Exception) as caught:
        async with asyncio.timeout(bound):
            await upstream.sound_effect(KEY, **SFX)
    failure = classify(caught.value)
    assert failure is not None, f"{caught.value!r} was not recognised as an upstream failure"
    return failure.kind


async def test_a_healthy_answer_is_a_48_khz_wav_with_the_providers_metadata(upstream):
    audio = await upstream.sound_effect(KEY, **SFX)
    assert audio.data[:4] == b"RIFF" and audio.output_format == "wav_48000"
    assert audio.request_id and audio.character_cost is not None


async def test_a_reset_connection_is_a_connection_error_not_a_timeout(upstream, sim):  # noqa: F811
    sim.state.inject(KEY, "reset", times=1)
    assert await failure_of(upstream) is FailureKind.CONNECTION


async def test_a_body_cut_short_is_retried_on_another_key(upstream, sim):  # noqa: F811
    sim.state.inject(KEY, "truncated", times=1)
    with pytest.raises(Exception) as caught:
        await upstream.sound_effect(KEY, **SFX)
    kind = classify(caught.value).kind
    # Either the transport notices the missing bytes or our WAV check does: both cool the key.
    assert kind in (FailureKind.CONNECTION, FailureKind.SERVER)
    assert kind.cools_down
    assert isinstance(caught.value, RetryOnAnotherKey) or kind is FailureKind.CONNECTION


async def test_a_provider_that_hangs_is_a_timeout(upstream, sim):  # noqa: F811
    sim.state.inject(KEY, "hang", times=1)
    assert await failure_of(upstream, bound=0.5) is FailureKind.TIMEOUT


async def test_an_http_error_answer_keeps_its_status_and_code(upstream, sim):  # noqa: F811
    sim.state.inject(KEY, "429_concurrency", times=1)
    assert await failure_of(upstream) is FailureKind.CONCURRENCY


async def test_one_client_carries_concurrent_calls_over_its_pool(upstream, sim):  # noqa: F811
    results = await asyncio.gather(*(upstream.sound_effect(KEY, **SFX) for _ in range(8)))
    assert len({len(r.data) for r in results}) == 1
    assert sim.peak(KEY) > 1


async def test_speech_with_voice_settings_and_neighbours_is_accepted(upstream, sim):  # noqa: F811
    voice_id = sim.state.premade_voices[0]["voice_id"]
    audio = await upstream.speech(KEY, voice_id, text="Hello there.", model_id="eleven_multilingual_v2",
                                  voice_settings={"stability": 0.5, "similarity_boost": 0.7}, seed=7,
                                  previous_text="Before.", next_text="After.")
    assert audio.data[:4] == b"RIFF" and audio.character_cost == len("Hello there.")


async def test_an_unknown_voice_is_the_users_error_on_both_paths(upstream):
    with pytest.raises(Exception) as caught:
        await upstream.speech(KEY, "no-such-voice", text="Hi", model_id="eleven_multilingual_v2", voice_settings=None,
                              seed=None, previous_text=None, next_text=None)
    assert classify(caught.value).kind is FailureKind.USER


async def test_no_cookie_set_by_one_answer_rides_along_with_the_next_request(aiohttp_server):
    from aiohttp import web

    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("lb", "key-one-session")
        return resp

    app = web.Application()
    app.router.add_get("/v1/anything", handler)
    server = await aiohttp_server(app)
    http = create_http_client(2)
    try:
        for _ in range(2):
            resp = await http.get(str(server.make_url("/v1/anything")))
            assert resp.status_code == 200 and "lb=" in resp.headers["set-cookie"]
    finally:
        await http.aclose()
    assert seen == [None, None]
