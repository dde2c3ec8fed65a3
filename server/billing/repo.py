"""SQL for the billing tables. Parameters only; callers own the transactions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool


# --- events ------------------------------------------------------------------

async def record_event(conn: asyncpg.Connection, event_id: str, type_: str, created: datetime,
                       customer_id: str | None, outcome: str) -> bool:
    """Store an event id; False when it was already stored (a redelivery). Waits for a concurrent
    transaction holding the same id, so two deliveries at once still apply the event once."""
    inserted = await conn.fetchval(
        """INSERT INTO stripe_events (id, type, stripe_created, stripe_customer_id, outcome)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING true""",
        event_id, type_, created, customer_id, outcome,
    )
    return bool(inserted)


async def set_event_outcome(conn: asyncpg.Connection, event_id: str, outcome: str) -> None:
    await conn.execute("UPDATE stripe_events SET outcome = $2 WHERE id = $1", event_id, outcome)


# --- customers ---------------------------------------------------------------

async def lock_customer(conn: asyncpg.Connection, customer_id: str) -> asyncpg.Record:
    """The customer's row, created when missing and locked until the transaction ends: every event
    about one customer is applied one at a time, in whatever order they arrive."""
    await conn.execute(
        "INSERT INTO billing_customers (stripe_customer_id) VALUES ($1) ON CONFLICT DO NOTHING", customer_id
    )
    return await conn.fetchrow(
        "SELECT stripe_customer_id, user_id FROM billing_customers WHERE stripe_customer_id = $1 FOR UPDATE",
        customer_id,
    )


async def link_customer(conn: Conn, customer_id: str, user_id: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO billing_customers (stripe_customer_id, user_id) VALUES ($1, $2)
           ON CONFLICT (stripe_customer_id) DO UPDATE SET user_id = EXCLUDED.user_id, updated_at = now()
           WHERE billing_customers.user_id IS DISTINCT FROM EXCLUDED.user_id""",
        customer_id, user_id,
    )


async def customer_for_user(conn: Conn, user_id: uuid.UUID) -> str | None:
    return await conn.fetchval(
        "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1",
        user_id,
    )


async def user_exists(conn: Conn, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM users WHERE id = $1", user_id))


# --- subscriptions -------------------------------------------------------------

SUBSCRIPTION_COLUMNS = (
    "stripe_subscription_id, stripe_customer_id, user_id, price_id, plan_code, status, cancel_at_period_end, "
    "current_period_start, current_period_end, canceled_at, ended_at, past_due_since, stripe_created, synced_at"
)


async def get_subscription(conn: Conn, subscription_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM billing_subscriptions WHERE stripe_subscription_id = $1", subscription_id
    )


async def upsert_subscription(conn: asyncpg.Connection, row: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, price_id, plan_code,
                   status, cancel_at_period_end, current_period_start, current_period_end, canceled_at, ended_at,
                   stripe_created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (stripe_subscription_id) DO UPDATE SET
               user_id = coalesce(EXCLUDED.user_id, billing_subscriptions.user_id),
               price_id = EXCLUDED.price_id, plan_code = EXCLUDED.plan_code, status = EXCLUDED.status,
               cancel_at_period_end = EXCLUDED.cancel_at_period_end,
               current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
               canceled_at = EXCLUDED.canceled_at, ended_at = EXCLUDED.ended_at, synced_at = now()""",
        row["id"], row["customer_id"], row["user_id"], row["price_id"], row["plan_code"], row["status"],
        row["cancel_at_period_end"], row["current_period_start"], row["current_period_end"], row["canceled_at"],
        row["ended_at"], row["created"],
    )


async def set_subscription_user(conn: asyncpg.Connection, customer_id: str, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE billing_subscriptions SET user_id = $2 WHERE stripe_customer_id = $1 AND user_id IS NULL",
        customer_id, user_id,
    )


async def set_past_due(conn: asyncpg.Connection, subscription_id: str, since: datetime | None) -> None:
    await conn.execute(
        "UPDATE billing_subscriptions SET past_due_since = $2 WHERE stripe_subscription_id = $1",
        subscription_id, since,
    )


LIVE_STATUSES = ("active", "trialing", "past_due")


async def live_subscriptions(conn: Conn, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """The user's subscriptions that still entitle to a plan, newest first."""
    return await conn.fetch(
        f"""SELECT {SUBSCRIPTION_COLUMNS} FROM billing_subscriptions
             WHERE user_id = $1 AND status = ANY($2::text[])
             ORDER BY stripe_created DESC, stripe_subscription_id DESC""",
        user_id, list(LIVE_STATUSES),
    )


async def latest_subscription(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {SUBSCRIPTION_COLUMNS} FROM billing_subscriptions WHERE user_id = $1
             ORDER BY (status = ANY($2::text[])) DESC, stripe_created DESC, stripe_subscription_id DESC LIMIT 1""",
        user_id, list(LIVE_STATUSES),
    )


# --- invoices ------------------------------------------------------------------

async def get_invoice(conn: Conn, invoice_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM billing_invoices WHERE stripe_invoice_id = $1", invoice_id)


async def upsert_invoice(conn: asyncpg.Connection, row: dict[str, Any], event_created: datetime) -> bool:
    """Write the mirror unless a newer event already did; True when the row was written.

    At equal event times the later status in an invoice's life wins (open before paid), so a
    finalized and a paid event from the same second end with the invoice paid in either order.
    """
    written = await conn.fetchval(
        """INSERT INTO billing_invoices AS i (stripe_invoice_id, stripe_customer_id, stripe_subscription_id, user_id,
                   number, status, billing_reason, amount_cents, currency, hosted_invoice_url, invoice_pdf,
                   stripe_created, event_created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (stripe_invoice_id) DO UPDATE SET
               user_id = coalesce(EXCLUDED.user_id, i.user_id), number = coalesce(EXCLUDED.number, i.number),
               status = EXCLUDED.status, billing_reason = EXCLUDED.billing_reason, amount_cents = EXCLUDED.amount_cents,
               currency = EXCLUDED.currency,
               hosted_invoice_url = coalesce(EXCLUDED.hosted_invoice_url, i.hosted_invoice_url),
               invoice_pdf = coalesce(EXCLUDED.invoice_pdf, i.invoice_pdf),
               event_created = EXCLUDED.event_created, updated_at = now()
           WHERE (EXCLUDED.event_created, billing_invoice_status_rank(EXCLUDED.status))
                 >= (i.event_created, billing_invoice_status_rank(i.status))
           RETURNING true""",
        row["id"], row["customer_id"], row["subscription_id"], row["user_id"], row["number"], row["status"],
        row["billing_reason"], row["amount_cents"], row["currency"], row["hosted_invoice_url"], row["invoice_pdf"],
        row["created"], event_created,
    )
    return bool(written)


async def mark_invoice_granted(conn: asyncpg.Connection, invoice_id: str) -> None:
    await conn.execute(
        "UPDATE billing_invoices SET granted_at = coalesce(granted_at, now()) WHERE stripe_invoice_id = $1", invoice_id
    )


async def invoices_for_user(conn: Conn, user_id: uuid.UUID, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM billing_invoices WHERE user_id = $1 AND status <> 'draft'
            ORDER BY stripe_created DESC, stripe_invoice_id DESC LIMIT $2""",
        user_id, limit,
    )


async def ungranted_paid_invoices(conn: Conn, customer_id: str, reasons: tuple[str, ...]) -> list[str]:
    """Paid period invoices whose allowance has not gone through the ledger yet."""
    rows = await conn.fetch(
        """SELECT stripe_invoice_id FROM billing_invoices
            WHERE stripe_customer_id = $1 AND status = 'paid' AND granted_at IS NULL
              AND billing_reason = ANY($2::text[])
            ORDER BY stripe_created""",
        customer_id, list(reasons),
    )
    return [r["stripe_invoice_id"] for r in rows]


async def set_invoice_users(conn: asyncpg.Connection, customer_id: str, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE billing_invoices SET user_id = $2 WHERE stripe_customer_id = $1 AND user_id IS NULL", customer_id, user_id
    )


# --- top-ups -------------------------------------------------------------------

async def insert_top_up(conn: asyncpg.Connection, row: dict[str, Any]) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO billing_top_ups (checkout_session_id, user_id, stripe_customer_id, payment_intent_id, pack_code,
                   credits, amount_cents, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (checkout_session_id) DO NOTHING RETURNING true""",
        row["session_id"], row["user_id"], row["customer_id"], row["payment_intent_id"], row["pack_code"],
        row["credits"], row["amount_cents"], row["currency"],
    )
    return bool(inserted)


async def top_ups_for_user(conn: Conn, user_id: uuid.UUID, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT created_at, pack_code, credits, amount_cents, currency, refunded_cents FROM billing_top_ups
            WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2""",
        user_id, limit,
    )


async def top_up_for_payment_intent(conn: asyncpg.Connection, payment_intent_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM billing_top_ups WHERE payment_intent_id = $1 FOR UPDATE", payment_intent_id
    )


async def record_refund(conn: asyncpg.Connection, session_id: str, refunded_cents: int, clawed: int, unrecovered: int) -> None:
    await conn.execute(
        """UPDATE billing_top_ups SET refunded_cents = $2, clawed_back = clawed_back + $3,
                  unrecovered = unrecovered + $4, updated_at = now()
            WHERE checkout_session_id = $1""",
        session_id, refunded_cents, clawed, unrecovered,
    )
