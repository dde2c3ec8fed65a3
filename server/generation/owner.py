"""Who owns a running request, and whether that owner still lives.

A request with an Idempotency-Key is run by one worker process; a retry with the same key waits
for it instead of paying twice. The retry must learn at once when that worker is gone (killed,
crashed), not after a timeout, so it can take the request over.

Each worker process keeps one Postgres connection of its own open, outside the pool, named
`sfx-owner:<uuid>` (its application_name), and writes that name into every request it opens.
A worker that dies loses the connection with it: the kernel closes the socket, Postgres ends
the session, and the name leaves `pg_stat_activity` within milliseconds. "Is the owner alive?"
is then one look at `pg_stat_activity` (see repo.OWNER_GONE), asked only by a waiting retry.

Why this and not an advisory lock or a heartbeat:
- A lock held per request would tie up a pooled connection for the whole upstream call (up to
  UPSTREAM_DEADLINE): the pool would cap concurrent generations, and every request would pay
  a lock and an unlock round trip. The owner connection is one per process, idle, and costs
  the hot path nothing: the name rides in the INSERT that opens the request anyway, which
  keeps the door open for #14 to fold the whole opening into fewer statements.
- A heartbeat costs a write per request per beat and only notices a death after a few beats.

A Postgres restart ends every session, live workers' too. Each worker reconnects its owner
connection within OWNER_RECONNECT of Postgres accepting connections again, so for
RESTART_GRACE after Postgres started nobody is declared dead; a retry waits that long at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import asyncpg

from server.outages import is_unavailable

log = logging.getLogger("server.generation.owner")

OWNER_PREFIX = "sfx-owner:"
# How often a lost owner connection is dialled again, and how often a live one is checked.
OWNER_RECONNECT = 0.1
OWNER_CHECK = 2.0
# After a Postgres (re)start, owners get this long to reconnect before they count as dead.
RESTART_GRACE = 1.5


class OwnerBeacon:
    """This process's owner connection, kept open (and reopened) for as long as the process runs."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.name = OWNER_PREFIX + uuid.uuid4().hex
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def run(self) -> None:
        """Keep the connection up; returns only when cancelled."""
        while True:
            if not self.connected:
                try:
                    await self._connect()
                except Exception as exc:
                    if not is_unavailable(exc):
                        log.exception("owner connection failed")
                    await asyncio.sleep(OWNER_RECONNECT)
                    continue
            self._lost.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), OWNER_CHECK)
            if self.connected and not self._lost.is_set():
                # A connection can die without a word (a dropped network): ask it now and then.
                try:
                    await self._conn.execute("SELECT 1", timeout=OWNER_CHECK)  # type: ignore[union-attr]
                except Exception:
                    await self._close()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings={"application_name": self.name}, timeout=5)
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._conn = conn
        log.debug("owner connection open", extra={"owner": self.name})

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)

    async def aclose(self) -> None:
        await self._close()
