"""SQL of the releases domain (releases, update_manifests, panel_min_versions)."""

from __future__ import annotations

from typing import Any

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection

_COLUMNS = """id, product, channel, version, storage_key, filename, sha256, size, notes_md, notes_html,
              min_host_version, rollout_percent, rollout_salt, dev_build, signed, published_at, published_by,
              published_by_label, yanked_at, downloads"""


async def all_releases(db: Db, product: str | None = None) -> list[asyncpg.Record]:
    """Every release, yanked included (a handful per product; callers order by version)."""
    return await db.fetch(
        f"SELECT {_COLUMNS} FROM releases WHERE ($1::text IS NULL OR product = $1) ORDER BY published_at DESC, id DESC",
        product,
    )


async def get(db: Db, product: str, version: str) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {_COLUMNS} FROM releases WHERE product = $1 AND version = $2", product, version)


async def lock_channel(conn: asyncpg.Connection, product: str, channel: str) -> None:
    """Serialises changes to one manifest: two publishes cannot both pass the 'higher than latest' check."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('releases:' || $1 || ':' || $2))", product, channel)


async def insert(conn: asyncpg.Connection, row: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO releases (product, channel, version, storage_key, filename, sha256, size, notes_md, notes_html,
                                  min_host_version, rollout_percent, rollout_salt, dev_build, signed, published_by,
                                  published_by_label)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            RETURNING {_COLUMNS}""",
        row["product"], row["channel"], row["version"], row["storage_key"], row["filename"], row["sha256"], row["size"],
        row["notes_md"], row["notes_html"], row["min_host_version"], row["rollout_percent"], row["rollout_salt"],
        row["dev_build"], row["signed"], row["published_by"], row["published_by_label"],
    )


async def set_rollout(conn: asyncpg.Connection, release_id: int, percent: int) -> None:
    await conn.execute("UPDATE releases SET rollout_percent = $2 WHERE id = $1", release_id, percent)


async def set_yanked(conn: asyncpg.Connection, release_id: int) -> None:
    await conn.execute("UPDATE releases SET yanked_at = now() WHERE id = $1 AND yanked_at IS NULL", release_id)


async def bump_serial(conn: asyncpg.Connection, product: str, channel: str) -> int:
    return await conn.fetchval(
        """INSERT INTO update_manifests (product, channel, serial) VALUES ($1, $2, 1)
           ON CONFLICT (product, channel) DO UPDATE SET serial = update_manifests.serial + 1, changed_at = now()
           RETURNING serial""",
        product, channel,
    )


async def manifest_states(db: Db) -> list[asyncpg.Record]:
    return await db.fetch("SELECT product, channel, serial, changed_at FROM update_manifests")


async def min_versions(db: Db) -> dict[str, str]:
    return {r["product"]: r["min_version"] for r in await db.fetch("SELECT product, min_version FROM panel_min_versions")}


async def set_min_version(conn: asyncpg.Connection, product: str, version: str) -> None:
    await conn.execute(
        """INSERT INTO panel_min_versions (product, min_version) VALUES ($1, $2)
           ON CONFLICT (product) DO UPDATE SET min_version = EXCLUDED.min_version, changed_at = now()""",
        product, version,
    )


async def count_download(db: Db, release_id: int) -> None:
    await db.execute("UPDATE releases SET downloads = downloads + 1 WHERE id = $1", release_id)
