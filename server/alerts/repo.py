"""SQL of the alerts domain. Parameters only.

Writes go to this domain's tables (usage_alert_settings, usage_alerts, ops_incidents) and no
others; credit accounts, generations and users are only read.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from server.credits.service import USAGE_THRESHOLDS

Db = asyncpg.Pool | asyncpg.Connection

THRESHOLDS = USAGE_THRESHOLDS

# The account's current period is read under FOR SHARE: a capture still committing holds the
# row, so this waits for it and then sees the committed `used` (never a charge that may yet
# roll back). Only accounts still inside their period count; the PK makes the insert a no-op
# for a threshold already recorded by anyone.
_RECORD_CROSSINGS = """
WITH crossed AS (
    SELECT a.user_id, a.period_seq, t.threshold, a.used, a.allowance
      FROM credit_accounts a
     CROSS JOIN unnest($2::integer[]) AS t(threshold)
     WHERE ($1::uuid IS NULL OR a.user_id = $1)
       AND a.allowance > 0
       AND a.period_end > now()
       AND a.used::bigint * 100 >= a.allowance::bigint * t.threshold
       AND NOT EXISTS (SELECT 1 FROM usage_alerts u
                        WHERE u.user_id = a.user_id AND u.period_seq = a.period_seq AND u.threshold = t.threshold)
       FOR SHARE OF a
)
INSERT INTO usage_alerts (user_id, period_seq, threshold, used, allowance)
SELECT user_id, period_seq, threshold, used, allowance FROM crossed
    ON CONFLICT (user_id, period_seq, threshold) DO NOTHING
RETURNING user_id, period_seq, threshold, used, allowance, attempts
"""


async def record_crossings(db: Db, user_id: uuid.UUID | None) -> list[asyncpg.Record]:
    """New threshold rows for one account (or, with None, every account), claimed by this caller."""
    return await db.fetch(_RECORD_CROSSINGS, user_id, list(THRESHOLDS))


async def claim_retries(db: Db, *, stale_seconds: float, max_attempts: int) -> list[asyncpg.Record]:
    """Rows a crashed worker left 'sending', or whose mail failed, taken by this caller."""
    return await db.fetch(
        """UPDATE usage_alerts
              SET status = 'sending', attempts = attempts + 1, claimed_at = now()
            WHERE status IN ('sending', 'failed') AND attempts < $2
              AND claimed_at < now() - make_interval(secs => $1)
        RETURNING user_id, period_seq, threshold, used, allowance, attempts""",
        float(stale_seconds), max_attempts,
    )


async def finish(db: Db, user_id: uuid.UUID, period_seq: int, threshold: int, status: str) -> None:
    await db.execute(
        """UPDATE usage_alerts SET status = $4, done_at = CASE WHEN $4 = 'failed' THEN NULL ELSE now() END
            WHERE user_id = $1 AND period_seq = $2 AND threshold = $3""",
        user_id, period_seq, threshold, status,
    )


async def mails_enabled(db: Db, user_id: uuid.UUID) -> bool:
    value = await db.fetchval("SELECT mails_enabled FROM usage_alert_settings WHERE user_id = $1", user_id)
    return True if value is None else value


async def set_mails_enabled(db: Db, user_id: uuid.UUID, enabled: bool) -> None:
    await db.execute(
        """INSERT INTO usage_alert_settings (user_id, mails_enabled) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE SET mails_enabled = EXCLUDED.mails_enabled, updated_at = now()""",
        user_id, enabled,
    )


# --- operators ---------------------------------------------------------------------------------


async def admin_addresses(db: Db) -> list[str]:
    rows = await db.fetch("SELECT email::text AS email FROM users WHERE role = 'admin' AND status = 'active' ORDER BY email")
    return [r["email"] for r in rows]


async def upstream_units_by_key(db: Db, days: int) -> dict[int, int]:
    """Provider units (characters, tokens) each key spent over the last `days` days."""
    rows = await db.fetch(
        """SELECT upstream_key_id, sum(upstream_cost)::bigint AS units FROM generations
            WHERE created_at >= now() - make_interval(days => $1) AND upstream_key_id IS NOT NULL
              AND upstream_cost IS NOT NULL
            GROUP BY upstream_key_id""",
        days,
    )
    return {r["upstream_key_id"]: r["units"] for r in rows}


async def upstream_units_this_month(db: Db) -> dict[int | None, int]:
    rows = await db.fetch(
        """SELECT upstream_key_id, sum(upstream_cost)::bigint AS units FROM generations
            WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
              AND upstream_cost IS NOT NULL
            GROUP BY upstream_key_id"""
    )
    return {r["upstream_key_id"]: r["units"] for r in rows}


async def open_incidents(db: Db) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM ops_incidents WHERE cleared_at IS NULL ORDER BY opened_at")


async def open_incident(db: Db, kind: str, subject: str, summary: str, details: dict[str, Any]) -> asyncpg.Record | None:
    """The new incident, or None when one is open already (another worker may have just opened it)."""
    return await db.fetchrow(
        """INSERT INTO ops_incidents (kind, subject, summary, details) VALUES ($1, $2, $3, $4::jsonb)
           ON CONFLICT (kind, subject) WHERE cleared_at IS NULL DO NOTHING
           RETURNING *""",
        kind, subject, summary, json.dumps(details),
    )


async def clear_incident(db: Db, incident_id: int) -> asyncpg.Record | None:
    """The incident as cleared, or None when someone else cleared it first."""
    return await db.fetchrow(
        "UPDATE ops_incidents SET cleared_at = now() WHERE id = $1 AND cleared_at IS NULL RETURNING *", incident_id
    )


async def recent_incidents(db: Db, limit: int = 50) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM ops_incidents ORDER BY opened_at DESC, id DESC LIMIT $1", limit)
