"""Holds left behind by a crashed process expire and are released by the sweep."""

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from server.appkeys import METRICS
from server.app import create_app
from server.credits import service
from server.credits.models import HoldClosed
from server.credits.sweep import sweep_interval, sweep_once
from server.settings import Settings


async def account_with(db, credits: int) -> uuid.UUID:
    user_id = await db.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", f"{uuid.uuid4().hex}@example.com"
    )
    now = await db.fetchval("SELECT now()")
    await service.set_plan(db, user_id, "basic")
    await service.grant_period(db, user_id, now - timedelta(days=1), now + timedelta(days=29), credits,
                               key=f"test-grant:{user_id}")
    return user_id


async def crash_after_reserving(db, user_id, amount: int, key: str):
    """A reserve whose process died before capture or release: its TTL has run out."""
    hold = await service.reserve(db, user_id, amount, key)
    await db.execute("UPDATE credit_holds SET expires_at = now() - interval '1 second' WHERE id = $1", hold.id)
    return hold


async def assert_consistent(db, user_id) -> None:
    row = await db.fetchrow("SELECT * FROM credit_consistency WHERE user_id = $1", user_id)
    assert row["consistent"], dict(row)


async def test_the_sweep_releases_expired_holds_and_leaves_live_ones(db):
    user = await account_with(db, 10)
    dead = await crash_after_reserving(db, user, 4, "crashed")
    live = await service.reserve(db, user, 3, "in-flight")

    assert await sweep_once(db) == 1

    s = await service.summary(db, user)
    assert (s.reserved, s.remaining) == (3, 7)
    status = dict(await db.fetch("SELECT id, status FROM credit_holds WHERE user_id = $1", user))
    assert status == {dead.id: "expired", live.id: "held"}
    release = await db.fetchrow("SELECT * FROM credit_ledger WHERE hold_id = $1 AND kind = 'release'", dead.id)
    assert (release["amount"], release["reason"]) == (4, "hold expired")
    await assert_consistent(db, user)


async def test_a_late_capture_of_a_swept_hold_is_refused_and_charges_nothing(db):
    user = await account_with(db, 10)
    dead = await crash_after_reserving(db, user, 4, "crashed")
    await sweep_once(db)

    with pytest.raises(HoldClosed):
        await service.capture(db, dead.id, 4)
    assert (await service.summary(db, user)).remaining == 10


async def test_a_second_sweep_finds_nothing_more(db):
    user = await account_with(db, 10)
    await crash_after_reserving(db, user, 4, "crashed")
    assert await sweep_once(db) == 1
    assert await sweep_once(db) == 0


async def test_concurrent_sweeps_release_each_hold_once(db):
    users = [await account_with(db, 20) for _ in range(6)]
    for user in users:
        for i in range(5):
            await crash_after_reserving(db, user, 2, f"crashed-{i}")

    released = await asyncio.gather(*(sweep_once(db, batch=2) for _ in range(4)))

    assert sum(released) == 30
    for user in users:
        s = await service.summary(db, user)
        assert (s.reserved, s.remaining) == (0, 20)
        await assert_consistent(db, user)


async def test_the_sweep_skips_an_account_that_is_busy_instead_of_waiting(db, database_url):
    user = await account_with(db, 10)
    await crash_after_reserving(db, user, 4, "crashed")
    busy = await asyncpg.connect(database_url)
    try:
        async with busy.transaction():
            await busy.execute("SELECT 1 FROM credit_accounts WHERE user_id = $1 FOR UPDATE", user)
            assert await asyncio.wait_for(sweep_once(db), timeout=5) == 0
    finally:
        await busy.close()

    assert await sweep_once(db) == 1


def test_the_sweep_runs_often_enough_for_the_ttl():
    assert sweep_interval(600) == 60
    assert sweep_interval(30) == 3
    assert sweep_interval(1) == 1


async def test_the_server_sweeps_in_the_background(aiohttp_client, test_env, db):
    settings = Settings.from_env({**test_env, "CREDIT_HOLD_TTL": "1"})
    app = create_app(settings)
    await aiohttp_client(app)  # starts the app's background tasks
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 4, "process-died", settings=settings)

    for _ in range(60):
        if await db.fetchval("SELECT status FROM credit_holds WHERE id = $1", hold.id) == "expired":
            break
        await asyncio.sleep(0.1)

    assert await db.fetchval("SELECT status FROM credit_holds WHERE id = $1", hold.id) == "expired"
    assert (await service.summary(db, user)).remaining == 10
    assert app[METRICS].registry.get_sample_value("credit_holds_expired_total") >= 1
