"""Publishing, rollout, yanking and the oldest supported panel, with the manifests kept in memory.

Every change runs in one transaction with its audit record and bumps the serial of the product's
manifests; after the commit this process rebuilds its manifests and tells the other workers over
Redis pub/sub. A worker that missed the message (Redis restarted) notices the change on its next
cheap poll of the serials, and every worker re-signs on a fixed schedule before manifests expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from server.audit import audit
from server.releases import notes, packages, repo
from server.releases.manifest import CHANNELS, PRODUCTS, Built, Release, build_all, latest_for, next_resign, resign_period
from server.releases.signing import SigningKey, load_keys
from server.releases.versions import InvalidVersion, Version
from server.settings import Settings
from server.storage import AudioStorage
from server.web.errors import ApiError, Conflict, NotFound, PayloadTooLarge, ValidationFailed

log = logging.getLogger("server.releases")

RELEASES = web.AppKey("releases", "ReleaseService")
# Seconds between the cheap serial checks that back up pub/sub.
POLL_INTERVAL = 30.0
_HOST_VERSION = re.compile(r"\d{1,3}(\.\d{1,3}){0,2}")


@dataclass(frozen=True)
class Actor:
    """Who made a change: an admin's account, or an operator's label on the CLI."""

    id: uuid.UUID | None
    label: str


def _invalid(field: str, message: str, code: str = "validation_failed") -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"fields": [{"field": field, "message": message}]})


class ReleaseService:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, storage: AudioStorage,
                 keys: list[SigningKey] | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.storage = storage
        self.keys = keys if keys is not None else load_keys(settings.update_signing_key)
        self.channel_name = settings.rkey("releases", "changed")
        self._manifests: dict[tuple[str, str], Built] = {}
        self._floors: dict[str, Version] = {}
        self._download_urls: dict[str, str] = {}
        self._fingerprint: tuple | None = None
        self._wake = asyncio.Event()
        # One rebuild at a time: a background rebuild that read the tables before a change commits
        # must not finish after the change's own rebuild and put the older manifests back.
        self._rebuilding = asyncio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, storage: AudioStorage) -> AsyncIterator["ReleaseService"]:
        """A service with its own pool and Redis client, for the CLI and dev tools."""
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        redis = aioredis.from_url(settings.redis_url, decode_responses=True)
        try:
            yield cls(settings, pool, redis, storage)
        finally:
            await redis.aclose()
            await pool.close()
            await storage.aclose()

    # --- reading (from memory: no database round trip per request) -----------------------------

    def manifest(self, product: str, channel: str) -> Built | None:
        return self._manifests.get((product, channel))

    def min_supported(self, product: str) -> Version | None:
        return self._floors.get(product)

    def download_url(self, product: str) -> str:
        """The latest stable package of a product, else the Downloads page."""
        return self._download_urls.get(product) or self.settings.public_url.rstrip("/") + "/downloads"

    def panel_outdated(self, product: str, version: str) -> dict | None:
        """None when this panel may use the API, else the 426 details (ValueError for nonsense headers)."""
        if product not in PRODUCTS:
            raise ValueError(f"X-Panel-Product must be one of {', '.join(PRODUCTS)}")
        try:
            running = Version.parse(version)
        except InvalidVersion:
            raise ValueError("X-Panel-Version must be a version like 1.4.0") from None
        floor = self._floors.get(product)
        if floor is None or running >= floor:
            return None
        return {"product": product, "version": str(running), "min_supported_version": str(floor),
                "download_url": self.download_url(product),
                "downloads_page": self.settings.public_url.rstrip("/") + "/downloads"}

    async def list(self, product: str | None = None) -> list[Release]:
        rows = [Release.from_row(r) for r in await repo.all_releases(self.pool, product)]
        return sorted(rows, key=lambda r: (r.product, r.parsed), reverse=True)

    async def get(self, product: str, version: str) -> Release:
        row = await repo.get(self.pool, product, version) if product in PRODUCTS else None
        if row is None:
            raise NotFound(f"No release {version} of the {product} panel", code="release_not_found")
        return Release.from_row(row)

    async def min_versions(self) -> dict[str, str]:
        return await repo.min_versions(self.pool)

    async def count_download(self, release: Release) -> None:
        await repo.count_download(self.pool, release.id)

    # --- building ------------------------------------------------------------------------------

    async def refresh(self, *, now: datetime | None = None) -> None:
        """Rebuild every manifest from the database (a change, a missed message, or time to re-sign)."""
        async with self._rebuilding:
            await self._rebuild(now)

    async def _rebuild(self, now: datetime | None) -> None:
        async with self.pool.acquire() as conn:
            releases = [Release.from_row(r) for r in await repo.all_releases(conn)]
            states = await repo.manifest_states(conn)
            floors = await repo.min_versions(conn)
        serials = {(s["product"], s["channel"]): (s["serial"], s["changed_at"]) for s in states}
        settings = self.settings
        self._manifests = build_all(
            releases, serials, floors, self.keys, now=now or datetime.now(timezone.utc),
            ttl=settings.update_manifest_ttl, max_age=settings.update_manifest_max_age, public_url=settings.public_url,
        )
        self._floors = {p: Version.parse(v) for p, v in floors.items()}
        base = settings.public_url.rstrip("/")
        self._download_urls = {
            p: base + latest.download_path for p in PRODUCTS if (latest := latest_for(releases, p, "stable")) is not None
        }
        self._fingerprint = _fingerprint(states, floors)

    async def changed(self) -> None:
        """After a commit: rebuild here at once, then tell the other workers."""
        await self.refresh()
        try:
            await self.redis.publish(self.channel_name, "changed")
        except Exception:
            log.warning("release change not broadcast; other workers pick it up on their next poll", exc_info=True)

    async def run_upkeep(self) -> None:
        """Background: listen for changes, poll the serials as a backstop, re-sign on schedule."""
        listener = asyncio.create_task(self._listen(), name="releases-listener")
        try:
            while True:
                now = datetime.now(timezone.utc)
                wait = min(POLL_INTERVAL, (next_resign(now, resign_period(self.settings.update_manifest_ttl)) - now).total_seconds())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))
                woken, self._wake = self._wake.is_set(), asyncio.Event()
                try:
                    if woken or datetime.now(timezone.utc) >= next_resign(now, resign_period(self.settings.update_manifest_ttl)):
                        await self.refresh()
                    else:
                        await self._refresh_if_changed()
                except Exception:
                    log.warning("update manifests not refreshed; serving the last ones", exc_info=True)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _refresh_if_changed(self) -> None:
        async with self.pool.acquire() as conn:
            fingerprint = _fingerprint(await repo.manifest_states(conn), await repo.min_versions(conn))
        if fingerprint != self._fingerprint:
            await self.refresh()

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.channel_name)
                    async for _message in pubsub.listen():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("release change listener lost Redis; retrying", exc_info=True)
                await asyncio.sleep(2)

    # --- changes ---------------------------------------------------------------------------------

    async def publish(
        self, data: bytes, *, product: str, channel: str, version: str, actor: Actor, notes_md: str = "",
        rollout: int = 100, min_host: str | None = None, dev_build: bool = False,
    ) -> Release:
        if product not in PRODUCTS:
            raise _invalid("product", f"product must be one of {', '.join(PRODUCTS)}")
        if channel not in CHANNELS:
            raise _invalid("channel", f"channel must be one of {', '.join(CHANNELS)}")
        try:
            wanted = Version.parse(version)
        except InvalidVersion as exc:
            raise _invalid("version", str(exc)) from None
        if not 0 <= rollout <= 100:
            raise _invalid("rollout", "rollout must be a percentage from 0 to 100")
        if min_host is not None and not _HOST_VERSION.fullmatch(min_host):
            raise _invalid("min_host", "min host must be a Premiere version like 23.0 or 25.6.0")
        cap = self.settings.release_max_bytes
        if len(data) > cap:
            raise PayloadTooLarge(f"The package is {len(data)} bytes; the limit is {cap} (RELEASE_MAX_BYTES)",
                                  code="package_too_large", details={"limit": cap, "size": len(data)})
        try:
            # Unzipping and hashing a large package take a while: off the event loop.
            info = await asyncio.to_thread(packages.inspect, data, product)
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        except packages.PackageRefused as exc:
            raise _invalid("file", f"The package was refused: {exc}", code="invalid_package") from None
        if info.version != str(wanted):
            raise _invalid("version", f"The package says it is version {info.version or '(none)'}, not {wanted}",
                           code="version_mismatch")

        extension = packages.EXTENSIONS[product]
        notes_html = notes.render(notes_md)
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.lock_channel(conn, product, channel)
            existing = [Release.from_row(r) for r in await repo.all_releases(conn, product)]
            if any(r.version == str(wanted) for r in existing):
                raise Conflict(f"Version {wanted} of the {product} panel is already published", code="version_exists")
            newest = max((r for r in existing if r.channel == channel), key=lambda r: r.parsed, default=None)
            if newest is not None and not wanted > newest.parsed:
                raise Conflict(
                    f"Version {wanted} is not higher than {newest.version}, the {channel} channel's latest",
                    code="version_not_higher", details={"latest": newest.version},
                )
            # Stored only once accepted (a refused upload leaves no file); content addressed, so a
            # rollback after this point leaves at most one unreferenced copy.
            key = await self.storage.put(data, extension)
            row = await repo.insert(conn, {
                "product": product, "channel": channel, "version": str(wanted), "storage_key": key,
                "filename": f"sfx-studio-{product}-{wanted}{'-dev' if dev_build else ''}.{extension}",
                "sha256": digest, "size": len(data), "notes_md": notes_md, "notes_html": notes_html,
                "min_host_version": min_host, "rollout_percent": rollout, "rollout_salt": secrets.token_hex(8),
                "dev_build": dev_build, "signed": info.signed, "published_by": actor.id, "published_by_label": actor.label,
            })
            await self._bump(conn, product)
            await audit(conn, actor.id, "release.published", "release", f"{product}/{wanted}",
                        {"channel": channel, "sha256": row["sha256"], "size": row["size"], "rollout": rollout,
                         "dev_build": dev_build, "by": actor.label})
        await self.changed()
        return Release.from_row(row)

    async def set_rollout(self, product: str, version: str, percent: int, *, actor: Actor) -> Release:
        if not 0 <= percent <= 100:
            raise _invalid("percent", "rollout must be a percentage from 0 to 100")
        release = await self.get(product, version)
        if release.yanked_at is not None:
            raise Conflict(f"{version} was yanked; publish a new version instead", code="release_yanked")
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.set_rollout(conn, release.id, percent)
            await self._bump(conn, product)
            await audit(conn, actor.id, "release.rollout_changed", "release", f"{product}/{version}",
                        {"from": release.rollout_percent, "to": percent, "by": actor.label})
        await self.changed()
        return await self.get(product, version)

    async def yank(self, product: str, version: str, *, actor: Actor) -> Release:
        release = await self.get(product, version)
        if release.yanked_at is not None:
            return release
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.set_yanked(conn, release.id)
            await self._bump(conn, product)
            await audit(conn, actor.id, "release.yanked", "release", f"{product}/{version}", {"by": actor.label})
        await self.changed()
        return await self.get(product, version)

    async def set_min_supported(self, product: str, version: str, *, actor: Actor) -> None:
        if product not in PRODUCTS:
            raise _invalid("product", f"product must be one of {', '.join(PRODUCTS)}")
        try:
            floor = Version.parse(version)
        except InvalidVersion as exc:
            raise _invalid("version", str(exc)) from None
        live = [r for r in await self.list(product) if r.yanked_at is None and r.channel == "stable"]
        if not any(r.parsed >= floor for r in live):
            # Panels below the floor are refused: there must be something they can upgrade to.
            raise Conflict(f"No live stable release of the {product} panel is {floor} or newer; publish one first",
                           code="no_release_at_minimum")
        async with self.pool.acquire() as conn, conn.transaction():
            before = (await repo.min_versions(conn)).get(product)
            await repo.set_min_version(conn, product, str(floor))
            await self._bump(conn, product)
            await audit(conn, actor.id, "release.min_supported_changed", "product", product,
                        {"from": before, "to": str(floor), "by": actor.label})
        await self.changed()

    @staticmethod
    async def _bump(conn: asyncpg.Connection, product: str) -> None:
        # Beta manifests also offer stable releases, so every change touches both channels.
        for channel in CHANNELS:
            await repo.bump_serial(conn, product, channel)


def _fingerprint(states, floors: dict[str, str]) -> tuple:
    return (tuple(sorted((s["product"], s["channel"], s["serial"]) for s in states)), tuple(sorted(floors.items())))
