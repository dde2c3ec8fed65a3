"""Background upkeep of generations: retention by plan, rows left behind by a dead worker, the
periodic voice-list refresh, and how the API documents its audio answers."""

import asyncio
import uuid

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import get, post, user_with
from helpers import sign_up
from server.generation import retention
from server.generation.voices import VoiceCatalog


async def generate(api, user, prompt, **extra):
    resp, data = await post(api, "/v1/sfx", user, {"prompt": prompt, "duration_seconds": 1, **extra})
    assert resp.status == 200, data
    return uuid.UUID(resp.headers["X-Generation-Id"])


async def age(db, generation_id, days):
    await db.execute("UPDATE generations SET created_at = now() - make_interval(days => $2) WHERE id = $1",
                     generation_id, days)


async def test_audio_older_than_the_plans_retention_is_deleted(api, db, add_key, service):
    await add_key()
    free_user = await sign_up(api)  # free keeps 7 days
    pro_user = await user_with(api, db, 20, plan="pro")  # pro keeps 90 days
    old_free = await generate(api, free_user, "old free sound")
    new_free = await generate(api, free_user, "new free sound")
    old_pro = await generate(api, pro_user, "old pro sound")
    await age(db, old_free, 8)
    await age(db, old_pro, 30)
    paths = {
        gid: service.storage.path(await db.fetchval("SELECT storage_key FROM generations WHERE id = $1", gid))
        for gid in (old_free, new_free, old_pro)
    }

    report = await retention.sweep(service)
    assert (report.expired, report.files_deleted) == (1, 1)
    assert not paths[old_free].exists()
    assert paths[new_free].is_file() and paths[old_pro].is_file()
    resp, _ = await get(api, f"/v1/generations/{old_free}", free_user)
    assert resp.status == 404
    resp, _ = await get(api, f"/v1/generations/{old_pro}/audio", pro_user)
    assert resp.status == 200
    # Nothing more to do on a second pass.
    assert (await retention.sweep(service)).expired == 0


async def test_a_file_another_account_still_uses_outlives_one_owners_retention(api, db, add_key, service):
    await add_key()
    free_user = await sign_up(api)
    pro_user = await user_with(api, db, 20, plan="pro")
    expired = await generate(api, free_user, "shared thunder")
    kept = await generate(api, pro_user, "shared thunder", reuse=True)  # served from the cache: the same file
    await age(db, expired, 10)
    key = await db.fetchval("SELECT storage_key FROM generations WHERE id = $1", kept)
    report = await retention.sweep(service)
    assert (report.expired, report.files_deleted) == (1, 0)
    assert service.storage.path(key).is_file()


async def test_rows_of_a_worker_that_died_are_closed_as_failed_and_uncharged(api, db, add_key, service):
    await add_key()
    user = await user_with(api, db, 20)
    generation_id = await generate(api, user, "finished")
    # A pending row and an in-progress request as a crashed worker would leave them, long ago.
    request_id = await db.fetchval(
        """INSERT INTO generation_requests (user_id, idempotency_key, request_hash, kind, updated_at)
           VALUES ($1, 'crashed', 'h', 'sfx', now() - interval '2 hours') RETURNING id""", user.user_id)
    stale = await db.fetchval(
        """INSERT INTO generations (user_id, request_id, kind, params, request_hash, created_at)
           VALUES ($1, $2, 'sfx', '{}', 'h', now() - interval '2 hours') RETURNING id""", user.user_id, request_id)
    report = await retention.sweep(service)
    assert report.abandoned == 1
    row = await db.fetchrow("SELECT status, failure_reason, credits_charged FROM generations WHERE id = $1", stale)
    assert dict(row) == {"status": "failed", "failure_reason": "abandoned", "credits_charged": 0}
    assert await db.fetchval("SELECT status FROM generation_requests WHERE id = $1", request_id) == "failed"
    assert await db.fetchval("SELECT status FROM generations WHERE id = $1", generation_id) == "succeeded"


async def test_the_periodic_voice_refresh_runs_on_one_worker_at_a_time(api, add_key, sim, service, gen_settings, bank):
    _, secret = await add_key(voices=["Narrator"])
    # Two workers' catalogs over the same Redis, refreshing at the same moment.
    other = VoiceCatalog(gen_settings, service.redis, bank, service.upstream)
    results = await asyncio.gather(service.voices.refresh_if_leader(), other.refresh_if_leader())
    assert sorted(results) == [False, True]
    assert len(sim.calls(secret, "/v1/voices")) == 1
    assert "Narrator" in [v["name"] for v in (await other.get()).voices]


async def test_the_api_document_describes_audio_answers(api):
    resp = await api.get("/v1/openapi.json")
    doc = await resp.json()
    sfx = doc["paths"]["/v1/sfx"]["post"]["responses"]["200"]["content"]
    assert {"audio/wav", "audio/mpeg", "application/json"} <= set(sfx)
    audio = doc["paths"]["/v1/generations/{id}/audio"]["get"]["responses"]
    assert "audio/wav" in audio["200"]["content"] and "206" in audio
    assert doc["paths"]["/v1/generations/{id}"]["delete"]["responses"]["204"]
    assert {"get"} == set(doc["paths"]["/v1/voices"])
