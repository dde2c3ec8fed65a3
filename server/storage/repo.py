"""Data access of the storage domain: deletions waiting for the store to answer again."""

from __future__ import annotations

from typing import Iterable

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection


async def defer(db: Db, keys: Iterable[str]) -> None:
    await db.executemany(
        "INSERT INTO storage_deletions (key) VALUES ($1) ON CONFLICT (key) DO NOTHING", [(k,) for k in keys]
    )


async def forget(db: Db, key: str) -> None:
    """The blob was deleted, or stored anew and wanted again: no deletion is owed."""
    await db.execute("DELETE FROM storage_deletions WHERE key = $1", key)


async def claim_due(db: Db, *, limit: int, retry_in: float) -> list[str]:
    """Keys due for another try; each is pushed back by `retry_in` (growing with its attempts), so
    processes sweeping at the same time do not take the same keys."""
    rows = await db.fetch(
        """UPDATE storage_deletions d
              SET attempts = d.attempts + 1,
                  next_try_at = now() + make_interval(secs => $2 * least(power(2, d.attempts), 64))
            WHERE d.key IN (SELECT key FROM storage_deletions WHERE next_try_at <= now()
                             ORDER BY next_try_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING d.key""",
        limit, float(retry_in),
    )
    return [r["key"] for r in rows]


async def pending(db: Db) -> list[str]:
    return [r["key"] for r in await db.fetch("SELECT key FROM storage_deletions ORDER BY key")]
