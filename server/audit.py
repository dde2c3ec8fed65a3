"""The audit log: who did what to which object, and when.

Admin actions (and other security-relevant changes) call `audit(...)` with the same
connection as the change itself, so the record and the change commit or roll back together.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class AuditEntry:
    id: int
    actor_id: uuid.UUID | None
    actor_email: str | None
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any]
    created_at: datetime


async def audit(
    conn_or_pool: Executor,
    actor_id: uuid.UUID | None,
    action: str,
    object_type: str,
    object_id: object | None,
    details: dict[str, Any] | None = None,
) -> int:
    """Record one action; returns the entry id."""
    return await conn_or_pool.fetchval(
        """INSERT INTO audit_log (actor_id, action, object_type, object_id, details)
           VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id""",
        actor_id,
        action,
        object_type,
        None if object_id is None else str(object_id),
        json.dumps(details or {}, default=str),
    )


async def entries(
    conn_or_pool: Executor,
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    """Newest first; every filter is optional. `actor` matches an email fragment or an exact id."""
    rows = await conn_or_pool.fetch(
        """SELECT a.id, a.actor_id, u.email::text AS actor_email, a.action, a.object_type, a.object_id,
                  a.details, a.created_at
             FROM audit_log a
             LEFT JOIN users u ON u.id = a.actor_id
            WHERE ($1::text IS NULL OR a.actor_id::text = $1 OR u.email ILIKE '%' || $1 || '%')
              AND ($2::text IS NULL OR a.action ILIKE $2 || '%')
              AND ($3::text IS NULL OR a.object_type = $3)
              AND ($4::text IS NULL OR a.object_id = $4)
              AND ($5::bigint IS NULL OR a.id < $5)
            ORDER BY a.id DESC
            LIMIT $6""",
        actor or None,
        action or None,
        object_type or None,
        object_id or None,
        before_id,
        limit,
    )
    return [
        AuditEntry(
            id=r["id"],
            actor_id=r["actor_id"],
            actor_email=r["actor_email"],
            action=r["action"],
            object_type=r["object_type"],
            object_id=r["object_id"],
            details=json.loads(r["details"]) if isinstance(r["details"], str) else dict(r["details"]),
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def object_types(conn_or_pool: Executor) -> list[str]:
    rows = await conn_or_pool.fetch("SELECT DISTINCT object_type FROM audit_log ORDER BY object_type")
    return [r["object_type"] for r in rows]


# Readable names of the objects entries refer to: (table, id column, id type, name expression).
NAMED_OBJECTS = {
    "user": ("users", "id", "uuid", "email::text"),
    "provider_key": ("provider_keys", "id", "bigint", "label"),
    "release": ("releases", "id", "text", "version::text"),
    "mail": ("mail_outbox", "id", "bigint", "subject"),
}
# What an entry's own details call its object, for objects deleted since (a removed key, a release).
NAME_DETAILS = ("label", "version", "email", "subject")


async def object_names(conn_or_pool: Executor, entries: list[AuditEntry]) -> dict[tuple[str, str], str]:
    """(object_type, object_id) -> a human name (email, key label, release version, mail subject)."""
    names: dict[tuple[str, str], str] = {}
    for e in entries:
        if e.object_id is not None:
            fallback = next((str(e.details[k]) for k in NAME_DETAILS if e.details.get(k)), None)
            if fallback:
                names[(e.object_type, e.object_id)] = fallback
    for object_type, (table, column, id_type, name) in NAMED_OBJECTS.items():
        ids = sorted({e.object_id for e in entries if e.object_type == object_type and e.object_id})
        if not ids:
            continue
        try:
            rows = await conn_or_pool.fetch(
                f"SELECT {column}::text AS id, {name} AS name FROM {table} WHERE {column}::text = ANY($1::text[])", ids
            )
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            continue  # a domain not installed here (releases): the details' names stand
        names.update({(object_type, r["id"]): r["name"] for r in rows if r["name"]})
    return names
