"""Postgres: the connection pool and the forward-only migration runner."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from server.settings import PROJECT_ROOT, Settings

log = logging.getLogger("server.db")

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary but fixed: every process that migrates takes the same advisory lock.
MIGRATION_LOCK_ID = 7_311_000_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} must be named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations in order, each in its own transaction; returns those applied."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    applied_now: list[Migration] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
            for m in migrations:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        log.warning("migration changed after it was applied", extra={"version": m.version})
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version, m.name, m.checksum,
                    )
                log.info("migration applied", extra={"version": m.version, "migration": m.name})
                applied_now.append(m)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    finally:
        await conn.close()
    return applied_now


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        command_timeout=30,
        reset=reset_connection,
    )


async def reset_connection(conn: asyncpg.Connection) -> None:
    """Undo what a released connection may carry over.

    asyncpg's default reset (RESET ALL, UNLISTEN *, advisory unlock, CLOSE ALL) is one more round trip
    on every release, about a quarter of a ledger operation. The server keeps no session state (no
    session-level SET, LISTEN or advisory locks on pooled connections), so only an abandoned
    transaction needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
