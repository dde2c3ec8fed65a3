"""Keeps quotas current and brings parked keys back: one worker at a time, every few minutes.

Every worker runs the loop, but a Redis lock lets only one of them probe at a time, and whether
a key is due is decided from Postgres (when its quota was last read), so workers taking turns
never probe the same key twice in one interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from server.keybank import repo
from server.keybank.leases import RuntimeState
from server.keybank.service import KeyBank, ProbeResult
from server.providers import REGISTRY

log = logging.getLogger("server.keybank.refresher")

LOCK_NAME = "refresh"
# How often each worker looks for due keys; the refresh interval decides which keys are due.
MAX_TICK = 60.0


@dataclass
class RefreshReport:
    probed: list[ProbeResult] = field(default_factory=list)

    @property
    def reactivated(self) -> list[int]:
        return [p.key_id for p in self.probed if p.ok and p.status == "active"]


def is_due(row, state: RuntimeState, *, now: datetime, interval: float) -> bool:
    if row["status"] == "exhausted":
        return row["quota_reset_at"] is None or row["quota_reset_at"] <= now
    if row["status"] != "active" or state.cooling:
        return False
    if state.consecutive_failures > 0:
        # Its cooldown is over: one probe decides whether the backoff history can be forgotten.
        return True
    checked = row["quota_checked_at"]
    return checked is None or checked <= now - timedelta(seconds=interval)


async def refresh_once(bank: KeyBank, *, force: bool = False) -> RefreshReport | None:
    """Probe every due key (every key when `force`); None when another worker holds the lock."""
    token = uuid.uuid4().hex
    if not await bank.leases.try_lock(LOCK_NAME, token, bank.config.refresh_lock_ttl):
        return None
    try:
        report = RefreshReport()
        # A reading replaces quota_used with the provider's count, which already includes the
        # usage counted so far: it must be in Postgres first, or the next flush would add it twice.
        await bank.flush_usage()
        for provider in REGISTRY:
            report.probed += await _refresh_provider(bank, provider, force=force)
        return report
    finally:
        await bank.leases.unlock(LOCK_NAME, token)


async def _refresh_provider(bank: KeyBank, provider: str, *, force: bool) -> list[ProbeResult]:
    rows = [r for r in await repo.list_keys(bank.pool, provider) if r["status"] != "disabled"]
    states = await bank.leases.state(r["id"] for r in rows)
    now = datetime.now(timezone.utc)
    interval = bank.settings.keybank_refresh_interval
    due = [r["id"] for r in rows if force or is_due(r, states[r["id"]], now=now, interval=interval)]
    gate = asyncio.Semaphore(bank.config.probe_concurrency)

    async def probe(key_id: int) -> ProbeResult:
        async with gate:
            return await bank.probe(key_id)

    results = list(await asyncio.gather(*(probe(k) for k in due)))
    await bank.sync(provider)
    if results:
        log.info(
            "provider keys refreshed",
            extra={"provider": provider, "probed": len(results), "ok": sum(r.ok for r in results)},
        )
    return results


def refresh_tick(bank: KeyBank) -> float:
    return max(1.0, min(MAX_TICK, bank.settings.keybank_refresh_interval))


async def refresh_round(bank: KeyBank) -> None:
    """One round of the background refresher (server.periodic runs it every `refresh_tick`)."""
    await bank.sync_all()
    await refresh_once(bank)
