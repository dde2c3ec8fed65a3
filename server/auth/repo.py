"""SQL for accounts, device sessions and refresh tokens. Parameters only; no logic beyond the query.

`db` is an asyncpg Pool or Connection; functions that must share a transaction take a Connection.
"""

from __future__ import annotations

import uuid
import asyncpg

Db = asyncpg.Pool | asyncpg.Connection

USER_COLUMNS = "id, email::text AS email, password_hash, role, status, created_at, last_login_at, email_verified_at"


# --- users ------------------------------------------------------------------

async def insert_user(db: Db, email: str, password_hash: str, role: str, verified: bool = False) -> asyncpg.Record:
    """Raises asyncpg.UniqueViolationError when the email is taken."""
    return await db.fetchrow(
        f"""INSERT INTO users (email, password_hash, role, email_verified_at)
            VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END) RETURNING {USER_COLUMNS}""",
        email, password_hash, role, verified,
    )


async def user_by_email(db: Db, email: str) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE email = $1", email)


async def user_by_id(db: Db, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)


async def record_login(db: Db, user_id: uuid.UUID) -> None:
    await db.execute("UPDATE users SET last_login_at = now() WHERE id = $1", user_id)


async def replace_password_hash(db: Db, user_id: uuid.UUID, old_hash: str, new_hash: str) -> None:
    """Only if unchanged since it was read: a concurrent password change wins over a rehash."""
    await db.execute(
        "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2", user_id, old_hash, new_hash
    )


async def set_password_hash(db: Db, user_id: uuid.UUID, password_hash: str) -> bool:
    status = await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)
    return status != "UPDATE 0"


async def set_role(db: Db, user_id: uuid.UUID, role: str) -> bool:
    return await db.execute("UPDATE users SET role = $2 WHERE id = $1", user_id, role) != "UPDATE 0"


async def set_status(db: Db, user_id: uuid.UUID, status: str) -> bool:
    return await db.execute("UPDATE users SET status = $2 WHERE id = $1", user_id, status) != "UPDATE 0"


async def principal(db: Db, user_id: uuid.UUID, session_id: uuid.UUID) -> asyncpg.Record | None:
    """The user behind an access token, whether its device session still stands, and the code of
    the account's plan: every paid call needs it next, and asking here saves it a round trip."""
    return await db.fetchrow(
        """SELECT u.id, u.email::text AS email, u.role, u.status, u.email_verified_at IS NOT NULL AS email_verified,
                  s.id AS session_id, s.revoked_at,
                  coalesce((SELECT plan_code FROM credit_accounts WHERE user_id = u.id), 'free') AS plan_code
             FROM users u
             LEFT JOIN device_sessions s ON s.id = $2 AND s.user_id = u.id
            WHERE u.id = $1""",
        user_id, session_id,
    )


async def set_email(db: Db, user_id: uuid.UUID, email: str) -> None:
    """A new address is unproven until its own verification link is followed.
    Raises asyncpg.UniqueViolationError when the email is taken."""
    await db.execute("UPDATE users SET email = $2, email_verified_at = NULL WHERE id = $1", user_id, email)


async def email_taken(db: Db, email: str, except_user: uuid.UUID) -> bool:
    return await db.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1 AND id <> $2)", email, except_user)


async def anonymise_user(conn: asyncpg.Connection, user_id: uuid.UUID, placeholder_email: str) -> None:
    # '!' is never a bcrypt hash: no password can match it again.
    await conn.execute(
        """UPDATE users SET email = $2, password_hash = '!', status = 'deleted', role = 'user', last_login_at = NULL,
                            email_verified_at = NULL
            WHERE id = $1""",
        user_id, placeholder_email,
    )
    await conn.execute("DELETE FROM email_verification_tokens WHERE user_id = $1", user_id)


# --- email verification ----------------------------------------------------------

async def insert_verification_token(db: Db, user_id: uuid.UUID, email: str, token_hash: bytes, ttl: int) -> None:
    await db.execute(
        """INSERT INTO email_verification_tokens (user_id, email, token_hash, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
        user_id, email, token_hash, ttl,
    )


async def recent_verification_tokens(db: Db, user_id: uuid.UUID, seconds: int) -> int:
    return await db.fetchval(
        """SELECT count(*) FROM email_verification_tokens
            WHERE user_id = $1 AND created_at > now() - make_interval(secs => $2)""",
        user_id, seconds,
    )


async def claim_verification_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """Spends a live token whose address is still the account's; of two claims one wins."""
    return await conn.fetchrow(
        """UPDATE email_verification_tokens t SET used_at = now()
             FROM users u
            WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now()
              AND u.id = t.user_id AND u.email = t.email AND u.status <> 'deleted'
        RETURNING t.user_id, u.email::text AS email""",
        token_hash,
    )


async def mark_email_verified(db: Db, user_id: uuid.UUID) -> None:
    await db.execute(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1", user_id
    )


# --- device sessions -----------------------------------------------------------

async def insert_session(
    conn: asyncpg.Connection, user_id: uuid.UUID, name: str, user_agent: str | None, ip: str | None, ttl: int
) -> uuid.UUID:
    return await conn.fetchval(
        """INSERT INTO device_sessions (user_id, name, user_agent, ip, expires_at)
           VALUES ($1, $2, $3, $4::inet, now() + $5 * interval '1 second') RETURNING id""",
        user_id, name, user_agent, ip, ttl,
    )


async def lock_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    """The session and its owner's status, locked so a concurrent revocation waits for us (or we for it)."""
    return await conn.fetchrow(
        """SELECT s.id, s.user_id, s.revoked_at, u.status
             FROM device_sessions s JOIN users u ON u.id = s.user_id
            WHERE s.id = $1
              FOR UPDATE OF s""",
        session_id,
    )


async def touch_session(
    conn: asyncpg.Connection, session_id: uuid.UUID, user_agent: str | None, ip: str | None, ttl: int
) -> None:
    await conn.execute(
        """UPDATE device_sessions
              SET last_used_at = now(), user_agent = coalesce($2, user_agent), ip = coalesce($3::inet, ip),
                  expires_at = now() + $4 * interval '1 second'
            WHERE id = $1""",
        session_id, user_agent, ip, ttl,
    )


async def revoke_session(db: Db, session_id: uuid.UUID, reason: str, user_id: uuid.UUID | None = None) -> bool:
    """True when this call revoked it (it was live, and belongs to `user_id` when given)."""
    status = await db.execute(
        """UPDATE device_sessions SET revoked_at = now(), revoked_reason = $2
            WHERE id = $1 AND revoked_at IS NULL AND ($3::uuid IS NULL OR user_id = $3)""",
        session_id, reason, user_id,
    )
    return status != "UPDATE 0"


async def revoke_user_sessions(db: Db, user_id: uuid.UUID, reason: str) -> int:
    status = await db.execute(
        "UPDATE device_sessions SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        user_id, reason,
    )
    return int(status.split()[-1])


async def delete_user_sessions(db: Db, user_id: uuid.UUID) -> None:
    # Device rows hold IP addresses and user agents; their refresh tokens go with them (cascade).
    await db.execute("DELETE FROM device_sessions WHERE user_id = $1", user_id)


async def session_owner(db: Db, session_id: uuid.UUID) -> uuid.UUID | None:
    return await db.fetchval("SELECT user_id FROM device_sessions WHERE id = $1", session_id)


async def active_sessions(db: Db, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, name, user_agent, host(ip) AS ip, created_at, last_used_at, expires_at
             FROM device_sessions
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            ORDER BY last_used_at DESC, created_at DESC""",
        user_id,
    )


# --- refresh tokens ---------------------------------------------------------------

async def insert_refresh_token(conn: asyncpg.Connection, session_id: uuid.UUID, token_hash: bytes, ttl: int) -> None:
    await conn.execute(
        """INSERT INTO refresh_tokens (session_id, token_hash, expires_at)
           VALUES ($1, $2, now() + $3 * interval '1 second')""",
        session_id, token_hash, ttl,
    )


async def claim_refresh_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """Marks a live, unused token used and returns it. The condition is re-checked under the row
    lock, so of two concurrent claims of one token exactly one gets the row."""
    return await conn.fetchrow(
        """UPDATE refresh_tokens SET used_at = now()
            WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
        RETURNING id, session_id""",
        token_hash,
    )


async def refresh_token_state(db: Db, token_hash: bytes) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT session_id, used_at, expires_at FROM refresh_tokens WHERE token_hash = $1", token_hash
    )


async def delete_expired_refresh_tokens(db: Db) -> int:
    status = await db.execute("DELETE FROM refresh_tokens WHERE expires_at < now()")
    return int(status.split()[-1])
