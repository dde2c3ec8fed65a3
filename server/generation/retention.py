"""Background upkeep: audio past its plan's retention is deleted, and rows whose worker died are closed.

Every worker runs both loops. The retention sweep takes a Redis lock so one of them sweeps at a
time; the orphan sweep is a single UPDATE that any number of workers can run at once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from server.generation import repo
from server.generation.owner import RESTART_GRACE

log = logging.getLogger("server.generation.retention")

BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    expired: int
    files_deleted: int
    abandoned: int


async def sweep(service) -> SweepReport:
    """One pass. `service` is the GenerationService (pool, storage, file reference checks)."""
    abandoned = await repo.abandon_stale(service.pool, older_than=service.stale_after)
    expired = deleted = 0
    while True:
        keys = await repo.expire_for_retention(service.pool, batch=BATCH)
        expired += len(keys)
        for key in set(keys):
            if await service.drop_file_if_unused(key):
                deleted += 1
        if len(keys) < BATCH:
            break
    if expired or abandoned:
        log.info("generation sweep", extra={"expired": expired, "files_deleted": deleted, "abandoned": abandoned})
    return SweepReport(expired, deleted, abandoned)


async def sweep_if_leader(service, *, interval: float) -> None:
    """One round of the background sweeper: sweep unless another worker holds the lock."""
    lock = service.settings.rkey("generation", "sweep-lock")
    token = uuid.uuid4().hex
    if await service.redis.set(lock, token, nx=True, ex=max(60, int(interval))):
        try:
            await sweep(service)
        finally:
            if await service.redis.get(lock) == token:
                await service.redis.delete(lock)


async def close_orphans(service) -> int:
    """Rows whose credit hold has expired (the credit sweep frees it at the same pace) or whose
    request's owner process is gone: failed, charged nothing. Returns how many rows were closed."""
    closed = await repo.abandon_stale(service.pool, older_than=service.settings.hold_ttl, grace=RESTART_GRACE)
    if closed:
        log.info("abandoned generations closed", extra={"abandoned": closed})
    return closed
