"""SQL for generations and their idempotency records. Parameters only, never string formatting."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import asyncpg

# How many takes the row's request asked for (kept beside the parameters, outside the hashes that
# name the audio): with `variation` it labels a take "2 of 3". Older rows count as one take.
TAKES = "coalesce((params->>'takes')::int, 1) AS takes"


def _stored_params(params: dict[str, Any], variations: Sequence[int]) -> str:
    return json.dumps({**params, "takes": len(variations)})

Conn = asyncpg.Connection | asyncpg.Pool

# True when the request's owner process is gone: no session carries its owner name (see
# owner.py). Right after Postgres (re)started, live owners are still reconnecting, so nobody is
# declared gone for a grace period. $grace is the statement's parameter of that name.
OWNER_GONE = """(r.owner IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = r.owner)
     AND pg_postmaster_start_time() < now() - make_interval(secs => $grace))"""


def _owner_gone(grace_param: int) -> str:
    return OWNER_GONE.replace("$grace", f"${grace_param}")


@dataclass(frozen=True)
class RequestClaim:
    id: uuid.UUID
    status: str  # in_progress, succeeded, failed
    request_hash: str
    attempt: int
    fresh: bool  # this call owns the request now (new, or taking over a failed/stale one)
    updated_at: datetime


@dataclass(frozen=True)
class OpenedRequest:
    claim: RequestClaim
    generation_ids: list[uuid.UUID]  # one per variation, in order; empty unless the claim is fresh
    # (hold id, expiry) per hold asked of open_generation, in the order asked; empty otherwise
    holds: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)


class HoldGone(Exception):
    """The take's credit hold was released (or is missing) by the time its audio was to be charged."""

    def __init__(self, missing: bool) -> None:
        super().__init__("the credit hold does not exist" if missing else "the credit hold was released")
        self.missing = missing


async def open_generation(
    conn: Conn, *, user_id: uuid.UUID, idempotency_key: str, request_hash: str, kind: str, params: dict[str, Any],
    prompt: str | None, text: str | None, variations: Sequence[int], audio_hash: str, owner: str | None,
    holds: Sequence[tuple[str, int]], hold_ttl: float, grace_days: int,
) -> OpenedRequest | None:
    """The common opening in one statement (generation_open, migrations/0014): the idempotency
    record, a credit hold per (key, amount) in `holds`, all or none, and a pending row per variation;
    or the record already there under this key, untouched (claim.fresh is then False).

    None: the credits' fast path did not apply (no account yet, a period to roll over, payment past
    due, not enough credits); nothing was written and open_request's transaction must find out why."""
    row = await conn.fetchrow(
        "SELECT * FROM generation_open($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        user_id, idempotency_key, request_hash, kind, owner, _stored_params(params, variations), prompt, text,
        list(variations), audio_hash, [k for k, _ in holds], [a for _, a in holds], float(hold_ttl), grace_days,
    )
    if row is None:
        return None
    claim = RequestClaim(row["id"], row["status"], row["request_hash"], row["attempt"], row["fresh"], row["updated_at"])
    if not claim.fresh:
        return OpenedRequest(claim, [])
    return OpenedRequest(claim, list(row["generation_ids"]),
                         list(zip(row["hold_ids"] or [], row["hold_expires_at"] or [])))


async def open_request(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, idempotency_key: str, request_hash: str, kind: str,
    params: dict[str, Any], prompt: str | None, text: str | None, variations: Sequence[int], audio_hash: str,
    owner: str | None = None,
) -> OpenedRequest | None:
    """In one round trip: make this transaction's commit asynchronous, insert the idempotency
    record and, when it is new, a pending generations row per variation; or read the existing record.

    Losing that commit in a database crash loses only a request that was never answered and never
    charged; the capture's (synchronous) commit flushes it with everything before it anyway.
    None: a concurrent insert committed after this statement's snapshot (ask again).
    """
    row = await conn.fetchrow(
        """WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS applied),
           ins AS (
               INSERT INTO generation_requests (user_id, idempotency_key, request_hash, kind, owner)
               VALUES ($1, $2, $3, $4, $10)
               ON CONFLICT (user_id, idempotency_key) DO NOTHING
               RETURNING id, status, request_hash, attempt, updated_at),
           gens AS (
               INSERT INTO generations (user_id, request_id, kind, params, prompt, text, variation, idempotency_key,
                                        request_hash)
               SELECT $1, ins.id, $4, $5::jsonb, $6, $7, v, $2, $9 FROM ins CROSS JOIN unnest($8::int[]) AS v
               RETURNING id, variation)
           SELECT ins.id, ins.status, ins.request_hash, ins.attempt, ins.updated_at, true AS fresh,
                  (SELECT array_agg(g.id ORDER BY g.variation) FROM gens g) AS generation_ids
             FROM ins, cfg
           UNION ALL
           SELECT r.id, r.status, r.request_hash, r.attempt, r.updated_at, false AS fresh, NULL
             FROM generation_requests r, cfg
            WHERE r.user_id = $1 AND r.idempotency_key = $2 AND NOT EXISTS (SELECT 1 FROM ins)""",
        user_id, idempotency_key, request_hash, kind, _stored_params(params, variations), prompt, text, list(variations), audio_hash,
        owner,
    )
    if row is None:
        return None
    claim = RequestClaim(row["id"], row["status"], row["request_hash"], row["attempt"], row["fresh"], row["updated_at"])
    return OpenedRequest(claim, list(row["generation_ids"] or []))


async def take_over(
    conn: Conn, request_id: uuid.UUID, *, stale_after: float, owner: str | None = None, grace: float = 0.0,
) -> RequestClaim | None:
    """Claim a record whose earlier try failed (nothing was charged), whose owner process is gone,
    or (for owners that cannot be asked) whose worker vanished long ago; the conditional UPDATE
    lets exactly one of several concurrent retries win.

    The earlier try's rows still pending are closed in the same statement: that try can no longer
    settle them (its settlement only touches pending rows), so its credit hold, which the new try
    finds again under the same hold key, is charged or released by the new try alone."""
    taken = await conn.fetchrow(
        f"""WITH claimed AS (
               UPDATE generation_requests r
                  SET status = 'in_progress', attempt = attempt + 1, updated_at = now(), owner = $3
                WHERE id = $1
                  AND (status = 'failed'
                       OR (status = 'in_progress'
                           AND (updated_at < now() - make_interval(secs => $2) OR {_owner_gone(4)})))
            RETURNING id, status, request_hash, attempt, updated_at),
           closed AS (
               UPDATE generations g
                  SET status = 'failed', failure_reason = 'taken_over', credits_charged = 0, completed_at = now()
                 FROM claimed
                WHERE g.request_id = claimed.id AND g.status = 'pending')
           SELECT * FROM claimed""",
        request_id, float(stale_after), owner, float(grace),
    )
    if taken is None:
        return None
    return RequestClaim(taken["id"], taken["status"], taken["request_hash"], taken["attempt"], True, taken["updated_at"])


async def request_state(conn: Conn, request_id: uuid.UUID, *, grace: float) -> tuple[str | None, bool]:
    """(status, whether an in-progress request's owner is gone) for a retry waiting on it."""
    row = await conn.fetchrow(
        f"SELECT r.status, {_owner_gone(2)} AS gone FROM generation_requests r WHERE r.id = $1",
        request_id, float(grace),
    )
    return (None, False) if row is None else (row["status"], bool(row["gone"]))


async def finish_request(conn: Conn, request_id: uuid.UUID, status: str, *, attempt: int | None = None) -> None:
    """With `attempt`, only while that try still owns the request (not after a takeover)."""
    await conn.execute(
        """UPDATE generation_requests SET status = $2, updated_at = now()
            WHERE id = $1 AND ($3::integer IS NULL OR attempt = $3)""",
        request_id, status, attempt,
    )


async def disown(
    conn: Conn, *, user_id: uuid.UUID, idempotency_key: str, owner: str, running: Sequence[uuid.UUID]
) -> int:
    """Close, as failed, a request this process opened but never heard back about (the connection
    died during the opening commit, which may or may not have happened), unless one of its own
    running requests is that one. Its credit hold is left to a retry (which finds it again) or to
    the hold sweep. Returns how many requests were closed (0 or 1)."""
    return await conn.fetchval(
        """WITH r AS (
               UPDATE generation_requests SET status = 'failed', updated_at = now()
                WHERE user_id = $1 AND idempotency_key = $2 AND owner = $3 AND status = 'in_progress'
                  AND NOT (id = ANY($4::uuid[]))
            RETURNING id),
           closed AS (
               UPDATE generations g
                  SET status = 'failed', failure_reason = 'service_unavailable', credits_charged = 0,
                      completed_at = now()
                 FROM r WHERE g.request_id = r.id AND g.status = 'pending')
           SELECT count(*)::integer FROM r""",
        user_id, idempotency_key, owner, list(running),
    )


async def create_pending(
    conn: Conn, *, user_id: uuid.UUID, request_id: uuid.UUID, kind: str, params: dict[str, Any],
    prompt: str | None, text: str | None, variations: Sequence[int], idempotency_key: str, request_hash: str,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """INSERT INTO generations (user_id, request_id, kind, params, prompt, text, variation, idempotency_key, request_hash)
           SELECT $1, $2, $3, $4::jsonb, $5, $6, v, $8, $9 FROM unnest($7::int[]) AS v
           RETURNING id, variation, created_at""",
        user_id, request_id, kind, _stored_params(params, variations), prompt, text, list(variations), idempotency_key, request_hash,
    )


async def succeed(
    conn: Conn, generation_id: uuid.UUID, *, storage_key: str, format: str, duration_seconds: float, sample_rate: int,
    size_bytes: int, credits_charged: int, hold_id: uuid.UUID | None, cached: bool, upstream_key_id: int | None,
    upstream_request_id: str | None, upstream_cost: int | None, upstream_attempts: int, latency_ms: int,
    finish_request: uuid.UUID | None = None, attempt: int | None = None,
) -> asyncpg.Record | None:
    """In one statement (generation_succeed, migrations/0014): the row succeeds, with
    `finish_request` that idempotency record too while try `attempt` owns it, and the hold is
    captured. The row has the generation's columns plus charged_now (None when the hold had been
    captured before: this call moved nothing), balance, used and allowance as the capture left them.

    None when the row is no longer pending (nothing written): a retry took the request over, the
    sweep closed it, or this very write committed before its connection died. HoldGone when the
    hold was released meanwhile (nothing written)."""
    try:
        return await conn.fetchrow(
            "SELECT * FROM generation_succeed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            generation_id, hold_id, credits_charged, finish_request, attempt, storage_key, format, duration_seconds,
            sample_rate, size_bytes, cached, upstream_key_id, upstream_request_id, upstream_cost, upstream_attempts,
            latency_ms,
        )
    except asyncpg.PostgresError as exc:
        if exc.sqlstate in ("CR404", "CR409"):
            raise HoldGone(missing=exc.sqlstate == "CR404") from None
        raise


async def fail(
    conn: Conn, generation_ids: Sequence[uuid.UUID], *, status: str, reason: str, holds: Sequence[uuid.UUID] = (),
    release_reason: str | None = None, hold_id: uuid.UUID | None = None, upstream_key_id: int | None = None,
    upstream_request_id: str | None = None, upstream_cost: int | None = None, upstream_attempts: int = 0,
    latency_ms: int | None = None,
) -> int:
    """In one statement (generation_fail, migrations/0014): the rows still pending fail and, if any
    did, `holds` are released. A row no longer pending was taken over, with its hold, by a retry
    (or closed by the sweep): its hold is not this call's to release. Returns how many rows closed."""
    return await conn.fetchval(
        "SELECT generation_fail($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        list(generation_ids), list(holds), status, reason, release_reason, hold_id, upstream_key_id,
        upstream_request_id, upstream_cost, upstream_attempts, latency_ms,
    )


async def generation_row(conn: Conn, generation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT id, user_id, request_id, kind, status, params, prompt, text, variation, request_hash, cached,
                   storage_key, format, duration_seconds, sample_rate, size_bytes, credits_charged, hold_id,
                   failure_reason, created_at, completed_at, {TAKES} FROM generations WHERE id = $1""",
        generation_id,
    )


async def request_results(conn: Conn, request_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT id, user_id, request_id, kind, status, params, prompt, text, variation, request_hash, cached,
                   storage_key, format, duration_seconds, sample_rate, size_bytes, credits_charged, hold_id,
                   failure_reason, created_at, completed_at, {TAKES}, deleted_at FROM generations
             WHERE request_id = $1 ORDER BY variation, created_at""",
        request_id,
    )


async def find_cached(conn: Conn, *, request_hash: str, variation: int, user_id: uuid.UUID, shared: bool) -> asyncpg.Record | None:
    """An earlier identical result. Sound effects are shared between accounts; voice scripts are not."""
    return await conn.fetchrow(
        """SELECT storage_key, format, duration_seconds, sample_rate, size_bytes
             FROM generations
            WHERE request_hash = $1 AND variation = $2 AND status = 'succeeded' AND deleted_at IS NULL
              AND storage_key IS NOT NULL AND ($4 OR user_id = $3)
            ORDER BY created_at DESC
            LIMIT 1""",
        request_hash, variation, user_id, shared,
    )


async def get_generation(conn: Conn, user_id: uuid.UUID, generation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT id, user_id, request_id, kind, status, params, prompt, text, variation, request_hash, cached,
                   storage_key, format, duration_seconds, sample_rate, size_bytes, credits_charged, hold_id,
                   failure_reason, created_at, completed_at, {TAKES} FROM generations
             WHERE id = $1 AND user_id = $2 AND status = 'succeeded' AND deleted_at IS NULL""",
        generation_id, user_id,
    )


async def history(
    conn: Conn, user_id: uuid.UUID, *, kind: str | None, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    before_at, before_id = before if before else (None, None)
    return await conn.fetch(
        f"""SELECT id, user_id, request_id, kind, status, params, prompt, text, variation, request_hash, cached,
                   storage_key, format, duration_seconds, sample_rate, size_bytes, credits_charged, hold_id,
                   failure_reason, created_at, completed_at, {TAKES} FROM generations
             WHERE user_id = $1 AND status = 'succeeded' AND deleted_at IS NULL
               AND ($2::text IS NULL OR kind = $2)
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
             ORDER BY created_at DESC, id DESC
             LIMIT $5""",
        user_id, kind, before_at, before_id, limit,
    )


async def soft_delete(conn: Conn, user_id: uuid.UUID, generation_id: uuid.UUID) -> str | None | bool:
    """Hide a generation; returns its storage key (None when it had none), False when not found."""
    row = await conn.fetchrow(
        """UPDATE generations SET deleted_at = now()
            WHERE id = $1 AND user_id = $2 AND status = 'succeeded' AND deleted_at IS NULL
        RETURNING storage_key""",
        generation_id, user_id,
    )
    return False if row is None else row["storage_key"]


async def storage_key_in_use(conn: Conn, storage_key: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM generations WHERE storage_key = $1 AND deleted_at IS NULL)", storage_key
    )


async def expire_for_retention(conn: Conn, *, batch: int) -> list[str]:
    """Hide generations older than their owner's plan keeps audio; returns their storage keys.

    Reads the credits domain's plan tables (read only); an account without a credits row is on free.
    """
    rows = await conn.fetch(
        """WITH due AS (
               SELECT g.id
                 FROM generations g
                 LEFT JOIN credit_accounts a ON a.user_id = g.user_id
                 JOIN plans p ON p.code = coalesce(a.plan_code, 'free')
                WHERE g.deleted_at IS NULL AND g.storage_key IS NOT NULL
                  AND g.created_at < now() - make_interval(days => p.retention_days)
                ORDER BY g.created_at
                LIMIT $1
                FOR UPDATE OF g SKIP LOCKED)
           UPDATE generations g SET deleted_at = now()
             FROM due WHERE g.id = due.id
         RETURNING g.storage_key""",
        batch,
    )
    return [r["storage_key"] for r in rows]


async def abandon_stale(conn: Conn, *, older_than: float, grace: float | None = None) -> int:
    """Close, as failed and charged nothing, what dead workers left: requests still in progress
    after `older_than` seconds (or, given `grace`, whose owner process is gone) and their pending
    rows, plus any row pending that long. A hold is reserved with its row, for CREDIT_HOLD_TTL: with
    `older_than` = that TTL, the rows close as the credit sweep frees their holds. Returns the
    number of rows closed."""
    return await conn.fetchval(
        f"""WITH dead AS (
               UPDATE generation_requests r SET status = 'failed', updated_at = now()
                WHERE r.status = 'in_progress'
                  AND (r.updated_at < now() - make_interval(secs => $1)
                       OR ($2::float8 IS NOT NULL AND {_owner_gone(2)}))
            RETURNING r.id),
           closed AS (
               UPDATE generations g SET status = 'failed', failure_reason = 'abandoned', credits_charged = 0,
                      completed_at = now()
                WHERE g.status = 'pending'
                  AND (g.created_at < now() - make_interval(secs => $1) OR g.request_id IN (SELECT id FROM dead))
            RETURNING g.id)
           SELECT count(*)::integer FROM closed""",
        float(older_than), grace,
    )


async def delete_user_generations(conn: Conn, user_id: uuid.UUID) -> list[str]:
    """Deletes a user's generations and request records; returns the storage keys they used."""
    rows = await conn.fetch("DELETE FROM generations WHERE user_id = $1 RETURNING storage_key", user_id)
    await conn.execute("DELETE FROM generation_requests WHERE user_id = $1", user_id)
    return sorted({r["storage_key"] for r in rows if r["storage_key"]})
