"""Customers' usage mails (80% and 100% of the period's allowance) and the burn-rate forecast.

How a crossing becomes one mail:
1. The capture that crosses a threshold announces it (server.credits: one comparison on the
   figures the capture statement returns anyway, then a NOTIFY in the capture's transaction,
   delivered only if the charge commits). Nothing else happens on the generation's path.
2. Each worker that hears it calls `notify_crossings`, which inserts one row per crossed
   threshold with ON CONFLICT DO NOTHING: exactly one caller gets each row back and mails.
3. `sweep` (periodic, every worker) records crossings nobody heard (a worker restarting, the
   listener reconnecting) and retries mails that failed or whose worker died mid-send.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from server.alerts import repo
from server.auth import service as auth
from server.credits.models import CreditSummary
from server.credits.service import USAGE_CHANNEL
from server.mail import PRODUCT_NAME, MailSender
from server.settings import Settings

log = logging.getLogger("server.alerts.usage")

CHANNEL = USAGE_CHANNEL
# A row still 'sending' after this long belongs to a worker that died mid-send.
STALE_SENDING_SECONDS = 300.0
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Crossing:
    user_id: uuid.UUID
    period_seq: int
    threshold: int
    used: int
    allowance: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Crossing":
        return cls(row["user_id"], row["period_seq"], row["threshold"], row["used"], row["allowance"])


async def notify_crossings(pool: asyncpg.Pool, mail: MailSender, settings: Settings, user_id: uuid.UUID) -> int:
    """Record the account's newly crossed thresholds and mail each one this call claimed."""
    rows = await repo.record_crossings(pool, user_id)
    return await _deliver_all(pool, mail, settings, [Crossing.from_row(r) for r in rows])


async def sweep(pool: asyncpg.Pool, mail: MailSender, settings: Settings) -> int:
    """Crossings no listener caught, and mails to try again; returns the mails sent."""
    missed = [Crossing.from_row(r) for r in await repo.record_crossings(pool, None)]
    retries = [Crossing.from_row(r) for r in await repo.claim_retries(
        pool, stale_seconds=STALE_SENDING_SECONDS, max_attempts=MAX_ATTEMPTS)]
    return await _deliver_all(pool, mail, settings, missed + retries)


async def _deliver_all(pool: asyncpg.Pool, mail: MailSender, settings: Settings, crossings: list[Crossing]) -> int:
    # At 100% the 80% mail says nothing new: when both are claimed at once, only the higher goes out.
    highest = {}
    for c in crossings:
        if c.user_id not in highest or c.threshold > highest[c.user_id].threshold:
            highest[c.user_id] = c
    sent = 0
    for c in crossings:
        if highest[c.user_id] is not c:
            await repo.finish(pool, c.user_id, c.period_seq, c.threshold, "skipped")
            continue
        sent += await _deliver(pool, mail, settings, c)
    return sent


async def _deliver(pool: asyncpg.Pool, mail: MailSender, settings: Settings, c: Crossing) -> int:
    account = await auth.get_account(pool, c.user_id)
    if account is None or account.status != "active":
        await repo.finish(pool, c.user_id, c.period_seq, c.threshold, "skipped")
        return 0
    if not await repo.mails_enabled(pool, c.user_id):
        await repo.finish(pool, c.user_id, c.period_seq, c.threshold, "opted_out")
        return 0
    subject, body = message(c, settings)
    try:
        await mail.send(account.email, subject, body)
    except Exception:
        log.warning("usage mail failed; the sweep tries again", exc_info=True,
                    extra={"user_id": str(c.user_id), "threshold": c.threshold})
        await repo.finish(pool, c.user_id, c.period_seq, c.threshold, "failed")
        return 0
    await repo.finish(pool, c.user_id, c.period_seq, c.threshold, "mailed")
    log.info("usage mail sent", extra={"user_id": str(c.user_id), "threshold": c.threshold})
    return 1


def message(c: Crossing, settings: Settings) -> tuple[str, str]:
    account_url = settings.public_url.rstrip("/") + "/account"
    if c.threshold >= 100:
        subject = f"{PRODUCT_NAME}: you have used all of this period's credits"
        first = (f"You have used {c.used:,} of the {c.allowance:,} credits in this period's allowance. "
                 "New generations now spend top-up credits, if you have any, and stop when none are left.")
    else:
        subject = f"{PRODUCT_NAME}: {c.threshold}% of this period's credits used"
        first = (f"You have used {c.used:,} of the {c.allowance:,} credits in this period's allowance "
                 f"({c.used * 100 // c.allowance}%).")
    body = (
        f"{first}\n\n"
        f"To keep generating without interruption, buy a credit pack or move to a larger plan:\n"
        f"  Top up: {settings.topup_link}\n"
        f"  Upgrade: {settings.upgrade_url}\n\n"
        f"You get this mail at most once per threshold and period. To stop these mails, turn off usage mails "
        f"on your account page: {account_url}\n"
    )
    return subject, body


# --- the customer's choice ---------------------------------------------------------------------


async def mails_enabled(db: repo.Db, user_id: uuid.UUID) -> bool:
    return await repo.mails_enabled(db, user_id)


async def set_mails_enabled(db: repo.Db, user_id: uuid.UUID, enabled: bool) -> None:
    await repo.set_mails_enabled(db, user_id, enabled)


# --- burn rate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    per_day: float  # credits used per day so far this period
    runs_out_at: datetime | None  # None: no use yet, or the credits outlast the period
    lasts_period: bool
    used_percent: float | None  # of the period's allowance; None when there is no allowance


def forecast(summary: CreditSummary, now: datetime) -> Forecast | None:
    """Burn rate over the period so far and the day the credits run out at that rate.
    None on unlimited plans, where nothing runs out."""
    if summary.unlimited:
        return None
    # At least an hour of history, so the first generation of a period does not read as a
    # rate of thousands a day.
    elapsed = max((now - summary.period_start).total_seconds(), 3600.0) / 86400
    per_day = summary.used / elapsed
    remaining = summary.remaining or 0
    percent = round(100 * summary.used / summary.allowance, 1) if summary.allowance else None
    if per_day <= 0:
        return Forecast(0.0, None, True, percent)
    runs_out = now + timedelta(days=remaining / per_day)
    if runs_out >= summary.period_end:
        return Forecast(per_day, None, True, percent)
    return Forecast(per_day, runs_out, False, percent)


# --- the listener ------------------------------------------------------------------------------


async def listen(dsn: str, on_user: "asyncio.Queue[uuid.UUID]", *, retry_after: float = 5.0) -> None:
    """Hold a LISTEN connection (not a pooled one: the pool keeps no session state) and queue
    the user of every notification; reconnect when the connection drops. Whatever is missed
    meanwhile is found by the sweep."""
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn)
            lost = asyncio.get_running_loop().create_future()

            def on_notify(_conn, _pid, _channel, payload: str) -> None:
                try:
                    on_user.put_nowait(uuid.UUID(payload))
                except (ValueError, asyncio.QueueFull):
                    log.warning("usage notification dropped; the sweep will find it")

            def on_close(_conn) -> None:
                if not lost.done():
                    lost.set_result(None)

            conn.add_termination_listener(on_close)
            await conn.add_listener(CHANNEL, on_notify)
            await lost
            log.warning("usage listener connection lost; reconnecting")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("usage listener failed; reconnecting", exc_info=True)
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()
        await asyncio.sleep(retry_after)
