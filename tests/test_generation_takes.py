"""Audio as editors expect it: a named length to the sample, loops that loop, and variations that
are really different takes, labelled as such in history, through the API and the simulator."""

import hashlib
import io
import json
import wave
from datetime import timedelta

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import get, post, user_with
from server.credits import service as credits
from test_portal_support import Portal


def frames_of(data: bytes) -> int:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 48_000
        return w.getnframes()


async def test_a_named_duration_is_delivered_to_the_sample(api, db, add_key):
    """5 s came back as 4.92 s when the simulator's take ended quietly: the trim is for automatic lengths."""
    await add_key()
    user = await user_with(api, db, 20)
    for seconds in (5, 4, 2.5):
        resp, data = await post(api, "/v1/sfx", user, {"prompt": "sword clash in a stone hall", "duration_seconds": seconds})
        assert resp.status == 200, data
        assert frames_of(data) == seconds * 48_000
        assert resp.headers["X-Audio-Duration"] == f"{seconds:.3f}"


async def test_a_loop_asked_for_as_mp3_comes_as_a_sample_exact_wav(api, db, add_key):
    """An MP3 carries the encoder's priming and padding (6.024 s for 6 s): loops are delivered as WAV."""
    await add_key()
    user = await user_with(api, db, 20)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "rain on a tin roof", "duration_seconds": 6, "loop": True,
                                                   "format": "mp3"})
    assert resp.status == 200, data
    assert resp.headers["Content-Type"] == "audio/wav"
    assert resp.headers["Content-Disposition"].endswith('.wav"')
    assert frames_of(data) == 6 * 48_000
    resp, listing = await post(api, "/v1/sfx", user, {"prompt": "rain on a tin roof", "duration_seconds": 6, "loop": True,
                                                      "format": "mp3"}, accept="application/json")
    assert json.loads(listing)["generations"][0]["format"] == "wav"
    # A one-shot still comes in the format asked for.
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "rain on a tin roof", "duration_seconds": 2, "format": "mp3"})
    assert resp.headers["Content-Type"] == "audio/mpeg"


async def test_variations_are_different_takes_labelled_in_history_and_the_cache_serves_each_take(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 50)
    body = {"prompt": "a cat meows twice", "duration_seconds": 2, "variations": 3}
    resp, data = await post(api, "/v1/sfx", user, body)
    assert resp.status == 200, data
    made = json.loads(data)["generations"]
    assert [(g["variation"], g["takes"], g["take_label"]) for g in made] == [
        (0, 3, "take 1 of 3"), (1, 3, "take 2 of 3"), (2, 3, "take 3 of 3")]
    audio = {}
    for g in made:
        resp, wav = await get(api, g["download_url"], user)
        assert resp.status == 200
        audio[g["variation"]] = hashlib.sha256(wav).hexdigest()
    assert len(set(audio.values())) == 3, "three variations must be three different takes"

    resp, page = await get(api, "/v1/generations", user)
    labels = sorted(item["take_label"] for item in json.loads(page)["items"])
    assert labels == ["take 1 of 3", "take 2 of 3", "take 3 of 3"]

    # reuse: each variation is served from the cache as the take it was, not one take three times.
    resp, data = await post(api, "/v1/sfx", user, {**body, "reuse": True})
    again = json.loads(data)["generations"]
    assert all(g["cached"] for g in again)
    for g in again:
        resp, wav = await get(api, g["download_url"], user)
        assert hashlib.sha256(wav).hexdigest() == audio[g["variation"]]


async def test_the_dashboard_labels_each_take(api, db, add_key):
    await add_key()
    portal = Portal(api)
    try:
        account = await portal.sign_up()
        now = await db.fetchval("SELECT now()")
        await credits.set_plan(db, account.id, "pro")
        await credits.grant_period(db, account.id, now - timedelta(days=1), now + timedelta(days=29), 50, key="t")
        token = (await (await api.post("/v1/auth/login", json={
            "email": account.email, "password": account.password, "device_name": "Suite"})).json())["access_token"]
        resp = await api.post("/v1/sfx", json={"prompt": "thunder", "duration_seconds": 1, "variations": 2},
                              headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "dash-1"})
        assert resp.status == 200, await resp.text()
        api.leaks.values.append(token)
        page = await portal.page("/dashboard")
        assert "take 1 of 2" in page and "take 2 of 2" in page
    finally:
        await portal.client.close()
