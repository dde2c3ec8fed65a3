"""History, downloads (with Range), deletion and privacy of generations."""

import uuid

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import get, post, remaining, user_with, wav_info
from helpers import sign_up


async def make(api, user, prompt, **extra):
    resp, data = await post(api, "/v1/sfx", user, {"prompt": prompt, "duration_seconds": 1, **extra})
    assert resp.status == 200, data
    return resp.headers["X-Generation-Id"], data


async def test_history_lists_newest_first_with_cursor_pages_and_a_kind_filter(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 20)
    ids = [(await make(api, user, f"footstep number {n}"))[0] for n in range(5)]
    resp, _ = await post(api, "/v1/voice", user, {"text": "Hello there.", "voice_id": "21m00Tcm4TlvDq8ikWAM"})
    voice_id = resp.headers["X-Generation-Id"]

    resp, data = await get(api, "/v1/generations?limit=4", user)
    page = await resp.json()
    assert [i["id"] for i in page["items"]] == [voice_id, *reversed(ids[2:])]
    assert page["next_cursor"]
    resp, _ = await get(api, f"/v1/generations?limit=4&cursor={page['next_cursor']}", user)
    page2 = await resp.json()
    assert [i["id"] for i in page2["items"]] == list(reversed(ids[:2]))
    assert page2["next_cursor"] is None

    resp, _ = await get(api, "/v1/generations?kind=voice", user)
    voices = (await resp.json())["items"]
    assert [i["id"] for i in voices] == [voice_id]
    item = voices[0]
    assert item["text"] == "Hello there." and "prompt" not in item
    assert item["download_url"] == f"/v1/generations/{voice_id}/audio"
    assert item["credits"] == 1 and item["format"] == "wav" and item["filename"].startswith("hello-there-")

    resp, _ = await get(api, "/v1/generations?cursor=not-a-cursor", user)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "validation_failed"


async def test_failed_generations_are_not_in_the_history(api, db, add_key, sim):
    _, secret = await add_key()
    user = await user_with(api, db, 20)
    sim.state.inject(secret, "500", times=1)
    resp, _ = await post(api, "/v1/sfx", user, {"prompt": "boom", "duration_seconds": 1})
    assert resp.status == 502
    resp, _ = await get(api, "/v1/generations", user)
    assert (await resp.json())["items"] == []


async def test_one_generation_and_its_audio_with_byte_ranges(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 20)
    generation_id, original = await make(api, user, "camera shutter click")
    before = await remaining(db, user.user_id)

    resp, _ = await get(api, f"/v1/generations/{generation_id}", user)
    item = await resp.json()
    assert item["id"] == generation_id and item["prompt"] == "camera shutter click" and item["kind"] == "sfx"
    assert abs(item["duration_seconds"] - wav_info(original)[3]) < 1e-6

    resp, full = await get(api, f"/v1/generations/{generation_id}/audio", user)
    assert resp.status == 200 and full == original
    assert resp.headers["Content-Type"] == "audio/wav"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="camera-shutter-click-')

    resp, part = await get(api, f"/v1/generations/{generation_id}/audio", user, {"Range": "bytes=100-1099"})
    assert resp.status == 206
    assert part == original[100:1100]
    assert resp.headers["Content-Range"] == f"bytes 100-1099/{len(original)}"
    resp, tail = await get(api, f"/v1/generations/{generation_id}/audio", user, {"Range": "bytes=-10"})
    assert resp.status == 206 and tail == original[-10:]
    resp, _ = await get(api, f"/v1/generations/{generation_id}/audio", user, {"Range": f"bytes={len(original) + 5}-"})
    assert resp.status == 416
    # Downloads never cost anything.
    assert await remaining(db, user.user_id) == before


async def test_deleting_removes_the_generation_and_its_file(api, db, add_key, service):
    await add_key()
    user = await user_with(api, db, 20)
    generation_id, _ = await make(api, user, "door creak")
    storage_key = await db.fetchval("SELECT storage_key FROM generations WHERE id = $1", uuid.UUID(generation_id))
    assert service.storage.path(storage_key).is_file()

    resp = await api.delete(f"/v1/generations/{generation_id}", headers=user.headers)
    assert resp.status == 204
    assert not service.storage.path(storage_key).exists()
    for path in (f"/v1/generations/{generation_id}", f"/v1/generations/{generation_id}/audio"):
        resp, _ = await get(api, path, user)
        assert resp.status == 404
    resp = await api.delete(f"/v1/generations/{generation_id}", headers=user.headers)
    assert resp.status == 404
    resp, _ = await get(api, "/v1/generations", user)
    assert (await resp.json())["items"] == []


async def test_a_file_shared_by_two_generations_stays_until_the_last_is_deleted(api, db, add_key, service):
    await add_key()
    user = await user_with(api, db, 20)
    first, _ = await make(api, user, "same prompt")
    second, _ = await make(api, user, "same prompt", reuse=True)  # served from the cache: same file
    keys = await db.fetch("SELECT storage_key FROM generations WHERE status = 'succeeded'")
    assert len({r["storage_key"] for r in keys}) == 1
    path = service.storage.path(keys[0]["storage_key"])
    assert (await api.delete(f"/v1/generations/{first}", headers=user.headers)).status == 204
    assert path.is_file()
    resp, data = await get(api, f"/v1/generations/{second}/audio", user)
    assert resp.status == 200 and wav_info(data)[0] == 48000
    assert (await api.delete(f"/v1/generations/{second}", headers=user.headers)).status == 204
    assert not path.exists()


async def test_other_users_generations_do_not_exist_for_you(api, db, add_key):
    await add_key()
    owner = await user_with(api, db, 20)
    stranger = await sign_up(api)
    generation_id, _ = await make(api, owner, "secret sound")
    for path in (f"/v1/generations/{generation_id}", f"/v1/generations/{generation_id}/audio"):
        resp, data = await get(api, path, stranger)
        assert resp.status == 404, data
        assert (await resp.json())["error"]["code"] == "generation_not_found"
    resp = await api.delete(f"/v1/generations/{generation_id}", headers=stranger.headers)
    assert resp.status == 404
    resp, _ = await get(api, "/v1/generations", stranger)
    assert (await resp.json())["items"] == []
    # Still there for its owner.
    resp, _ = await get(api, f"/v1/generations/{generation_id}/audio", owner)
    assert resp.status == 200


async def test_ids_that_are_not_uuids_are_simply_not_found(api, db):
    user = await sign_up(api)
    for path in ("/v1/generations/abc", "/v1/generations/abc/audio", "/v1/generations/%2E%2E%2Fsecrets.json/audio"):
        resp, _ = await get(api, path, user)
        assert resp.status == 404
        assert resp.headers["Content-Type"].startswith("application/json")


async def test_history_needs_a_signed_in_user(api):
    for path in ("/v1/generations", f"/v1/generations/{uuid.uuid4()}", f"/v1/generations/{uuid.uuid4()}/audio", "/v1/voices"):
        resp = await api.get(path)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await api.post("/v1/sfx", json={"prompt": "x"})
    assert resp.status == 401
