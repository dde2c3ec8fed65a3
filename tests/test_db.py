"""The database layer: migrations apply once in order, pooled connections come back clean."""

import asyncpg

from server.db import load_migrations, migrate


def test_migrations_are_numbered_without_gaps():
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_running_migrate_again_applies_nothing(database_url):
    assert await migrate(database_url) == []
    conn = await asyncpg.connect(database_url)
    try:
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert recorded == len(load_migrations())


async def test_a_connection_released_inside_a_transaction_comes_back_clean(settings):
    from server.db import create_pool

    pool = await create_pool(settings.replace(db_pool_min=1, db_pool_max=1))
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE leftover (x int)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.leftover')") is None
    finally:
        await pool.close()
