"""The ElevenLabs simulator, driven through the official SDK exactly as production code calls ElevenLabs."""

from __future__ import annotations

import asyncio
import io
import time
import wave

import httpx
import pytest
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from pydub import AudioSegment

from server.audio import CorruptAudio, process_for_editing
from server.simulator import CACHE, SimulatorState, start_simulator

KEY = "sk_sim_primary_0000000000000000000a1b2"
OTHER_KEY = "sk_sim_secondary_000000000000000000c3d4"
NO_RETRY = {"max_retries": 0}
RACHEL = "21m00Tcm4TlvDq8ikWAM"


@pytest.fixture
def state() -> SimulatorState:
    state = SimulatorState()
    state.add_key(KEY, character_limit=10_000, max_concurrency=4, voices=["Studio Narrator"])
    state.add_key(OTHER_KEY, voices=["Other Voice"])
    return state


@pytest.fixture
async def sim(state):
    async with await start_simulator(state) as running:
        yield running


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def eleven(sim, http) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=KEY, base_url=sim.url, httpx_client=http)


async def sfx(client: AsyncElevenLabs, **kwargs) -> bytes:
    kwargs.setdefault("text", "heavy wooden door slams")
    return b"".join([chunk async for chunk in client.text_to_sound_effects.convert(request_options=NO_RETRY, **kwargs)])


async def tts(client: AsyncElevenLabs, text: str, voice_id: str = RACHEL, **kwargs) -> bytes:
    return b"".join([chunk async for chunk in client.text_to_speech.convert(
        voice_id, text=text, request_options=NO_RETRY, **kwargs)])


async def api_error(coro) -> ApiError:
    with pytest.raises(ApiError) as info:
        await coro
    return info.value


# --- real audio ---------------------------------------------------------------------------

async def test_sound_effect_in_pcm_48000_is_raw_16_bit_audio_of_the_requested_length(eleven):
    data = await sfx(eleven, duration_seconds=2.5, output_format="pcm_48000")
    assert len(data) == 2 * 48_000 * 2.5
    segment = AudioSegment(data=data, sample_width=2, frame_rate=48_000, channels=1)
    assert segment.max > 1000  # an actual sound, not silence


async def test_sound_effect_in_wav_48000_is_a_riff_file_of_the_requested_length(eleven):
    data = await sfx(eleven, duration_seconds=1.5, output_format="wav_48000")
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (48_000, 2, 1)
        assert w.getnframes() == 72_000


async def test_sound_effect_in_mp3_decodes_to_the_requested_length(eleven):
    data = await sfx(eleven, duration_seconds=2.0, output_format="mp3_44100_128")
    segment = AudioSegment.from_file(io.BytesIO(data), format="mp3")
    assert segment.frame_rate == 44_100
    assert abs(segment.duration_seconds - 2.0) < 0.1


async def test_default_output_format_is_mp3_like_the_real_api(eleven):
    data = await sfx(eleven, duration_seconds=1.0)
    assert data[:3] == b"ID3" or data[0] == 0xFF


async def test_every_request_is_a_new_take_like_the_real_service(eleven):
    """Two requests for one prompt are two takes: different audio of the same length."""
    first = await sfx(eleven, text="glass shatters on tile", duration_seconds=1.0, output_format="pcm_48000")
    again = await sfx(eleven, text="Glass  shatters on tile", duration_seconds=1.0, output_format="pcm_48000")
    other = await sfx(eleven, text="distant thunder rolls", duration_seconds=1.0, output_format="pcm_48000")
    assert len(first) == len(again) == len(other) == 2 * 48_000
    assert len({first, again, other}) == 3


async def test_with_same_takes_one_prompt_always_gives_the_same_audio(state, http):
    async with await start_simulator(state, fresh_takes=False) as running:
        client = AsyncElevenLabs(api_key=KEY, base_url=running.url, httpx_client=http)
        first = await sfx(client, text="glass shatters on tile", duration_seconds=1.0, output_format="pcm_48000")
        again = await sfx(client, text="Glass  shatters on tile", duration_seconds=1.0, output_format="pcm_48000")
        other = await sfx(client, text="distant thunder rolls", duration_seconds=1.0, output_format="pcm_48000")
    assert first == again
    assert first != other


async def test_automatic_duration_picks_a_stable_length_from_the_prompt_and_charges_the_flat_price(eleven, state):
    async with eleven.text_to_sound_effects.with_raw_response.convert(
            text="a cat meows", output_format="pcm_48000", request_options=NO_RETRY) as response:
        data = b"".join([chunk async for chunk in response.data])
        assert response.headers["character-cost"] == "100"
    seconds = len(data) / 2 / 48_000
    assert 1.0 <= seconds <= 6.0
    assert len(await sfx(eleven, text="a cat meows", output_format="pcm_48000")) == len(data)
    assert state.key(KEY).character_count == 200


async def test_generation_answers_carry_the_real_apis_headers(eleven):
    async with eleven.text_to_sound_effects.with_raw_response.convert(
            text="footsteps on gravel", duration_seconds=3, output_format="wav_48000", request_options=NO_RETRY) as response:
        _ = [chunk async for chunk in response.data]
        headers = response.headers
    assert headers["character-cost"] == "60"  # 20 credits per second
    assert len(headers["request-id"]) >= 16
    assert headers["current-concurrent-requests"] == "1"
    assert headers["maximum-concurrent-requests"] == "4"
    assert headers["content-type"] == "audio/wav"


async def test_speech_is_real_audio_whose_length_grows_with_the_text(eleven, state):
    short = await tts(eleven, "Hello there.", output_format="wav_48000")
    long = await tts(eleven, "Hello there. This is a much longer line of narration for the trailer, "
                             "read slowly and clearly.", output_format="wav_48000")
    with wave.open(io.BytesIO(short)) as w:
        assert w.getframerate() == 48_000
        short_seconds = w.getnframes() / 48_000
    with wave.open(io.BytesIO(long)) as w:
        long_seconds = w.getnframes() / 48_000
    assert 0.3 < short_seconds < long_seconds
    assert long_seconds > 3 * short_seconds
    assert state.key(KEY).character_count == len("Hello there.") + len(
        "Hello there. This is a much longer line of narration for the trailer, read slowly and clearly.")


async def test_speech_stream_endpoint_streams_pcm_and_flash_models_cost_half(eleven, sim, state):
    text = "Streaming speech in small chunks."
    chunks = [chunk async for chunk in eleven.text_to_speech.stream(
        RACHEL, text=text, model_id="eleven_flash_v2_5", output_format="pcm_24000", request_options=NO_RETRY)]
    data = b"".join(chunks)
    assert len(data) % 2 == 0 and len(data) / 2 / 24_000 > 0.5
    assert state.key(KEY).character_count == (len(text) + 1) // 2
    assert state.requests[-1]["path"] == f"/v1/text-to-speech/{RACHEL}/stream"


async def test_speech_accepts_stitching_context_and_voice_settings(eleven, state):
    data = await tts(eleven, "Second sentence.", output_format="pcm_48000", previous_text="First sentence.",
                     next_text="Third sentence.", seed=42,
                     voice_settings={"stability": 0.5, "similarity_boost": 0.75, "style": 0.0, "speed": 1.1,
                                     "use_speaker_boost": True})
    assert len(data) > 48_000
    body = state.requests[-1]["body"]
    assert body["previous_text"] == "First sentence." and body["next_text"] == "Third sentence."


# --- request errors -----------------------------------------------------------------------

async def test_text_over_the_models_limit_is_400_max_character_limit_exceeded(eleven, state):
    error = await api_error(tts(eleven, "x" * 5_001, model_id="eleven_v3"))
    assert error.status_code == 400
    assert error.body["detail"]["status"] == "max_character_limit_exceeded"
    assert state.key(KEY).character_count == 0


async def test_unknown_voice_is_voice_not_found(eleven):
    error = await api_error(tts(eleven, "Hello", voice_id="doesNotExist000000000"))
    assert error.status_code == 404
    assert error.body["detail"]["status"] == "voice_not_found"


async def test_a_cloned_voice_works_only_with_the_key_that_owns_it(eleven, sim, http, state):
    own = state.key(KEY).voices[0]["voice_id"]
    foreign = state.key(OTHER_KEY).voices[0]["voice_id"]
    assert await tts(eleven, "Mine.", voice_id=own, output_format="pcm_16000")
    error = await api_error(tts(eleven, "Not mine.", voice_id=foreign))
    assert error.body["detail"]["status"] == "voice_not_found"
    other = AsyncElevenLabs(api_key=OTHER_KEY, base_url=sim.url, httpx_client=http)
    assert await tts(other, "Mine too.", voice_id=foreign, output_format="pcm_16000")


async def test_out_of_range_parameters_are_422_in_fastapis_shape(eleven):
    error = await api_error(sfx(eleven, duration_seconds=45))
    assert error.status_code == 422
    assert error.body["detail"][0]["loc"] == ["body", "duration_seconds"]
    error = await api_error(sfx(eleven, output_format="flac_96000"))
    assert error.status_code == 422
    assert error.body["detail"][0]["loc"] == ["query", "output_format"]


async def test_unknown_or_missing_key_is_401_invalid_api_key(sim, http):
    for key in ("sk_not_a_key_of_this_sim", ""):
        client = AsyncElevenLabs(api_key=key, base_url=sim.url, httpx_client=http)
        error = await api_error(sfx(client, duration_seconds=1))
        assert error.status_code == 401
        assert error.body == {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}


# --- quota and concurrency ----------------------------------------------------------------

async def test_quota_runs_out_with_401_quota_exceeded_and_the_subscription_shows_usage(eleven, state):
    state.add_key(KEY, character_limit=100)
    await tts(eleven, "a" * 60, output_format="pcm_16000")
    error = await api_error(tts(eleven, "b" * 60, output_format="pcm_16000"))
    assert error.status_code == 401
    assert error.body["detail"]["status"] == "quota_exceeded"
    assert "40 credits remaining" in error.body["detail"]["message"]
    sub = await eleven.user.subscription.get(request_options=NO_RETRY)
    assert (sub.character_count, sub.character_limit) == (60, 100)
    assert sub.next_character_count_reset_unix > time.time() + 29 * 24 * 3600


async def test_quota_resets_when_the_reset_time_has_passed(eleven, state):
    state.add_key(KEY, character_limit=50, character_count=50, reset_unix=int(time.time()) + 3600)
    assert (await api_error(tts(eleven, "hello"))).body["detail"]["status"] == "quota_exceeded"
    state.set_usage(KEY, reset_unix=int(time.time()) - 1)
    assert await tts(eleven, "hello", output_format="pcm_16000")
    sub = await eleven.user.subscription.get(request_options=NO_RETRY)
    assert sub.character_count == 5
    assert sub.next_character_count_reset_unix > time.time()


async def test_requests_over_the_keys_concurrency_cap_get_429_too_many_concurrent_requests(eleven, state):
    state.add_key(KEY, max_concurrency=2)
    state.inject(KEY, "slow", delay=0.4)
    results = await asyncio.gather(*(sfx(eleven, duration_seconds=1, output_format="pcm_16000") for _ in range(3)),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, ApiError)]
    assert len(errors) == 1
    assert errors[0].status_code == 429
    assert errors[0].body["detail"]["status"] == "too_many_concurrent_requests"
    key = state.key(KEY)
    assert (key.peak_in_flight, key.rejected_concurrency, key.in_flight) == (2, 1, 0)


async def test_with_same_takes_concurrent_identical_requests_are_synthesised_once(state, http):
    async with await start_simulator(state, fresh_takes=False) as running:
        client = AsyncElevenLabs(api_key=KEY, base_url=running.url, httpx_client=http)
        results = await asyncio.gather(*(sfx(client, text="one shared synthesis", duration_seconds=2,
                                             output_format="wav_48000") for _ in range(4)))
        cache = running.runner.app[CACHE].stats
    assert len(set(results)) == 1
    assert cache.misses == 1 and cache.hits == 3


# --- injected faults ----------------------------------------------------------------------

@pytest.mark.parametrize("fault, status, detail", [
    ("429_concurrency", 429, "too_many_concurrent_requests"),
    ("429_busy", 429, "system_busy"),
    ("401_invalid", 401, "invalid_api_key"),
    ("401_quota", 401, "quota_exceeded"),
    ("401_permissions", 401, "missing_permissions"),
    ("500", 500, "internal_server_error"),
    ("503", 503, "service_unavailable"),
])
async def test_error_faults_surface_in_the_sdk_as_api_errors_shaped_like_the_real_api(eleven, state, fault, status, detail):
    state.inject(KEY, fault, times=1)
    error = await api_error(sfx(eleven, duration_seconds=1, output_format="pcm_16000"))
    assert error.status_code == status
    assert error.body["detail"]["status"] == detail
    assert set(error.body["detail"]) == {"status", "message"}
    assert KEY not in str(error)
    # `times=1`: the next call is healthy again, and the failed one was not charged.
    assert await sfx(eleven, duration_seconds=1, output_format="pcm_16000")
    assert state.key(KEY).character_count == 20


async def test_busy_and_unavailable_faults_can_send_retry_after(eleven, state):
    state.inject(KEY, "429_busy", times=1, retry_after=3)
    state.inject(KEY, "503", times=1, retry_after=1.5)
    assert (await api_error(sfx(eleven, duration_seconds=1))).headers["retry-after"] == "3"
    assert (await api_error(sfx(eleven, duration_seconds=1))).headers["retry-after"] == "1.5"


async def test_faults_queue_in_order_and_permanent_faults_last_until_cleared(eleven, state):
    state.inject(KEY, "500", times=2)
    state.inject(KEY, "429_busy")
    statuses = [(await api_error(sfx(eleven, duration_seconds=1))).status_code for _ in range(4)]
    assert statuses == [500, 500, 429, 429]
    state.clear_faults(KEY)
    assert await sfx(eleven, duration_seconds=1, output_format="pcm_16000")


async def test_connection_reset_surfaces_as_an_httpx_protocol_error(eleven, state):
    state.inject(KEY, "reset", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await sfx(eleven, duration_seconds=1)


async def test_truncated_body_surfaces_as_an_httpx_error_while_reading(eleven, state):
    state.inject(KEY, "truncated", times=1)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        await sfx(eleven, duration_seconds=2, output_format="wav_48000")


@pytest.mark.parametrize("output_format", ["pcm_48000", "wav_48000", "mp3_44100_128"])
async def test_empty_and_corrupt_bodies_arrive_as_200_but_are_not_audio(eleven, state, output_format):
    state.inject(KEY, "empty", times=1)
    state.inject(KEY, "corrupt", times=1)
    assert await sfx(eleven, duration_seconds=1, output_format=output_format) == b""
    corrupt = await sfx(eleven, duration_seconds=1, output_format=output_format)
    assert corrupt
    with pytest.raises(CorruptAudio):
        process_for_editing(corrupt, kind="sfx", loop=False, source_format=output_format)


async def test_slow_fault_answers_correctly_after_the_delay(eleven, state):
    state.inject(KEY, "slow", times=1, delay=0.3)
    started = time.monotonic()
    data = await sfx(eleven, duration_seconds=1, output_format="pcm_48000")
    assert time.monotonic() - started >= 0.3
    assert len(data) == 96_000


async def test_hang_never_answers_and_frees_its_concurrency_slot_when_the_client_gives_up(eleven, state):
    state.inject(KEY, "hang", times=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await sfx(eleven, duration_seconds=1)
    key = state.key(KEY)
    for _ in range(100):
        if key.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert key.in_flight == 0
    assert key.character_count == 0


async def test_hung_requests_do_not_hold_up_shutdown(state, http):
    running = await start_simulator(state)
    client = AsyncElevenLabs(api_key=KEY, base_url=running.url, httpx_client=http)
    state.inject(KEY, "hang")
    pending = asyncio.ensure_future(sfx(client, duration_seconds=1))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await running.aclose()
    assert time.monotonic() - started < 1.5
    with pytest.raises(httpx.HTTPError):
        await pending


async def test_generation_faults_do_not_touch_account_endpoints_unless_scoped_to_all(eleven, state):
    state.inject(KEY, "500")
    assert (await eleven.user.subscription.get(request_options=NO_RETRY)).tier == "creator"
    state.clear_faults()
    state.inject(KEY, "401_invalid")  # an invalid key is invalid everywhere
    error = await api_error(eleven.user.subscription.get(request_options=NO_RETRY))
    assert error.body["detail"]["status"] == "invalid_api_key"
    state.clear_faults()
    state.inject(KEY, "503", scope="all", times=1)
    assert (await api_error(eleven.voices.get_all(request_options=NO_RETRY))).status_code == 503


def test_unknown_faults_and_keys_are_refused_without_echoing_the_key(state):
    with pytest.raises(ValueError, match="unknown fault"):
        state.inject(KEY, "explode")
    with pytest.raises(ValueError) as info:
        state.inject("sk_never_added_key_9999", "500")
    assert "sk_never_added_key_9999" not in str(info.value)


# --- voices, account, models --------------------------------------------------------------

async def test_voice_listing_shows_premade_voices_and_only_the_keys_own_clones(eleven, state):
    voices = (await eleven.voices.get_all(request_options=NO_RETRY)).voices
    names = {v.name for v in voices}
    assert {"Rachel", "George", "Studio Narrator"} <= names
    assert "Other Voice" not in names
    clone = next(v for v in voices if v.name == "Studio Narrator")
    assert clone.category == "cloned"
    assert clone.preview_url.endswith(f"/_sim/previews/{clone.voice_id}.mp3")
    rachel = next(v for v in voices if v.voice_id == RACHEL)
    assert rachel.category == "premade" and rachel.labels["gender"] == "female"


async def test_voice_previews_are_playable_mp3(eleven, http):
    voices = (await eleven.voices.get_all(request_options=NO_RETRY)).voices
    response = await http.get(voices[0].preview_url)
    assert response.status_code == 200
    assert AudioSegment.from_file(io.BytesIO(response.content), format="mp3").duration_seconds > 1


async def test_v2_voice_search_pages_through_every_voice(eleven, state):
    seen, token = [], None
    while True:
        page = await eleven.voices.search(page_size=2, next_page_token=token, request_options=NO_RETRY)
        seen += [v.voice_id for v in page.voices]
        assert page.total_count == len(state.premade_voices) + 1
        if not page.has_more:
            assert page.next_page_token is None
            break
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == len(state.premade_voices) + 1
    found = await eleven.voices.search(search="narrator", request_options=NO_RETRY)
    assert [v.name for v in found.voices] == ["Studio Narrator"]


async def test_single_voice_lookup_and_its_not_found_answer(eleven):
    voice = await eleven.voices.get(RACHEL, request_options=NO_RETRY)
    assert voice.name == "Rachel"
    error = await api_error(eleven.voices.get("missingVoice00000000", request_options=NO_RETRY))
    assert (error.status_code, error.body["detail"]["status"]) == (404, "voice_not_found")


async def test_user_and_models_parse_in_the_sdk(eleven, state):
    user = await eleven.user.get(request_options=NO_RETRY)
    assert user.subscription.character_limit == 10_000
    assert KEY not in user.json()
    models = await eleven.models.list(request_options=NO_RETRY)
    limits = {m.model_id: m.maximum_text_length_per_request for m in models}
    assert limits["eleven_multilingual_v2"] == 10_000 and limits["eleven_flash_v2_5"] == 40_000


# --- admin API and request log ------------------------------------------------------------

async def test_admin_http_api_adds_keys_injects_faults_and_reports_stats_without_secrets(sim, http):
    new_key = "sk_added_over_http_000000000000e5f6"
    response = await http.post(f"{sim.url}/_sim/keys", json={"api_key": new_key, "max_concurrency": 3,
                                                             "character_limit": 500, "voices": ["Promo Voice"]})
    assert response.status_code == 201
    client = AsyncElevenLabs(api_key=new_key, base_url=sim.url, httpx_client=http)
    assert (await client.user.subscription.get(request_options=NO_RETRY)).character_limit == 500

    response = await http.post(f"{sim.url}/_sim/faults", json={"api_key": new_key, "fault": "503", "times": 1})
    assert response.status_code == 201
    assert (await api_error(sfx(client, duration_seconds=1))).status_code == 503
    await http.post(f"{sim.url}/_sim/faults", json={"api_key": new_key, "fault": "500"})
    response = await http.request("DELETE", f"{sim.url}/_sim/faults", json={"api_key": new_key})
    assert response.status_code == 204
    assert await sfx(client, duration_seconds=1, output_format="pcm_16000")

    response = await http.post(f"{sim.url}/_sim/usage", json={"api_key": new_key, "character_count": 500})
    assert response.status_code == 204
    assert (await api_error(sfx(client, duration_seconds=1))).body["detail"]["status"] == "quota_exceeded"

    stats = await http.get(f"{sim.url}/_sim/stats")
    entry = next(k for k in stats.json()["keys"] if k["last4"] == "e5f6")
    assert entry["max_concurrency"] == 3 and entry["character_count"] == 500 and entry["requests"] == 4
    log = await http.get(f"{sim.url}/_sim/requests?limit=50")
    for text in (stats.text, log.text):
        assert new_key not in text and KEY not in text


async def test_admin_http_api_rejects_bad_input(sim, http):
    assert (await http.post(f"{sim.url}/_sim/faults", json={"api_key": KEY, "fault": "boom"})).status_code == 400
    assert (await http.post(f"{sim.url}/_sim/keys", json={"api_key": "short"})).status_code == 400
    assert (await http.post(f"{sim.url}/_sim/keys", json={"api_key": "sk_long_enough_123", "x": 1})).status_code == 400


async def test_request_log_records_calls_with_only_the_keys_last_four_characters(eleven, state):
    await sfx(eleven, text="rain on a tin roof", duration_seconds=1, output_format="pcm_16000")
    state.inject(KEY, "429_busy", times=1)
    await api_error(sfx(eleven, duration_seconds=1))
    ok, busy = list(state.requests)[-2:]
    assert ok["path"] == "/v1/sound-generation" and ok["status"] == 200 and ok["key"] == KEY[-4:]
    assert ok["query"] == {"output_format": "pcm_16000"}
    assert ok["body"]["text"] == "rain on a tin roof" and ok["body"]["duration_seconds"] == 1
    assert busy["status"] == 429 and busy["fault"] == "429_busy"
    assert KEY not in repr(list(state.requests)) and KEY not in repr(state.key(KEY))


async def test_unknown_routes_answer_json_not_html(sim, http):
    response = await http.get(f"{sim.url}/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# --- command line -------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_python_m_server_simulator_serves_the_keys_given_on_the_command_line(test_env, http):
    import os
    import signal
    import sys

    port = _free_port()
    cli_key, second_key = "sk_cli_key_0000000000000000000aa11", "sk_cli_key_0000000000000000000bb22"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "simulator", "--port", str(port), "--key", cli_key, "--key", second_key,
        "--max-concurrency", "7", "--voice", "House Narrator",
        env={**os.environ, **test_env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if (await http.get(f"{url}/_sim/stats")).status_code == 200:
                    break
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
        for key in (cli_key, second_key):
            client = AsyncElevenLabs(api_key=key, base_url=url, httpx_client=http)
            assert (await client.user.subscription.get(request_options=NO_RETRY)).character_limit == 100_000
            assert "House Narrator" in {v.name for v in (await client.voices.get_all(request_options=NO_RETRY)).voices}
        stats = (await http.get(f"{url}/_sim/stats")).json()
        assert [k["max_concurrency"] for k in stats["keys"]] == [7, 7]
        stranger = AsyncElevenLabs(api_key="sk_unknown_000000000000", base_url=url, httpx_client=http)
        assert (await api_error(stranger.user.subscription.get(request_options=NO_RETRY))).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert cli_key.encode() not in out + err


# --- what the proxy will do with it -------------------------------------------------------

@pytest.mark.parametrize("output_format", ["pcm_48000", "wav_48000", "mp3_44100_128"])
async def test_simulated_sound_effects_post_process_into_48_khz_wavs_of_the_requested_length(eleven, output_format):
    data = await sfx(eleven, text="sword clash in a stone hall", duration_seconds=4, output_format=output_format)
    result = process_for_editing(data, kind="sfx", loop=False, headroom_db=-1.0, source_format=output_format,
                                 length_seconds=4)
    assert result.sample_rate == 48_000
    assert result.duration_seconds == 4.0  # the length asked for, to the sample, whatever the codec added


async def test_simulated_speech_post_processes_into_a_48_khz_wav(eleven):
    data = await tts(eleven, "Coming up next: the long road home.", output_format="pcm_48000")
    result = process_for_editing(data, kind="voice", loop=False, headroom_db=-1.0, source_format="pcm_48000")
    assert result.duration_seconds == len(data) / 2 / 48_000


async def test_without_espeak_speech_falls_back_to_a_tone_per_word_still_proportional_to_the_text(eleven, monkeypatch):
    from server.simulator import synth

    monkeypatch.setattr(synth, "espeak_available", lambda: False)
    short = await tts(eleven, "Two words.", output_format="pcm_16000")
    long = await tts(eleven, "Ten words make a longer line than two words ever could.", output_format="pcm_16000")
    assert len(short) % 2 == 0 and len(long) > 3 * len(short) > 0
