"""SQL the portal owns (reset tokens, mail) or reads for display. Parameters only; no logic beyond
the query. Other domains' tables are only read here: changes go through their services.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg

from server.generation.repo import TAKES

Db = asyncpg.Pool | asyncpg.Connection


async def table_exists(db: Db, name: str) -> bool:
    return await db.fetchval("SELECT to_regclass($1) IS NOT NULL", "public." + name)


async def columns_of(db: Db, table: str) -> set[str]:
    rows = await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1", table
    )
    return {r["column_name"] for r in rows}


# --- password reset tokens ---------------------------------------------------------------


async def insert_reset_token(db: Db, user_id: uuid.UUID, token_hash: bytes, ttl_seconds: int) -> None:
    await db.execute(
        """INSERT INTO password_reset_tokens (user_id, token_hash, expires_at)
           VALUES ($1, $2, now() + make_interval(secs => $3))""",
        user_id, token_hash, ttl_seconds,
    )


async def retire_reset_tokens(db: Db, user_id: uuid.UUID) -> None:
    """Live tokens stop working (kept a day, so the hourly cap can count them), old rows go."""
    await db.execute(
        "UPDATE password_reset_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id
    )
    await db.execute(
        "DELETE FROM password_reset_tokens WHERE user_id = $1 AND created_at < now() - interval '1 day'", user_id
    )


async def live_reset_token(db: Db, token_hash: bytes) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT t.user_id, u.email::text AS email FROM password_reset_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now() AND u.status = 'active'""",
        token_hash,
    )


async def claim_reset_token(conn: asyncpg.Connection, token_hash: bytes) -> uuid.UUID | None:
    """Marks the token used; of two concurrent claims exactly one gets the user id."""
    return await conn.fetchval(
        """UPDATE password_reset_tokens SET used_at = now()
            WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
        RETURNING user_id""",
        token_hash,
    )


async def recent_reset_requests(db: Db, user_id: uuid.UUID, seconds: int) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM password_reset_tokens WHERE user_id = $1 AND created_at > now() - make_interval(secs => $2)",
        user_id, seconds,
    )


# --- users (admin) --------------------------------------------------------------------


async def search_users(db: Db, query: str | None, status: str | None, limit: int, offset: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, email::text AS email, role, status, created_at, last_login_at
             FROM users
            WHERE ($1::text IS NULL OR email ILIKE '%' || $1 || '%' OR id::text = $1)
              AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, id
            LIMIT $3 OFFSET $4""",
        query or None, status or None, limit, offset,
    )


async def count_users(db: Db, query: str | None, status: str | None) -> int:
    return await db.fetchval(
        """SELECT count(*) FROM users
            WHERE ($1::text IS NULL OR email ILIKE '%' || $1 || '%' OR id::text = $1)
              AND ($2::text IS NULL OR status = $2)""",
        query or None, status or None,
    )


async def user_row(db: Db, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, email::text AS email, role, status, created_at, last_login_at FROM users WHERE id = $1", user_id
    )


# --- generations (read for display) ------------------------------------------------------


async def usage_per_day(db: Db, user_id: uuid.UUID, start: date, end: date) -> dict[date, tuple[int, int]]:
    """Day -> (generations, credits charged) for one user, days in UTC; credits include prompt assistance."""
    rows = await db.fetch(
        """SELECT day, sum(n) AS n, sum(credits) AS credits
             FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, 1 AS n, credits_charged AS credits
                     FROM generations
                    WHERE user_id = $1 AND created_at >= $2::date AND created_at < ($3::date + 1)
                   UNION ALL
                   SELECT (created_at AT TIME ZONE 'UTC')::date, 0, credits_charged
                     FROM assist_requests
                    WHERE user_id = $1 AND created_at >= $2::date AND created_at < ($3::date + 1)) AS used
            GROUP BY 1""",
        user_id, start, end,
    )
    return {r["day"]: (int(r["n"]), int(r["credits"])) for r in rows}


async def recent_generations(db: Db, user_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT id, kind, status, prompt, text, format, duration_seconds, credits_charged, variation, created_at,
                  storage_key IS NOT NULL AS has_audio, {TAKES}
             FROM generations
            WHERE user_id = $1 AND deleted_at IS NULL AND status = 'succeeded'
            ORDER BY created_at DESC, id DESC LIMIT $2""",
        user_id, limit,
    )


async def generation_for_user(db: Db, generation_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT id, storage_key, format FROM generations
            WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL AND status = 'succeeded'""",
        generation_id, user_id,
    )


# --- admin usage ------------------------------------------------------------------------


async def generations_per_day(db: Db, start: date, end: date) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                  count(*) AS total,
                  count(*) FILTER (WHERE status = 'failed') AS failed,
                  coalesce(sum(credits_charged), 0) AS credits,
                  coalesce(sum(upstream_cost), 0) AS upstream_cost,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'succeeded') AS p50,
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'succeeded') AS p95
             FROM generations
            WHERE created_at >= $1::date AND created_at < ($2::date + 1)
            GROUP BY 1 ORDER BY 1""",
        start, end,
    )


async def usage_totals(db: Db, start: date, end: date) -> asyncpg.Record:
    return await db.fetchrow(
        """SELECT count(*) AS total,
                  count(*) FILTER (WHERE status = 'failed') AS failed,
                  coalesce(sum(credits_charged), 0) AS credits,
                  coalesce(sum(upstream_cost), 0) AS upstream_cost,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'succeeded') AS p50,
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'succeeded') AS p95
             FROM generations
            WHERE created_at >= $1::date AND created_at < ($2::date + 1)""",
        start, end,
    )


async def failures_by_reason(db: Db, start: date, end: date) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT coalesce(failure_reason, 'unknown') AS reason, count(*) AS n
             FROM generations
            WHERE created_at >= $1::date AND created_at < ($2::date + 1) AND status = 'failed'
            GROUP BY 1 ORDER BY 2 DESC, 1""",
        start, end,
    )


async def top_users(db: Db, start: date, end: date, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT g.user_id, u.email::text AS email, count(*) AS generations,
                  coalesce(sum(g.credits_charged), 0) AS credits, coalesce(sum(g.upstream_cost), 0) AS upstream_cost
             FROM generations g LEFT JOIN users u ON u.id = g.user_id
            WHERE g.created_at >= $1::date AND g.created_at < ($2::date + 1)
            GROUP BY g.user_id, u.email ORDER BY credits DESC, generations DESC LIMIT $3""",
        start, end, limit,
    )


# --- export and deletion --------------------------------------------------------------------


async def devices_for_export(db: Db, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT name, user_agent, host(ip) AS ip, created_at, last_used_at FROM device_sessions
            WHERE user_id = $1 ORDER BY created_at""",
        user_id,
    )


async def audit_about_user(db: Db, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT action, details, created_at FROM audit_log
            WHERE object_type = 'user' AND object_id = $1 ORDER BY id""",
        str(user_id),
    )


async def generations_for_export(db: Db, user_id: uuid.UUID) -> list[dict]:
    rows = await db.fetch(
        "SELECT * FROM generations WHERE user_id = $1 AND deleted_at IS NULL ORDER BY created_at", user_id
    )
    return [dict(r) for r in rows]


async def delete_personal_rows(conn: asyncpg.Connection, user_id: uuid.UUID, email: str) -> None:
    await conn.execute("DELETE FROM password_reset_tokens WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM mail_outbox WHERE to_address = $1", email)


async def admin_recent_generations(db: Db, user_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, kind, status, prompt, text, duration_seconds, credits_charged, failure_reason, latency_ms,
                  upstream_cost, created_at, deleted_at
             FROM generations WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2""",
        user_id, limit,
    )
