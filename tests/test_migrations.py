"""Migrations are numbered, applied once, and re-running them changes nothing."""

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
