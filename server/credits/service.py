"""The credit ledger's API for the rest of the server.

Every function takes either a pool or a connection. Given a connection already inside a
transaction, the work joins that transaction (under a savepoint where it needs one), so a
billing webhook can set the plan and grant the period atomically with its own writes.

Money rules:
- `reserve` is one conditional statement that locks the account row, so parallel requests
  can never spend the same credit twice; there is no check-then-debit.
- Every balance change is written with its ledger entry in the same statement or
  transaction, and every entry has a unique idempotency key.
- An idempotency key with a live hold (held or captured) is never charged again.

A capture that takes the period's use past one of USAGE_THRESHOLDS percent of the allowance
announces it on the USAGE_CHANNEL notification channel (server.alerts mails the customer).

Functions that need deployment settings (hold TTL, payment grace, upgrade URL) take
`settings=`; without it they use the Settings defaults.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from typing import AsyncIterator

import asyncpg

from server.credits import repo
from server.credits.models import (
    CreditSummary,
    Hold,
    HoldClosed,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    LedgerEntry,
    PaymentPastDue,
    Plan,
)
from server.credits.pricing import Pricing, PricingRule
from server.settings import Settings
from server.web.errors import NotFound, ValidationFailed

log = logging.getLogger("server.credits")

Db = repo.Db

MAX_KEY_LENGTH = 200
USAGE_THRESHOLDS = (80, 100)  # percent of the period's allowance, ascending
USAGE_CHANNEL = repo.USAGE_CHANNEL
_DEFAULTS = Settings()


# --- connections ------------------------------------------------------------------------


@asynccontextmanager
async def _transaction(db: Db) -> AsyncIterator[repo.Conn]:
    """A transaction, or a savepoint inside the caller's transaction."""
    async with repo.acquire(db) as conn:
        async with conn.transaction():
            yield conn


# --- holds --------------------------------------------------------------------------------


async def reserve(db: Db, user_id: uuid.UUID, amount: int, key: str, *, settings: Settings | None = None) -> Hold:
    """Set `amount` credits aside for one request, or raise 402.

    The same key returns the same hold while it is held or captured (check `hold.status`:
    "captured" means the request was already charged). A key whose hold was released may
    be reserved again: nothing was charged for it. Raises InsufficientCredits,
    PaymentPastDue, or IdempotencyConflict when the key's hold is for another amount.
    """
    _check_amount(amount)
    _check_key(key)
    settings = settings or _DEFAULTS
    async with repo.acquire(db) as conn:
        row = await repo.try_reserve(
            conn, user_id, key, amount, ttl=settings.hold_ttl, grace_days=settings.payment_grace_days
        )
        if row is not None:
            return Hold.from_row(row)
        return await _reserve_slowly(conn, user_id, amount, key, settings)


async def _reserve_slowly(conn: repo.Conn, user_id: uuid.UUID, amount: int, key: str, settings: Settings) -> Hold:
    """The fast statement found nothing to do; find out why with the account locked."""
    async with conn.transaction():
        account = await _current_account(conn, user_id)
        existing = await repo.live_hold(conn, user_id, key)
        if existing is not None:
            if existing["amount"] != amount:
                raise IdempotencyConflict(
                    "This idempotency key was used for a request of another price",
                    details={"held": existing["amount"], "requested": amount},
                )
            if existing["status"] == "held":
                # A retry took over a request whose worker died or gave up: the hold is its now, for
                # a full TTL, so the sweep does not free it under the retry's own upstream call.
                existing = await repo.extend_hold(conn, existing["id"], ttl=settings.hold_ttl)
            return Hold.from_row(existing)
        _check_payment(account, settings)
        row = await repo.try_reserve(
            conn, user_id, key, amount, ttl=settings.hold_ttl, grace_days=settings.payment_grace_days
        )
        if row is not None:
            return Hold.from_row(row)
        raise InsufficientCredits(needed=amount, remaining=_remaining(account), upgrade_url=settings.upgrade_url)


async def capture(db: Db, hold_id: uuid.UUID, actual: int) -> int:
    """Charge `actual` credits of the hold and give the rest back; returns the credits charged.

    Idempotent: capturing a captured hold changes nothing and returns what it charged.
    `actual` above the hold is charged as the hold (the user was quoted that much).
    Raises HoldClosed when the hold was released (by the caller or the sweep).
    """
    charged, _ = await capture_with_balance(db, hold_id, actual)
    return charged


async def capture_with_balance(db: Db, hold_id: uuid.UUID, actual: int) -> tuple[int, int | None]:
    """capture(), plus the account's spendable balance right after it (period + top-up credits;
    meaningless on unlimited plans), read by the capture statement itself so a request can report
    what is left without another round trip. The balance is None when the hold had been captured
    before (a retried request): this call moved nothing."""
    if actual < 0:
        raise ValueError("a capture cannot be negative")
    async with repo.acquire(db) as conn:
        row = await repo.settle(conn, hold_id, actual, "captured", None)
        if row is not None:
            await announce_if_crossed(conn, row["user_id"], used=row["used"], captured=row["captured"],
                                      allowance=row["allowance"])
            if actual > row["amount"]:
                log.warning("capture above the hold charged as the hold",
                            extra={"hold_id": str(hold_id), "held": row["amount"], "actual": actual})
            return row["captured"], row["balance"]
        hold = await repo.hold_by_id(conn, hold_id)
    if hold is None:
        raise HoldNotFound("No such credit hold")
    if hold["status"] == "captured":
        return hold["captured"], None
    raise HoldClosed(
        "The credit hold was already released", details={"hold_id": str(hold_id), "status": hold["status"]}
    )


async def release(db: Db, hold_id: uuid.UUID, *, reason: str = "released") -> None:
    """Give the hold's credits back. Idempotent; a captured hold stays captured."""
    async with repo.acquire(db) as conn:
        if await repo.settle(conn, hold_id, None, "released", reason) is not None:
            return
        if await repo.hold_by_id(conn, hold_id) is None:
            raise HoldNotFound("No such credit hold")


# --- periods, top-ups and adjustments ------------------------------------------------------------


async def grant_period(
    db: Db, user_id: uuid.UUID, start: datetime, end: datetime, allowance: int | None, key: str
) -> bool:
    """Start a billing period with `allowance` credits; the old period's unspent allowance expires.

    Idempotent on `key` (e.g. the invoice id): returns False when the key was seen before,
    or when the period ended before the current one began (a late, out-of-order event).
    `allowance=None` (unlimited plans) grants nothing countable.
    """
    if end <= start:
        raise ValueError("a period must end after it starts")
    if allowance is not None and allowance < 0:
        raise ValueError("an allowance cannot be negative")
    _check_key(key)
    async with _transaction(db) as conn:
        account = await _locked_account(conn, user_id)
        if await repo.entry_by_key(conn, key) is not None:
            return False
        if account["period_seq"] > 0 and end <= account["period_start"]:
            log.warning("ignored a grant for a period older than the current one",
                        extra={"user_id": str(user_id), "key": key})
            return False
        await _open_period(conn, account, start, end, allowance or 0, grant_key=key, reason="billing period")
        return True


async def top_up(db: Db, user_id: uuid.UUID, amount: int, key: str) -> bool:
    """Add credits that do not expire at period end (a purchased pack). Idempotent on `key`."""
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    _check_key(key)
    async with _transaction(db) as conn:
        await _locked_account(conn, user_id)
        if await repo.entry_by_key(conn, key) is not None:
            return False
        balance = await repo.move_balance(conn, user_id, period_change=0, topup_change=amount)
        await repo.insert_entry(conn, user_id, "topup", amount=amount, topup_amount=amount, credits=amount,
                                balance_after=balance, key=key, reason="top-up")
        return True


async def adjust(
    db: Db, user_id: uuid.UUID, amount: int, reason: str, actor: str, *, key: str | None = None
) -> int:
    """An admin's or billing's correction; returns the credits actually applied.

    Credits given do not expire at period end. Credits taken come from the period's
    allowance first, then from carried credits, and never more than the account has (a
    refund claw-back after the credits were spent takes what is left). Pass `key` to make
    the adjustment idempotent (e.g. a refund id); a repeated key returns the first result.
    """
    if amount == 0:
        raise ValueError("an adjustment must change something")
    if not reason or not reason.strip():
        raise ValueError("an adjustment needs a reason")
    key = key or f"adjust:{uuid.uuid4()}"
    _check_key(key)
    async with _transaction(db) as conn:
        account = await _locked_account(conn, user_id)
        seen = await repo.entry_by_key(conn, key)
        if seen is not None:
            return seen["amount"]
        if amount > 0:
            period_change, topup_change = 0, amount
        else:
            period_change = -min(-amount, account["period_balance"])
            topup_change = -min(-amount + period_change, account["topup_balance"])
        applied = period_change + topup_change
        balance = await repo.move_balance(conn, user_id, period_change=period_change, topup_change=topup_change)
        await repo.insert_entry(conn, user_id, "adjust", amount=applied, topup_amount=topup_change,
                                credits=abs(applied), balance_after=balance, key=key,
                                reason=reason.strip(), actor=actor)
        if applied != amount:
            log.info("adjustment limited to the balance", extra={"user_id": str(user_id), "asked": amount,
                                                                  "applied": applied})
        return applied


async def set_plan(db: Db, user_id: uuid.UUID, plan_code: str) -> Plan:
    """Move the account to another plan. Balances are untouched: billing grants the new period
    with grant_period; a move to free takes effect as a calendar month once the current
    period has ended."""
    async with _transaction(db) as conn:
        row = await repo.plan(conn, plan_code)
        if row is None:
            raise NotFound(f"No plan {plan_code!r}", code="plan_not_found")
        await _locked_account(conn, user_id)
        await repo.set_plan(conn, user_id, plan_code)
        return Plan.from_row(row)


async def set_payment_state(db: Db, user_id: uuid.UUID, past_due_since: datetime | None) -> None:
    """Mark the account past due since a failed payment (None when paid again). Requests keep
    working for PAYMENT_GRACE_DAYS, then reserve answers 402 payment_past_due."""
    async with _transaction(db) as conn:
        await _locked_account(conn, user_id)
        await repo.set_past_due(conn, user_id, past_due_since)


# --- reading ------------------------------------------------------------------------------


async def summary(db: Db, user_id: uuid.UUID) -> CreditSummary:
    """The account as the panel and portal show it; opens the new free month when one is due."""
    async with repo.acquire(db) as conn:
        row = await repo.account(conn, user_id)
        if row is None or _period_due(row):
            async with conn.transaction():
                await _current_account(conn, user_id)
            row = await repo.account(conn, user_id)
    return _summary(row)


async def summaries(db: Db, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, CreditSummary]:
    """`summary` of many accounts in one read (admin lists); only accounts missing or with a month
    due are opened one by one."""
    async with repo.acquire(db) as conn:
        rows = {r["user_id"]: r for r in await repo.accounts(conn, list(user_ids))}
    result = {uid: _summary(row) for uid, row in rows.items() if not _period_due(row)}
    for uid in user_ids:
        if uid not in result:
            result[uid] = await summary(db, uid)
    return result


async def plan_for(db: Db, user_id: uuid.UUID) -> Plan:
    async with repo.acquire(db) as conn:
        row = await repo.plan_of(conn, user_id)
    return Plan.from_row(row)


class PlanCatalog:
    """Plans by code, re-read from Postgres at most every `ttl` seconds.

    Plans are data that changes rarely, while which plan an account is on changes with a
    purchase: callers learn the account's plan code fresh (auth reads it with the session, in
    one query) and look the plan's limits up here without a round trip."""

    def __init__(self, db: Db, ttl: float = 30.0) -> None:
        self._db = db
        self._ttl = ttl
        self._read_at = float("-inf")
        self._plans: dict[str, Plan] = {}

    async def get(self, code: str) -> Plan | None:
        """The plan, or None when no plan has this code even after a fresh read."""
        now = time.monotonic()
        if now - self._read_at > self._ttl or code not in self._plans:
            self._plans = {p.code: p for p in await plans(self._db)}
            self._read_at = now
        return self._plans.get(code)


async def plans(db: Db) -> list[Plan]:
    async with repo.acquire(db) as conn:
        return [Plan.from_row(r) for r in await repo.plans(conn)]


async def load_pricing(db: Db) -> Pricing:
    async with repo.acquire(db) as conn:
        rows = await repo.pricing_rules(conn)
    return Pricing({r["code"]: PricingRule.from_row(r) for r in rows})


async def history(db: Db, user_id: uuid.UUID, *, limit: int = 50, before_id: int | None = None) -> list[LedgerEntry]:
    """Ledger entries, newest first; page with before_id = the last id seen."""
    async with repo.acquire(db) as conn:
        rows = await repo.entries(conn, user_id, limit=max(1, min(limit, 500)), before_id=before_id)
    return [LedgerEntry.from_row(r) for r in rows]


# --- internals ------------------------------------------------------------------------------


async def _locked_account(conn: repo.Conn, user_id: uuid.UUID):
    """The account row, locked for this transaction; created (free, no period yet) when missing."""
    row = await repo.lock_account(conn, user_id)
    if row is not None:
        return row
    try:
        async with conn.transaction():
            await repo.create_account(conn, user_id)
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("No such user", code="user_not_found") from None
    return await repo.lock_account(conn, user_id)


async def _current_account(conn: repo.Conn, user_id: uuid.UUID):
    """The locked account, with the new calendar month opened first when its period has ended."""
    account = await _locked_account(conn, user_id)
    if not _period_due(account):
        return account
    start, end = await repo.calendar_month(conn)
    key = f"period:{user_id}:{start:%Y-%m}"
    if await repo.entry_by_key(conn, key) is not None:
        # The month's free allowance was already given (free, then paid, then free again).
        await _open_period(conn, account, start, end, 0, grant_key=None, reason="calendar month")
    else:
        await _open_period(conn, account, start, end, account["monthly_credits"] or 0, grant_key=key,
                           reason="calendar month")
    return await repo.lock_account(conn, user_id)


async def _open_period(
    conn: repo.Conn, account, start: datetime, end: datetime, allowance: int, *, grant_key: str | None, reason: str
) -> None:
    user_id = account["user_id"]
    balance = account["period_balance"] + account["topup_balance"]
    expired = account["period_balance"]
    if expired:
        balance -= expired
        await repo.insert_entry(conn, user_id, "expire", amount=-expired, credits=expired, balance_after=balance,
                                key=f"expire:{user_id}:{account['period_seq']}", reason="period ended")
    granted = allowance if grant_key is not None else 0
    await repo.open_period(conn, user_id, seq=account["period_seq"] + 1, start=start, end=end,
                           allowance=granted, period_balance=granted)
    if grant_key is not None:
        await repo.insert_entry(conn, user_id, "grant", amount=granted, credits=granted,
                                balance_after=balance + granted, key=grant_key, reason=reason)


async def announce_if_crossed(db: Db, user_id: uuid.UUID, *, used: int, captured: int, allowance: int) -> None:
    """After a capture of `captured` credits that brought the period's use to `used`: announce it if
    that crossed a usage threshold. For captures made elsewhere in one statement with other writes
    (server/generation's closing statement), which then call this after their commit."""
    if crossed_threshold(used - captured, used, allowance):
        async with repo.acquire(db) as conn:
            await _announce_usage(conn, user_id)


async def _announce_usage(conn: repo.Conn, user_id: uuid.UUID) -> None:
    if conn.is_in_transaction():
        await repo.announce_usage(conn, user_id)  # delivered with the caller's commit, or not at all
        return
    try:
        await repo.announce_usage(conn, user_id)
    except Exception:
        # The charge has committed already: a lost announcement must not read as a failed capture.
        log.warning("usage announcement lost; the alerts sweep finds the crossing", exc_info=True,
                    extra={"user_id": str(user_id)})


def crossed_threshold(before: int, after: int, allowance: int) -> bool:
    """Did a charge take the period's use from below to at or above one of USAGE_THRESHOLDS percent?
    The capture's one added check; everything else about usage mails happens off the request path."""
    # The first two comparisons settle every charge below the lowest threshold, i.e. almost all.
    return (allowance > 0 and after * 100 >= allowance * USAGE_THRESHOLDS[0]
            and any(before * 100 < allowance * t <= after * 100 for t in USAGE_THRESHOLDS))


def _period_due(account) -> bool:
    return account["calendar_periods"] and account["period_end"] <= account["now"]


def _check_payment(account, settings: Settings) -> None:
    since = account["past_due_since"]
    if since is None:
        return
    if (account["now"] - since).total_seconds() >= settings.payment_grace_days * 86400:
        raise PaymentPastDue(past_due_since=since, upgrade_url=settings.upgrade_url)


def _remaining(account) -> int:
    return account["period_balance"] + account["topup_balance"]


def _summary(row) -> CreditSummary:
    plan = Plan.from_row(row)
    return CreditSummary(
        plan=plan,
        allowance=row["allowance"],
        used=row["used"],
        reserved=row["reserved"],
        remaining=None if plan.unlimited else _remaining(row),
        topup=row["topup_balance"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        unlimited=plan.unlimited,
        past_due_since=row["past_due_since"],
    )


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError("credits must be a non-negative integer")


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(
            f"An idempotency key must be 1 to {MAX_KEY_LENGTH} characters",
            details={"fields": [{"field": "Idempotency-Key", "location": "header",
                                 "message": f"must be 1 to {MAX_KEY_LENGTH} characters", "type": "string_length"}]},
        )
