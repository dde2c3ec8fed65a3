"""Generated audio kept in an S3 bucket: stored, downloaded in ranges, linked for the panel, removed by
retention and account deletion, and an outage of the bucket answered clearly with nothing charged."""

from __future__ import annotations

import socket
import urllib.request
import uuid

import pytest

from generation_support import (  # noqa: F401 (fixtures, used by name; one of them autouse)
    add_key, api, bank, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import count_thread_hops, get, post, remaining, user_with, wav_info
from helpers import sign_up
from portal.accounts import delete_account
from server.app import create_app
from server.generation import retention
from server.settings import Settings
from server.storage import key_for
from server.storage.s3 import S3Storage
from test_storage_s3 import bucket_objects


@pytest.fixture(autouse=True)
async def books_balance(db):
    """As everywhere (generation_support), except that a deleted account's history rows are gone
    while its ledger stays: its captured holds have no generations left to match."""
    yield
    assert await db.fetch("SELECT * FROM credit_consistency WHERE NOT consistent") == []
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE status = 'held'") == 0
    rows = await db.fetch(
        """SELECT (SELECT coalesce(sum(credits_charged), 0) FROM generations g WHERE g.user_id = a.user_id) AS charged,
                  (SELECT coalesce(sum(captured), 0) FROM credit_holds h
                    WHERE h.user_id = a.user_id AND h.status = 'captured') AS captured
             FROM credit_accounts a JOIN users u ON u.id = a.user_id
            WHERE u.email NOT LIKE 'deleted-%'"""
    )
    assert [tuple(r) for r in rows if r["charged"] != r["captured"]] == []


@pytest.fixture
def gen_env(test_env, sim, s3_env) -> dict[str, str]:
    return {**test_env, **s3_env, "ELEVENLABS_BASE_URL": sim.url, "UPSTREAM_DEADLINE": "5",
            "UPSTREAM_ATTEMPT_TIMEOUT": "1.5"}


@pytest.fixture
def gen_settings(gen_env) -> Settings:
    return Settings.from_env(gen_env)


async def make(api, user, prompt):
    resp, data = await post(api, "/v1/sfx", user, {"prompt": prompt, "duration_seconds": 1})
    assert resp.status == 200, data
    return uuid.UUID(resp.headers["X-Generation-Id"]), data


async def test_audio_is_stored_in_the_bucket_and_downloads_in_ranges(api, db, add_key, service, s3_env):
    await add_key()
    user = await user_with(api, db, 20)
    generation_id, original = await make(api, user, "glass shatter")
    key = await db.fetchval("SELECT storage_key FROM generations WHERE id = $1", generation_id)
    assert isinstance(service.storage.backend, S3Storage)
    assert bucket_objects(s3_env) == [f"sfx/audio/{key[:2]}/{key[2:4]}/{key}"]
    before = await remaining(db, user.user_id)
    url = f"/v1/generations/{generation_id}/audio"

    resp, full = await get(api, url, user)
    assert resp.status == 200 and full == original and wav_info(full)[0] == 48000
    assert resp.headers["Accept-Ranges"] == "bytes" and resp.headers["ETag"] == f'"{key[:64]}"'
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="glass-shatter-')
    assert resp.headers["X-Request-Id"]

    resp, part = await get(api, url, user, {"Range": "bytes=100-1099"})
    assert resp.status == 206 and part == original[100:1100]
    assert resp.headers["Content-Range"] == f"bytes 100-1099/{len(original)}"
    resp, tail = await get(api, url, user, {"Range": "bytes=-10"})
    assert resp.status == 206 and tail == original[-10:]
    resp, body = await get(api, url, user, {"Range": f"bytes={len(original)}-"})
    assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{len(original)}"
    assert (await resp.json())["error"]["code"] == "range_not_satisfiable"
    # If-Range with the current ETag resumes; with a stale one the whole file comes back.
    resp, part = await get(api, url, user, {"Range": "bytes=10-19", "If-Range": f'"{key[:64]}"'})
    assert resp.status == 206 and part == original[10:20]
    resp, whole = await get(api, url, user, {"Range": "bytes=10-19", "If-Range": '"something-else"'})
    assert resp.status == 200 and whole == original
    resp, _ = await get(api, url, user, {"If-None-Match": f'"{key[:64]}"'})
    assert resp.status == 304

    # A record whose blob vanished (deleted by hand, a lost bucket) is a JSON 404, not a 500.
    async def gone_download():
        resp, _ = await get(api, url, user)
        return resp.status, (await resp.json())["error"]["code"]

    resp = await api.head(url, headers=user.headers)
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(original)
    assert await resp.read() == b""
    assert await remaining(db, user.user_id) == before  # downloads never cost anything
    await service.storage.backend.delete(key)
    assert await gone_download() == (404, "audio_gone")


async def test_the_panel_can_fetch_audio_from_a_presigned_link_only_for_its_own_generation(api, db, add_key):
    await add_key()
    user = await user_with(api, db, 20)
    stranger = await sign_up(api)
    generation_id, original = await make(api, user, "bicycle bell")
    resp, _ = await get(api, f"/v1/generations/{generation_id}/audio-link", user)
    link = await resp.json()
    assert resp.status == 200 and link["direct"] is True and link["expires_in"] == 300
    assert resp.headers["Cache-Control"] == "no-store"
    with urllib.request.urlopen(link["url"], timeout=5) as bucket_resp:
        assert bucket_resp.read() == original
    # The same checks as the download: another account's id does not exist for you.
    resp, _ = await get(api, f"/v1/generations/{generation_id}/audio-link", stranger)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "generation_not_found"
    assert (await api.get(f"/v1/generations/{generation_id}/audio-link")).status == 401


async def test_a_long_clip_is_processed_and_hashed_in_one_trip_to_the_thread_pool_then_uploaded(
    api, db, add_key, service, s3_env, monkeypatch
):
    await add_key()
    user = await user_with(api, db, 20)
    hops = count_thread_hops(monkeypatch)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "distant thunder", "duration_seconds": 2, "format": "mp3"})
    assert resp.status == 200
    assert hops == ["GenerationService._process_and_store.<locals>.off_the_loop"]
    key = await db.fetchval("SELECT storage_key FROM generations")
    assert key == key_for(data, "mp3")
    assert bucket_objects(s3_env) == [f"sfx/audio/{key[:2]}/{key[2:4]}/{key}"]


async def test_retention_and_account_deletion_remove_the_objects(api, db, add_key, service, s3_env):
    await add_key()
    free_user = await sign_up(api)  # free keeps 7 days
    leaving = await user_with(api, db, 20)
    old, _ = await make(api, free_user, "old rain")
    await make(api, leaving, "farewell chime")
    await make(api, leaving, "second farewell chime")
    assert len(bucket_objects(s3_env)) == 3
    await db.execute("UPDATE generations SET created_at = now() - interval '8 days' WHERE id = $1", old)

    report = await retention.sweep(service)
    assert (report.expired, report.files_deleted) == (1, 1)
    assert len(bucket_objects(s3_env)) == 2

    removed = await delete_account(db, None, service, leaving.user_id)
    assert removed == 2
    assert bucket_objects(s3_env) == []


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_a_bucket_outage_during_a_generation_releases_the_hold_and_answers_503(
    aiohttp_client, gen_settings, db, sim, leaks,
):
    # The bucket is unreachable when the finished audio is to be stored.
    outage = await aiohttp_client(create_app(gen_settings.replace(s3_endpoint=dead_endpoint(), storage_timeout=1.0)))
    outage.leaks = leaks
    secret = leaks.key()
    sim.state.add_key(secret, character_limit=1_000_000, max_concurrency=5)
    from server.keybank import KEYBANK

    await outage.server.app[KEYBANK].add_key(provider="elevenlabs", label="k", secret=secret, max_concurrency=5)
    user = await user_with(outage, db, 20)

    resp, data = await post(outage, "/v1/sfx", user, {"prompt": "thunder", "duration_seconds": 1})
    assert resp.status == 503, data
    error = (await resp.json())["error"]
    assert error["code"] == "storage_unavailable" and "nothing was charged" in error["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    assert len(sim.calls(secret, "sound-generation")) == 1  # the provider did produce it
    assert await remaining(db, user.user_id) == 20
    row = await db.fetchrow("SELECT status, failure_reason, credits_charged FROM generations")
    assert (row["status"], row["credits_charged"]) == ("failed", 0)
    assert row["failure_reason"].startswith("storage_unavailable")
    assert await db.fetchval("SELECT status FROM credit_holds") == "released"
    # History and the key bank are untouched by it: the key did nothing wrong.
    resp, _ = await get(outage, "/v1/generations", user)
    assert (await resp.json())["items"] == []
    view = (await outage.server.app[KEYBANK].list_keys())[0]
    assert view.cooldown_until is None and view.consecutive_failures == 0


async def test_deletions_during_a_bucket_outage_are_carried_out_when_it_is_back(api, db, add_key, service, s3_env):
    await add_key()
    user = await sign_up(api)  # free: keeps audio 7 days
    await make(api, user, "creaking floor")
    owl, owl_audio = await make(api, user, "owl hoot")
    await db.execute("UPDATE generations SET created_at = now() - interval '8 days'")
    storage = service.storage
    working = storage.backend
    storage.backend = S3Storage("down", endpoint=dead_endpoint(), access_key_id="k", secret_access_key="s", timeout=0.5)
    try:
        report = await retention.sweep(service)  # the rows are hidden, the bucket cannot be reached
    finally:
        await storage.backend.aclose()
        storage.backend = working
    assert (report.expired, report.files_deleted) == (2, 0)
    assert len(bucket_objects(s3_env)) == 2
    assert await db.fetchval("SELECT count(*) FROM storage_deletions") == 2

    # Meanwhile something refers to the owl's audio again (content addressing: an identical take,
    # a cached reuse); here its row is simply made visible again.
    await db.execute("UPDATE generations SET deleted_at = NULL, created_at = now() WHERE id = $1", owl)
    kept = await db.fetchval("SELECT storage_key FROM generations WHERE id = $1", owl)
    assert await storage.retry_deferred() == 1
    assert bucket_objects(s3_env) == [f"sfx/audio/{kept[:2]}/{kept[2:4]}/{kept}"]
    assert await db.fetchval("SELECT count(*) FROM storage_deletions") == 0
    resp, body = await get(api, f"/v1/generations/{owl}/audio", user)
    assert resp.status == 200 and body == owl_audio


async def test_with_audio_on_a_local_disk_the_link_is_the_download_itself(aiohttp_client, gen_settings, db, sim, leaks):
    local = await aiohttp_client(create_app(gen_settings.replace(storage_url="")))
    local.leaks = leaks
    secret = leaks.key()
    sim.state.add_key(secret, character_limit=1_000_000, max_concurrency=5)
    from server.keybank import KEYBANK

    await local.server.app[KEYBANK].add_key(provider="elevenlabs", label="k", secret=secret, max_concurrency=5)
    user = await user_with(local, db, 20)
    generation_id, original = await make(local, user, "kettle whistle")
    resp, _ = await get(local, f"/v1/generations/{generation_id}/audio-link", user)
    link = await resp.json()
    assert link == {"url": f"/v1/generations/{generation_id}/audio", "direct": False, "expires_in": None}
    resp, body = await get(local, link["url"], user)
    assert resp.status == 200 and body == original
