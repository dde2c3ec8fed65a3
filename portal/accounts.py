"""Self-service data export and account deletion, composed from the domains that own the data.

Deletion keeps what the business must keep and nothing that identifies the person: the
users row stays (the append-only credit ledger and invoices point at it) but auth replaces its
email and password and removes its devices, generation removes its generations and audio files,
and the portal its own reset tokens and mail.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Protocol

import asyncpg

from portal import domains, repo
from server.audit import audit
from server.auth import service as auth
from server.generation import erasure as generation_erasure

log = logging.getLogger("portal.accounts")


class AudioFiles(Protocol):
    async def drop_file_if_unused(self, key: str) -> bool: ...


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
    data["generations"] = [
        {k: g.get(k) for k in EXPORTED_GENERATION_FIELDS} for g in await repo.generations_for_export(pool, user_id)
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


async def delete_account(pool: asyncpg.Pool, billing: Any, generation: AudioFiles | None, user_id: uuid.UUID) -> int:
    """Cancels billing first (a failure there stops the deletion: nobody should keep paying for a
    deleted account), then scrubs the person out in one transaction. Returns audio files removed."""
    if billing is not None:
        await billing.cancel_for_deleted_account(user_id)
    async with pool.acquire() as conn, conn.transaction():
        email = (await auth.get_account(conn, user_id)).email
        storage_keys = await generation_erasure.erase_user(conn, user_id)
        await repo.delete_personal_rows(conn, user_id, email)
        await auth.anonymise(conn, user_id)
        await audit(conn, user_id, "user.deleted", "user", user_id, {})
    removed = await generation_erasure.drop_files(generation, storage_keys) if generation is not None else 0
    log.info("account deleted", extra={"user_id": str(user_id), "audio_removed": removed})
    return removed
