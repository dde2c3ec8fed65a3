"""SQL for assist requests. Parameters only."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection

_COLUMNS = """id, user_id, idempotency_key, request_hash, feature, status, attempt, prompt_version, provider, model,
              upstream_key_id, upstream_attempts, input_tokens, output_tokens, credits_reserved, credits_charged,
              hold_id, result, failure_reason, latency_ms, created_at, completed_at"""


async def open_request(
    conn: Db, *, user_id: uuid.UUID, idempotency_key: str, request_hash: str, feature: str, prompt_version: str,
    stale_after: float,
) -> tuple[asyncpg.Record, bool]:
    """(row, fresh). A new key makes a pending row; a failed one (nothing charged) or a pending one
    older than `stale_after` seconds (its worker died) is taken over as a new attempt; anything else
    is returned as it is for the caller to replay or refuse."""
    row = await conn.fetchrow(
        f"""INSERT INTO assist_requests (user_id, idempotency_key, request_hash, feature, prompt_version)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING {_COLUMNS}""",
        user_id, idempotency_key, request_hash, feature, prompt_version,
    )
    if row is not None:
        return row, True
    taken = await conn.fetchrow(
        f"""UPDATE assist_requests
               SET status = 'pending', attempt = attempt + 1, prompt_version = $4, provider = NULL, model = NULL,
                   upstream_key_id = NULL, upstream_attempts = 0, input_tokens = NULL, output_tokens = NULL,
                   credits_reserved = 0, credits_charged = 0, hold_id = NULL, failure_reason = NULL,
                   created_at = now(), completed_at = NULL
             WHERE user_id = $1 AND idempotency_key = $2 AND request_hash = $3
               AND (status IN ('failed', 'cancelled')
                    OR (status = 'pending' AND created_at < now() - make_interval(secs => $5)))
            RETURNING {_COLUMNS}""",
        user_id, idempotency_key, request_hash, prompt_version, stale_after,
    )
    if taken is not None:
        return taken, True
    existing = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM assist_requests WHERE user_id = $1 AND idempotency_key = $2", user_id, idempotency_key
    )
    return existing, False


async def set_hold(conn: Db, request_id: uuid.UUID, hold_id: uuid.UUID | None, reserved: int) -> None:
    await conn.execute(
        "UPDATE assist_requests SET hold_id = $2, credits_reserved = $3 WHERE id = $1", request_id, hold_id, reserved
    )


async def mark_succeeded(
    conn: Db, request_id: uuid.UUID, *, provider: str, model: str, key_id: int | None, attempts: int,
    input_tokens: int, output_tokens: int, credits_charged: int, result: dict[str, Any], latency_ms: int,
) -> None:
    await conn.execute(
        """UPDATE assist_requests
              SET status = 'succeeded', provider = $2, model = $3, upstream_key_id = $4, upstream_attempts = $5,
                  input_tokens = $6, output_tokens = $7, credits_charged = $8, result = $9::jsonb, latency_ms = $10,
                  completed_at = now()
            WHERE id = $1""",
        request_id, provider, model, key_id, attempts, input_tokens, output_tokens, credits_charged,
        json.dumps(result), latency_ms,
    )


async def mark_failed(
    conn: Db, request_id: uuid.UUID, *, status: str, reason: str, attempts: int, latency_ms: int,
    provider: str | None = None, model: str | None = None, key_id: int | None = None,
) -> None:
    await conn.execute(
        """UPDATE assist_requests
              SET status = $2, failure_reason = $3, upstream_attempts = $4, latency_ms = $5, provider = $6, model = $7,
                  upstream_key_id = $8, credits_charged = 0, completed_at = now()
            WHERE id = $1 AND status = 'pending'""",
        request_id, status, reason[:300], attempts, latency_ms, provider, model, key_id,
    )


async def history(conn: Db, user_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {_COLUMNS} FROM assist_requests WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        user_id, limit,
    )


async def month_totals(conn: Db, user_id: uuid.UUID) -> asyncpg.Record:
    return await conn.fetchrow(
        """SELECT coalesce(sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), 0) AS tokens,
                  coalesce(sum(credits_charged), 0) AS credits
             FROM assist_requests
            WHERE user_id = $1 AND status = 'succeeded' AND created_at >= date_trunc('month', now())""",
        user_id,
    )
