"""Self-service account changes: email, password, data export and deletion.

Deletion keeps what the business must keep and nothing that identifies the person: the
users row stays (the append-only credit ledger and invoices point at it) but its email and
password are replaced, and devices, generations, audio files, reset tokens and mail are removed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Protocol

import asyncpg

from portal import domains, repo
from server.audit import audit
from server.auth import passwords as auth_passwords
from server.auth import service as auth
from server.settings import Settings
from server.web.errors import ValidationFailed

log = logging.getLogger("portal.accounts")


class WrongPassword(Exception):
    pass


class AudioDeleter(Protocol):
    async def delete(self, key: str) -> None: ...


async def check_password(pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, password: str) -> None:
    stored = await repo.password_hash(pool, user_id)
    if not await auth_passwords.check_password(password, stored, settings.bcrypt_cost):
        raise WrongPassword()


async def change_email(pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, new_email: str, password: str) -> tuple[str, str]:
    """Returns (old, new). Raises WrongPassword, PolicyViolation (bad address) or EmailTaken."""
    await check_password(pool, settings, user_id, password)
    email = auth.normalise_email(new_email, settings, strict=True)
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.user_row(conn, user_id)
        old = row["email"]
        if email == old:
            raise ValidationFailed("That is already your email", details={"field": "email"})
        if await repo.email_taken(conn, email, user_id):
            raise auth.EmailTaken("An account with this email already exists", details={"field": "email"})
        try:
            await repo.set_email(conn, user_id, email)
        except asyncpg.UniqueViolationError:
            raise auth.EmailTaken("An account with this email already exists", details={"field": "email"}) from None
        # No addresses in the audit trail: it outlives account deletion.
        await audit(conn, user_id, "user.email_changed", "user", user_id, {})
    return old, email


async def change_password(pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, current: str, new: str) -> None:
    """Policy-checked by auth, which also signs every panel device out."""
    await check_password(pool, settings, user_id, current)
    async with pool.acquire() as conn, conn.transaction():
        await auth.set_password(conn, settings, user_id, new)
        await audit(conn, user_id, "user.password_changed", "user", user_id, {})


# --- export ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Generation columns that describe the user's own work; the rest is plumbing (keys, holds, hashes).
EXPORTED_GENERATION_FIELDS = (
    "id", "kind", "status", "prompt", "text", "params", "variation", "format", "duration_seconds",
    "credits_charged", "failure_reason", "created_at", "completed_at",
)


async def export_data(pool: asyncpg.Pool, billing: Any, user_id: uuid.UUID) -> dict[str, Any]:
    """Everything we hold about the user, as plain JSON values. No hashes, tokens or key ids."""
    account = await repo.user_row(pool, user_id)
    summary = await domains.credit_summary(pool, user_id)
    data: dict[str, Any] = {
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "account": {k: account[k] for k in ("id", "email", "role", "status", "created_at", "last_login_at")},
        "plan": {"code": summary.plan.code, "name": summary.plan.name},
        "credits": {
            "allowance": summary.allowance, "used": summary.used, "reserved": summary.reserved,
            "remaining": summary.remaining, "unlimited": summary.unlimited,
            "period_start": summary.period_start, "period_end": summary.period_end,
        },
        "credit_ledger": [
            {"kind": e.kind, "amount": e.amount, "credits": e.credits, "balance_after": e.balance_after,
             "reason": e.reason, "created_at": e.created_at}
            for e in await domains.ledger(pool, user_id, limit=100_000)
        ],
        "devices": [
            {k: d[k] for k in ("name", "user_agent", "ip", "created_at", "last_used_at")}
            for d in await repo.devices_for_export(pool, user_id)
        ],
        "generations": [],
        "subscription": None,
        "invoices": [],
        "account_history": [
            {"action": r["action"], "details": r["details"], "created_at": r["created_at"]}
            for r in await repo.audit_about_user(pool, user_id)
        ],
    }
    if await repo.table_exists(pool, "generations"):
        data["generations"] = [
            {k: g.get(k) for k in EXPORTED_GENERATION_FIELDS}
            for g in await repo.generations_for_export(pool, user_id)
        ]
    if billing is not None:
        sub = await billing.subscription(user_id)
        if sub is not None:
            data["subscription"] = {
                "plan": sub.plan, "status": sub.status, "current_period_end": sub.current_period_end,
                "cancel_at_period_end": sub.cancel_at_period_end,
            }
        data["invoices"] = [
            {"number": i.number, "created": i.created, "amount_cents": i.amount_cents, "currency": i.currency, "status": i.status}
            for i in await billing.invoices(user_id)
        ]
    return _plain(data)


# --- deletion ------------------------------------------------------------------------------------


def anonymous_email(user_id: uuid.UUID) -> str:
    return f"deleted-{user_id.hex}@deleted.invalid"


async def delete_account(pool: asyncpg.Pool, billing: Any, storage: AudioDeleter | None, user_id: uuid.UUID) -> int:
    """Cancels billing first (a failure there stops the deletion: nobody should keep paying for a
    deleted account), then scrubs the person out in one transaction. Returns audio files removed."""
    if billing is not None:
        await billing.cancel_for_deleted_account(user_id)
    has_generations = await repo.table_exists(pool, "generations")
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.user_row(conn, user_id)
        storage_keys: list[str] = []
        if has_generations:
            storage_keys = await repo.delete_generations(conn, user_id)
        await repo.delete_devices(conn, user_id)
        await repo.delete_personal_rows(conn, user_id, row["email"])
        await repo.anonymise_user(conn, user_id, anonymous_email(user_id))
        await audit(conn, user_id, "user.deleted", "user", user_id, {})
    removed = 0
    if storage is not None:
        for key in storage_keys:
            # Content-addressed files may be shared by other users' identical results.
            if has_generations and await repo.storage_key_in_use(pool, key):
                continue
            try:
                await storage.delete(key)
                removed += 1
            except FileNotFoundError:
                pass
    log.info("account deleted", extra={"user_id": str(user_id), "audio_removed": removed})
    return removed
