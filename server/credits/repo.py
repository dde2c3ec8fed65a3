"""SQL of the credits domain. Parameters only; no string formatting.

The two hot operations, reserve and settle, each do their whole job in one round trip: they
lock the account row, write the hold, move the balance and append the ledger entries. They are
the SQL functions credit_reserve and credit_settle (migrations/0014_one_statement_generation.sql),
so the generation domain's one-statement open and close run the very same money rules.
Everything else runs inside a transaction opened by the service with the account locked.

Lock order everywhere: the account row first, then hold rows. A capture racing a retry of
the same key can therefore never deadlock.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Db = asyncpg.Pool | Conn


@asynccontextmanager
async def acquire(db: Db) -> AsyncIterator[Conn]:
    """A connection from a pool, or the caller's own connection as it is."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def try_reserve(conn: Conn, user_id: uuid.UUID, key: str, amount: int, *, ttl: float, grace_days: int):
    """The new hold, or None when the fast path does not apply: no account yet, a calendar period
    to roll over, payment past due, a live hold for this key already, or not enough credits. The
    service then works out which, under the same lock. (credit_reserve, migrations/0014.)"""
    return await conn.fetchrow(
        "SELECT * FROM credit_reserve($1, ARRAY[$2::text], ARRAY[$3::integer], $4, $5)",
        user_id, key, amount, float(ttl), grace_days,
    )


async def settle(conn: Conn, hold_id: uuid.UUID, captured: int | None, status: str, reason: str | None):
    """Settle a held hold (credit_settle, migrations/0014); None when it is missing or settled already."""
    return await conn.fetchrow("SELECT * FROM credit_settle($1, $2, $3, $4)", hold_id, captured, status, reason)


USAGE_CHANNEL = "usage_threshold"


async def announce_usage(conn: Conn, user_id: uuid.UUID) -> None:
    """Tell listeners this account crossed a usage threshold. Inside a transaction the notification
    is delivered on commit, so a charge that rolls back announces nothing."""
    await conn.execute("SELECT pg_notify($1, $2)", USAGE_CHANNEL, str(user_id))


async def hold_by_id(conn: Conn, hold_id: uuid.UUID):
    return await conn.fetchrow(
        "SELECT id, user_id, key, amount, status, captured, expires_at FROM credit_holds WHERE id = $1", hold_id
    )


async def live_hold(conn: Conn, user_id: uuid.UUID, key: str):
    return await conn.fetchrow(
        """SELECT id, user_id, key, amount, status, expires_at FROM credit_holds
            WHERE user_id = $1 AND key = $2 AND status IN ('held', 'captured')""",
        user_id,
        key,
    )


async def extend_hold(conn: Conn, hold_id: uuid.UUID, *, ttl: float):
    return await conn.fetchrow(
        """UPDATE credit_holds SET expires_at = greatest(expires_at, now() + make_interval(secs => $2))
            WHERE id = $1
        RETURNING id, user_id, key, amount, status, expires_at""",
        hold_id, float(ttl),
    )


# --- accounts -----------------------------------------------------------------------

_ACCOUNT_WITH_PLAN = """
SELECT a.*, p.*, now() AS now
  FROM credit_accounts a
  JOIN plans p ON p.code = a.plan_code
 WHERE a.user_id = $1
"""


async def account(conn: Conn, user_id: uuid.UUID):
    return await conn.fetchrow(_ACCOUNT_WITH_PLAN, user_id)


async def accounts(conn: Conn, user_ids: list[uuid.UUID]):
    return await conn.fetch(_ACCOUNT_WITH_PLAN.replace("a.user_id = $1", "a.user_id = ANY($1::uuid[])"), user_ids)


async def lock_account(conn: Conn, user_id: uuid.UUID):
    return await conn.fetchrow(_ACCOUNT_WITH_PLAN + " FOR UPDATE OF a", user_id)


async def create_account(conn: Conn, user_id: uuid.UUID) -> None:
    """A new account is on free with an empty, already ended period: first use opens a month."""
    await conn.execute(
        """INSERT INTO credit_accounts (user_id, period_start, period_end) VALUES ($1, now(), now())
           ON CONFLICT (user_id) DO NOTHING""",
        user_id,
    )


async def calendar_month(conn: Conn) -> tuple[datetime, datetime]:
    row = await conn.fetchrow(
        """SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start,
                  (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC' AS end"""
    )
    return row["start"], row["end"]


async def open_period(
    conn: Conn, user_id: uuid.UUID, *, seq: int, start: datetime, end: datetime, allowance: int, period_balance: int
) -> None:
    await conn.execute(
        """UPDATE credit_accounts
              SET period_seq = $2, period_start = $3, period_end = $4, allowance = $5, used = 0,
                  period_balance = $6, updated_at = now()
            WHERE user_id = $1""",
        user_id, seq, start, end, allowance, period_balance,
    )


async def move_balance(conn: Conn, user_id: uuid.UUID, *, period_change: int, topup_change: int) -> int:
    """Adds the changes to the two parts of the balance; returns the new spendable balance."""
    return await conn.fetchval(
        """UPDATE credit_accounts
              SET period_balance = period_balance + $2, topup_balance = topup_balance + $3, updated_at = now()
            WHERE user_id = $1
        RETURNING period_balance + topup_balance""",
        user_id, period_change, topup_change,
    )


async def set_plan(conn: Conn, user_id: uuid.UUID, plan_code: str) -> None:
    await conn.execute(
        "UPDATE credit_accounts SET plan_code = $2, updated_at = now() WHERE user_id = $1", user_id, plan_code
    )


async def set_past_due(conn: Conn, user_id: uuid.UUID, since: datetime | None) -> None:
    await conn.execute(
        "UPDATE credit_accounts SET past_due_since = $2, updated_at = now() WHERE user_id = $1", user_id, since
    )


# --- ledger ---------------------------------------------------------------------------


async def insert_entry(
    conn: Conn,
    user_id: uuid.UUID,
    kind: str,
    *,
    amount: int,
    credits: int,
    balance_after: int,
    key: str,
    topup_amount: int = 0,
    reason: str | None = None,
    actor: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO credit_ledger (user_id, kind, amount, topup_amount, credits, balance_after,
                                      idempotency_key, reason, actor)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        user_id, kind, amount, topup_amount, credits, balance_after, key, reason, actor,
    )


async def entry_by_key(conn: Conn, key: str):
    return await conn.fetchrow("SELECT * FROM credit_ledger WHERE idempotency_key = $1", key)


async def entries(conn: Conn, user_id: uuid.UUID, *, limit: int, before_id: int | None) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM credit_ledger
            WHERE user_id = $1 AND ($3::bigint IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $2""",
        user_id, limit, before_id,
    )


# --- sweep ----------------------------------------------------------------------------


async def lock_accounts_with_due_holds(conn: Conn, limit: int) -> list[uuid.UUID]:
    """Accounts with expired holds that no other worker (or request) holds right now."""
    rows = await conn.fetch(
        """SELECT a.user_id FROM credit_accounts a
            WHERE a.user_id IN (SELECT h.user_id FROM credit_holds h
                                 WHERE h.status = 'held' AND h.expires_at <= now())
            ORDER BY a.user_id
            LIMIT $1
              FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [r["user_id"] for r in rows]


async def due_holds(conn: Conn, user_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        """SELECT id FROM credit_holds WHERE user_id = $1 AND status = 'held' AND expires_at <= now()
            ORDER BY expires_at""",
        user_id,
    )
    return [r["id"] for r in rows]


# --- plans and pricing ----------------------------------------------------------------------


async def plans(conn: Conn) -> list[Any]:
    return await conn.fetch("SELECT * FROM plans ORDER BY sort_order, code")


async def plan(conn: Conn, code: str):
    return await conn.fetchrow("SELECT * FROM plans WHERE code = $1", code)


async def plan_of(conn: Conn, user_id: uuid.UUID):
    """The account's plan, or free for a user without an account yet."""
    return await conn.fetchrow(
        """SELECT p.* FROM plans p
            WHERE p.code = coalesce((SELECT plan_code FROM credit_accounts WHERE user_id = $1), 'free')""",
        user_id,
    )


async def pricing_rules(conn: Conn) -> list[Any]:
    return await conn.fetch("SELECT * FROM pricing_rules ORDER BY code")


# --- the user, for /v1/me ------------------------------------------------------------------


async def user_profile(conn: Conn, user_id: uuid.UUID):
    return await conn.fetchrow("SELECT id, email, role, status, created_at FROM users WHERE id = $1", user_id)
