"""SQL for the key bank. Parameters only; listing queries never select the ciphertext."""

from __future__ import annotations

from datetime import datetime


import asyncpg

from server.keybank.crypto import Sealed

Conn = asyncpg.Connection | asyncpg.Pool

# Everything an operator may see about a key: no ciphertext, no nonce.
PUBLIC_COLUMNS = """
    id, provider, label, key_version, last4, status, disabled_reason, max_concurrency, weight, tier,
    quota_limit, quota_used, quota_reset_at, quota_checked_at, last_error, last_error_at, created_at, updated_at
"""


async def next_key_id(conn: Conn) -> int:
    # The id is known before the insert because it is part of the ciphertext's associated data.
    return await conn.fetchval("SELECT nextval(pg_get_serial_sequence('provider_keys', 'id'))")


async def insert_key(
    conn: Conn,
    *,
    key_id: int,
    provider: str,
    label: str,
    sealed: Sealed,
    last4: str,
    status: str,
    max_concurrency: int,
    weight: int,
    tier: str | None,
    quota_limit: int | None,
    quota_used: int | None,
    quota_reset_at: datetime | None,
    quota_checked_at: datetime | None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO provider_keys (id, provider, label, ciphertext, nonce, key_version, last4, status,
                                       max_concurrency, weight, tier, quota_limit, quota_used, quota_reset_at,
                                       quota_checked_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
            RETURNING {PUBLIC_COLUMNS}""",
        key_id, provider, label, sealed.ciphertext, sealed.nonce, sealed.key_version, last4, status,
        max_concurrency, weight, tier, quota_limit, quota_used, quota_reset_at, quota_checked_at,
    )


async def label_exists(conn: Conn, provider: str, label: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM provider_keys WHERE provider = $1 AND label = $2)", provider, label)


async def get_key(conn: Conn, key_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PUBLIC_COLUMNS} FROM provider_keys WHERE id = $1", key_id)


async def list_keys(conn: Conn, provider: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {PUBLIC_COLUMNS} FROM provider_keys WHERE $1::text IS NULL OR provider = $1 ORDER BY provider, id",
        provider,
    )


async def sealed_key(conn: Conn, key_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, provider, label, status, ciphertext, nonce, key_version FROM provider_keys WHERE id = $1", key_id
    )


async def sealed_keys(conn: Conn, provider: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, provider, label, status, ciphertext, nonce, key_version FROM provider_keys WHERE provider = $1 ORDER BY id",
        provider,
    )


async def set_status(conn: Conn, key_id: int, status: str, reason: str | None) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE provider_keys SET status = $2, disabled_reason = $3, updated_at = now()
            WHERE id = $1 RETURNING {PUBLIC_COLUMNS}""",
        key_id, status, reason,
    )


async def disable_for_error(conn: Conn, key_id: int, reason: str) -> asyncpg.Record | None:
    # Only an active or exhausted key is disabled by an upstream answer; an operator's own
    # disable reason is kept.
    return await conn.fetchrow(
        f"""UPDATE provider_keys
            SET status = 'disabled', disabled_reason = $2, last_error = $2, last_error_at = now(), updated_at = now()
            WHERE id = $1 AND status <> 'disabled' RETURNING {PUBLIC_COLUMNS}""",
        key_id, reason,
    )


async def set_exhausted(conn: Conn, key_id: int, reset_at: datetime, error: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE provider_keys
            SET status = 'exhausted', quota_reset_at = $2, quota_used = GREATEST(COALESCE(quota_used, 0), COALESCE(quota_limit, 0)),
                last_error = $3, last_error_at = now(), updated_at = now()
            WHERE id = $1 AND status IN ('active', 'exhausted') RETURNING {PUBLIC_COLUMNS}""",
        key_id, reset_at, error,
    )


async def record_error(conn: Conn, key_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE provider_keys SET last_error = $2, last_error_at = now(), updated_at = now() WHERE id = $1",
        key_id, error,
    )


async def update_quota(
    conn: Conn,
    key_id: int,
    *,
    limit: int | None,
    used: int | None,
    reset_at: datetime | None,
    tier: str | None,
    reactivate: bool,
) -> asyncpg.Record | None:
    """Store a fresh quota reading; `reactivate` turns an exhausted key back to active (not a disabled one)."""
    return await conn.fetchrow(
        f"""UPDATE provider_keys
            SET quota_limit = $2, quota_used = $3, quota_reset_at = $4, tier = COALESCE($5, tier),
                quota_checked_at = now(), updated_at = now(),
                status = CASE WHEN $6 AND status = 'exhausted' THEN 'active' ELSE status END
            WHERE id = $1 RETURNING {PUBLIC_COLUMNS}""",
        key_id, limit, used, reset_at, tier, reactivate,
    )


async def mark_checked(conn: Conn, key_id: int) -> None:
    await conn.execute("UPDATE provider_keys SET quota_checked_at = now() WHERE id = $1", key_id)


async def add_usage(conn: Conn, key_ids: list[int], amounts: list[int]) -> None:
    """Add each amount to its key's quota_used, in one statement (keys removed meanwhile are skipped)."""
    await conn.execute(
        """UPDATE provider_keys AS k SET quota_used = COALESCE(k.quota_used, 0) + u.amount
           FROM unnest($1::bigint[], $2::bigint[]) AS u(id, amount) WHERE k.id = u.id""",
        key_ids, amounts,
    )


async def delete_key(conn: Conn, key_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("DELETE FROM provider_keys WHERE id = $1 RETURNING id, provider", key_id)


async def sealed_keys_for_update(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, provider, ciphertext, nonce, key_version FROM provider_keys ORDER BY id FOR UPDATE"
    )


async def update_sealed(conn: Conn, key_id: int, sealed: Sealed) -> None:
    await conn.execute(
        "UPDATE provider_keys SET ciphertext = $2, nonce = $3, key_version = $4, updated_at = now() WHERE id = $1",
        key_id, sealed.ciphertext, sealed.nonce, sealed.key_version,
    )


async def candidate_snapshot(conn: asyncpg.Connection, provider: str) -> tuple[int, list[asyncpg.Record]]:
    """The revision and the active keys, read in one snapshot (caller opens a repeatable-read transaction)."""
    revision = await conn.fetchval("SELECT revision FROM keybank_revisions WHERE provider = $1", provider)
    rows = await conn.fetch(
        """SELECT id, max_concurrency, weight, quota_limit, quota_used FROM provider_keys
           WHERE provider = $1 AND status = 'active' ORDER BY id""",
        provider,
    )
    return revision or 0, rows


async def providers_in_use(conn: Conn) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT provider FROM provider_keys UNION SELECT provider FROM keybank_revisions")
    return sorted(r["provider"] for r in rows)


