"""The panel's generation API end to end: HTTP in, the official SDK out to the ElevenLabs simulator,
real post-processing, storage, credits and history."""

import re
import uuid

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import post, remaining, user_with, wav_info


async def test_a_sound_effect_comes_back_as_a_48k_wav_of_the_asked_length_and_is_charged(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "Heavy wooden door slams shut", "duration_seconds": 4, "loop": True})
    assert resp.status == 200, data
    assert resp.headers["Content-Type"] == "audio/wav"
    rate, bits, channels, seconds = wav_info(data)
    assert (rate, bits) == (48000, 16)
    assert abs(seconds - 4.0) < 0.02
    assert re.fullmatch(r'attachment; filename="heavy-wooden-door-slams-shut-[0-9a-f]{6}\.wav"',
                        resp.headers["Content-Disposition"])
    generation_id = uuid.UUID(resp.headers["X-Generation-Id"])
    assert resp.headers["X-Credits-Charged"] == "1"
    assert resp.headers["X-Credits-Remaining"] == "9"
    assert float(resp.headers["X-Audio-Duration"]) == round(seconds, 3)
    assert await remaining(db, user.user_id) == 9
    row = await db.fetchrow("SELECT * FROM generations WHERE id = $1", generation_id)
    assert row["status"] == "succeeded" and row["kind"] == "sfx" and row["credits_charged"] == 1
    assert row["upstream_cost"] == 80  # the simulator's character-cost for 4 s
    assert row["upstream_request_id"] and row["latency_ms"] is not None
    # The request the provider saw: 48 kHz WAV, our parameters, through the SDK.
    call = sim.calls(secret, "sound-generation")[-1]
    assert call["query"]["output_format"] == "wav_48000"
    assert call["body"]["duration_seconds"] == 4 and call["body"]["loop"] is True


async def test_24_bit_and_mp3_outputs(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 10)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "glass shatters", "duration_seconds": 2, "bit_depth": 24})
    assert resp.status == 200, data
    assert wav_info(data)[:2] == (48000, 24)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "glass shatters", "duration_seconds": 2, "format": "mp3"})
    assert resp.status == 200, data
    assert resp.headers["Content-Type"] == "audio/mpeg"
    assert resp.headers["Content-Disposition"].endswith('.mp3"')


async def test_an_automatic_duration_reserves_the_maximum_and_charges_the_real_length(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 10)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "short whoosh"})
    assert resp.status == 200, data
    seconds = wav_info(data)[3]
    assert seconds <= 6.0  # the simulator picks 1 to 6 s
    assert resp.headers["X-Credits-Charged"] == "1"  # not the 3 credits reserved for 30 s
    assert await remaining(db, user.user_id) == 9


async def test_a_voice_over_comes_back_as_one_48k_wav(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    resp, data = await post(api, "/v1/voice", user, {"text": "Previously, on the show.", "voice_id": "21m00Tcm4TlvDq8ikWAM"})
    assert resp.status == 200, data
    rate, _, channels, seconds = wav_info(data)
    assert rate == 48000 and channels == 1 and 0.5 < seconds < 10
    assert resp.headers["X-Credits-Charged"] == "1"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="previously-on-the-show-')
    call = sim.calls(secret, "text-to-speech")[-1]
    assert call["query"]["output_format"] == "wav_48000"


async def test_a_long_script_is_split_at_sentences_and_stitched_into_one_file(api, db, add_key, sim, service):
    _, secret = await add_key()
    user = await user_with(api, db, 10)
    script = " ".join(f"This is sentence number {n} of the script." for n in range(1, 7))
    service.settings = service.settings.replace(voice_chunk_chars=100)
    resp, data = await post(api, "/v1/voice", user, {"text": script, "voice_id": "21m00Tcm4TlvDq8ikWAM"})
    assert resp.status == 200, data
    calls = sim.calls(secret, "text-to-speech")
    assert len(calls) == 3  # six sentences of 40 characters, at most 100 per call
    sent = [c["body"]["text"] for c in calls]
    assert " ".join(sent) == script
    assert all(len(t) <= 100 and t.endswith(".") for t in sent)
    # Each call is told its neighbours, so the provider keeps the intonation across the joins.
    assert "previous_text" not in calls[0]["body"] and calls[0]["body"]["next_text"] == sent[1]
    assert calls[1]["body"]["previous_text"] == sent[0] and calls[1]["body"]["next_text"] == sent[2]
    assert calls[2]["body"]["previous_text"] == sent[1] and "next_text" not in calls[2]["body"]
    assert resp.headers["X-Credits-Charged"] == "1"  # priced by the whole script (245 characters), once
    # One file, as long as its three parts together.
    seconds = wav_info(data)[3]
    parts = []
    for text in sent:
        _, part = await post(api, "/v1/voice", user, {"text": text, "voice_id": "21m00Tcm4TlvDq8ikWAM"})
        parts.append(wav_info(part)[3])
    assert abs(seconds - sum(parts)) < 0.05
