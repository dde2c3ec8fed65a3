"""Operators' key-bank alerts: what the pool looks like, which incidents that makes, and telling
admins once when each incident opens and once when it clears.

The key bank is only read, through `KeyBank.list_keys` (its rows plus the live cooldowns in
Redis); the incidents are this domain's own rows. One worker at a time reconciles them (a
transaction-level advisory lock), and the partial unique index on open incidents makes an
opening or a clearing a write that only one caller can win, so a mail never goes out twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from server.alerts import repo
from server.alerts.notify import Notifier
from server.keybank import FailureKind, KeyBank, KeyView
from server.settings import Settings

log = logging.getLogger("server.alerts.keybank")

BURN_WINDOW_DAYS = 7
RECONCILE_LOCK = 0x5F15A1E7  # pg advisory lock id: one reconciler at a time across workers
STATES = ("active", "cooling", "exhausted", "disabled", "invalid")
_INVALID_PREFIXES = tuple(k.value for k in FailureKind if k.disables)


def key_state(key: KeyView) -> str:
    """One state per key: `invalid` is a key the provider's answer disabled (an operator must
    act), `disabled` one an operator took out, `cooling` an active key in a cooldown."""
    if key.status == "disabled":
        return "invalid" if (key.disabled_reason or "").startswith(_INVALID_PREFIXES) else "disabled"
    if key.status == "exhausted":
        return "exhausted"
    return "cooling" if key.cooldown_until is not None else "active"


@dataclass
class ProviderState:
    provider: str
    keys: list[KeyView] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATES})
    remaining: int | None = 0  # quota left on keys in rotation; None when a key's quota is unknown
    burn_per_day: float = 0.0  # units a day over the last BURN_WINDOW_DAYS

    @property
    def days_left(self) -> float | None:
        if self.remaining is None or self.burn_per_day <= 0:
            return None
        return self.remaining / self.burn_per_day


async def pool_state(bank: KeyBank, pool: asyncpg.Pool) -> dict[str, ProviderState]:
    keys = await bank.list_keys()
    spent = await repo.upstream_units_by_key(pool, BURN_WINDOW_DAYS)
    out: dict[str, ProviderState] = {}
    for key in keys:
        p = out.setdefault(key.provider, ProviderState(key.provider))
        p.keys.append(key)
        state = key_state(key)
        p.states[state] += 1
        p.burn_per_day += spent.get(key.id, 0) / BURN_WINDOW_DAYS
        if state in ("active", "cooling") and p.remaining is not None:
            p.remaining = None if key.quota_remaining is None else p.remaining + max(0, key.quota_remaining)
    return out


@dataclass(frozen=True)
class Condition:
    kind: str
    subject: str
    summary: str
    details: dict[str, Any]


def conditions(state: dict[str, ProviderState], settings: Settings) -> list[Condition]:
    """Everything that is wrong now, each named by (kind, subject)."""
    found: list[Condition] = []
    for p in state.values():
        for key in p.keys:
            name = f"“{key.label}” (…{key.last4}, #{key.id}, {key.provider})"
            s = key_state(key)
            if s == "invalid":
                found.append(Condition("key_invalid", str(key.id), f"Key {name} was disabled as invalid: {key.disabled_reason}",
                                       {"key_id": key.id, "provider": key.provider, "label": key.label}))
            elif s == "exhausted":
                reset = key.quota_reset_at.isoformat() if key.quota_reset_at else "unknown"
                found.append(Condition("key_exhausted", str(key.id), f"Key {name} is out of quota until {reset}",
                                       {"key_id": key.id, "provider": key.provider, "label": key.label, "reset_at": reset}))
        days = p.days_left
        if days is not None and days < settings.alert_pool_min_days:
            found.append(Condition(
                "pool_low", p.provider,
                f"The {p.provider} pool has {p.remaining:,} units left: {days:.1f} days at the last "
                f"{BURN_WINDOW_DAYS} days' rate of {p.burn_per_day:,.0f} a day",
                {"provider": p.provider, "remaining": p.remaining, "burn_per_day": round(p.burn_per_day, 1),
                 "days_left": round(days, 2)},
            ))
        in_rotation = p.states["active"] + p.states["cooling"]
        if in_rotation and p.states["active"] == 0:
            found.append(Condition(
                "all_cooling", p.provider, f"Every {p.provider} key in rotation ({in_rotation}) is cooling down at once",
                {"provider": p.provider, "keys": in_rotation},
            ))
    return found


@dataclass
class Changes:
    opened: list[asyncpg.Record] = field(default_factory=list)
    cleared: list[asyncpg.Record] = field(default_factory=list)


async def reconcile(pool: asyncpg.Pool, found: list[Condition]) -> Changes:
    """Open an incident for each new condition and clear those that went away. Another worker
    reconciling at the same moment makes this one skip its round (it changes nothing then)."""
    changes = Changes()
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILE_LOCK):
            return changes
        current = {(c.kind, c.subject): c for c in found}
        open_now = {(r["kind"], r["subject"]): r for r in await repo.open_incidents(conn)}
        for key, c in current.items():
            if key not in open_now:
                row = await repo.open_incident(conn, c.kind, c.subject, c.summary, c.details)
                if row is not None:
                    changes.opened.append(row)
        for key, row in open_now.items():
            if key not in current:
                cleared = await repo.clear_incident(conn, row["id"])
                if cleared is not None:
                    changes.cleared.append(cleared)
    return changes


async def check(bank: KeyBank, pool: asyncpg.Pool, settings: Settings, notifier: Notifier) -> tuple[dict[str, ProviderState], Changes]:
    """One round: read the pool, reconcile incidents, tell admins about each change."""
    state = await pool_state(bank, pool)
    changes = await reconcile(pool, conditions(state, settings))
    for row in changes.opened:
        log.warning("key-bank incident opened", extra={"kind": row["kind"], "subject": row["subject"]})
        await notifier.incident(row, cleared=False)
    for row in changes.cleared:
        log.info("key-bank incident cleared", extra={"kind": row["kind"], "subject": row["subject"]})
        await notifier.incident(row, cleared=True)
    return state, changes

