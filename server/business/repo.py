"""SQL behind the business figures: read-only, over our mirror of Stripe (billing_*), the plans
and the generations. Parameters only; the fragments joined below are constants.

A subscription counts from its creation until it ended (`ended_at`, or for a canceled one
whose end Stripe did not send, when it was canceled). Incomplete subscriptions never started.
A generation or a credit pack belongs to the plan of the subscription the user had at that
moment; without one, to the account's own plan if the user never subscribed (a comped
account), else to free.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection

_SUBS = """
SELECT s.stripe_subscription_id, s.user_id, s.plan_code, s.stripe_created AS started,
       coalesce(s.ended_at, CASE WHEN s.status = 'canceled' THEN coalesce(s.canceled_at, s.synced_at) END) AS ended
  FROM billing_subscriptions s
 WHERE s.status NOT IN ('incomplete', 'incomplete_expired')
"""

# The plan of user x.user_id at time x.at, as `plan`.
_PLAN_AT = f"""
LEFT JOIN LATERAL (
    SELECT subs.plan_code FROM ({_SUBS}) subs
     WHERE subs.user_id = x.user_id AND subs.plan_code IS NOT NULL
       AND subs.started <= x.at AND (subs.ended IS NULL OR subs.ended > x.at)
     ORDER BY subs.started DESC LIMIT 1
) sp ON true
LEFT JOIN credit_accounts ca ON ca.user_id = x.user_id
CROSS JOIN LATERAL (
    SELECT coalesce(sp.plan_code,
                    CASE WHEN NOT EXISTS (SELECT 1 FROM billing_subscriptions b WHERE b.user_id = x.user_id)
                         THEN ca.plan_code END,
                    'free') AS plan
) pl
"""


async def active_by_plan(db: Db, at: datetime) -> list[asyncpg.Record]:
    """Subscriptions running at `at`, per plan, with what they bring in a month."""
    return await db.fetch(
        f"""SELECT coalesce(subs.plan_code, 'other') AS plan, count(*)::int AS subscriptions,
                   coalesce(sum(p.price_cents), 0)::bigint AS mrr_cents
              FROM ({_SUBS}) subs LEFT JOIN plans p ON p.code = subs.plan_code
             WHERE subs.started <= $1 AND (subs.ended IS NULL OR subs.ended > $1)
             GROUP BY 1 ORDER BY 1""",
        at,
    )


async def movements(db: Db, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Per plan: subscriptions running at `start`, started in [start, end) and ended in it."""
    return await db.fetch(
        f"""SELECT coalesce(subs.plan_code, 'other') AS plan,
                   count(*) FILTER (WHERE subs.started <= $1 AND (subs.ended IS NULL OR subs.ended > $1))::int AS at_start,
                   count(*) FILTER (WHERE subs.started >= $1 AND subs.started < $2)::int AS new,
                   count(*) FILTER (WHERE subs.ended >= $1 AND subs.ended < $2)::int AS cancelled
              FROM ({_SUBS}) subs
             GROUP BY 1 ORDER BY 1""",
        start, end,
    )


async def subscription_revenue(db: Db, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Paid subscription invoices per month (UTC) and plan."""
    return await db.fetch(
        """SELECT date_trunc('month', i.stripe_created AT TIME ZONE 'UTC')::date AS month,
                  coalesce(s.plan_code, 'other') AS plan, sum(i.amount_cents)::bigint AS cents
             FROM billing_invoices i
             LEFT JOIN billing_subscriptions s ON s.stripe_subscription_id = i.stripe_subscription_id
            WHERE i.status = 'paid' AND i.stripe_subscription_id IS NOT NULL
              AND i.stripe_created >= $1 AND i.stripe_created < $2
            GROUP BY 1, 2""",
        start, end,
    )


async def pack_revenue(db: Db, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Credit packs bought, less refunds, per month and the buyer's plan at the time."""
    return await db.fetch(
        f"""SELECT date_trunc('month', x.at AT TIME ZONE 'UTC')::date AS month, pl.plan,
                   sum(x.amount_cents - x.refunded_cents)::bigint AS cents, count(*)::int AS packs
              FROM (SELECT user_id, created_at AS at, amount_cents, refunded_cents FROM billing_top_ups
                     WHERE created_at >= $1 AND created_at < $2) x
              {_PLAN_AT}
             GROUP BY 1, 2""",
        start, end,
    )


async def usage(db: Db, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Credits charged and provider units spent per month, plan and provider. Units count for
    failed generations too: the provider billed them. A generation whose key was since removed
    counts as ElevenLabs, the provider every generation uses today."""
    return await db.fetch(
        f"""SELECT date_trunc('month', x.at AT TIME ZONE 'UTC')::date AS month, pl.plan,
                   coalesce(k.provider, 'elevenlabs') AS provider,
                   sum(x.credits_charged)::bigint AS credits, coalesce(sum(x.upstream_cost), 0)::bigint AS units
              FROM (SELECT user_id, created_at AS at, credits_charged, upstream_cost, upstream_key_id FROM generations
                     WHERE created_at >= $1 AND created_at < $2) x
              LEFT JOIN provider_keys k ON k.id = x.upstream_key_id
              {_PLAN_AT}
             GROUP BY 1, 2, 3""",
        start, end,
    )


async def plan_prices(db: Db) -> dict[str, int]:
    return {r["code"]: r["price_cents"] for r in await db.fetch("SELECT code, price_cents FROM plans")}
