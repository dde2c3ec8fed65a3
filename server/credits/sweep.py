"""Releasing holds left behind by a process that died between reserve and capture.

Each batch locks the accounts that have expired holds with FOR UPDATE SKIP LOCKED, so any
number of server processes can run the sweep: they split the work instead of repeating it,
and an account busy with a request is simply picked up by the next round.
"""

from __future__ import annotations

import logging

from aiohttp import web

from server.appkeys import DB, METRICS, SETTINGS
from server.credits import repo
from server.periodic import periodic_ctx

log = logging.getLogger("server.credits.sweep")

BATCH = 100  # accounts per transaction: short enough not to hold their locks for long


async def sweep_once(db: repo.Db, *, batch: int = BATCH) -> int:
    """Release every expired hold this worker can lock now; returns how many it released."""
    released = 0
    while True:
        found, settled = await _sweep_batch(db, batch)
        released += settled
        if found < batch:
            return released


async def _sweep_batch(db: repo.Db, batch: int) -> tuple[int, int]:
    async with repo.acquire(db) as conn, conn.transaction():
        accounts = await repo.lock_accounts_with_due_holds(conn, batch)
        settled = 0
        for user_id in accounts:
            for hold_id in await repo.due_holds(conn, user_id):
                row = await repo.settle(conn, hold_id, None, "expired", "hold expired")
                if row is not None:
                    settled += 1
                    log.info("expired credit hold released",
                             extra={"hold_id": str(hold_id), "user_id": str(user_id), "credits": row["amount"]})
        return len(accounts), settled


def sweep_interval(hold_ttl: int) -> float:
    """Often enough that a hold outlives its TTL by at most a tenth of it, at most once a minute."""
    return max(1.0, min(60.0, hold_ttl / 10))


async def sweep_round(app: web.Application) -> None:
    released = await sweep_once(app[DB])
    if released:
        app[METRICS].holds_expired.inc(released)


sweep_ctx = periodic_ctx("credits-sweep", lambda app: sweep_interval(app[SETTINGS].hold_ttl), sweep_round)
