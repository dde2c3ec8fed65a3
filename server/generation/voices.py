"""The voices the panel may pick, merged over every active key, and which keys own each voice.

Cloned and designed voices exist only in the ElevenLabs account that made them, so each voice
remembers the ids of the keys that listed it, and a voice-over for it is sent to one of those.
The merged list lives in Redis under a name derived from the set of active key ids: adding,
removing or disabling a key changes the name, so a stale list is never served for a new set.
Every worker refreshes it periodically; a Redis lock keeps that to one worker at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from server.keybank import KeyBank
from server.providers.elevenlabs import Upstream
from server.settings import Settings

log = logging.getLogger("server.generation.voices")

PROVIDER = "elevenlabs"
FETCH_CONCURRENCY = 4
FETCH_TIMEOUT = 20.0
# A worker keeps the parsed list this long while the key bank's revision stays the same: listing
# the keys from Postgres and parsing the JSON from Redis on every voice-over cost more than the
# rest of the lookup. A key change moves the revision, so it is seen at the next request.
MEMO_SECONDS = 10.0


@dataclass(frozen=True)
class Catalog:
    voices: list[dict[str, Any]]  # each with "key_ids"
    fetched_at: float
    complete: bool  # every active key answered

    def owners(self, voice_id: str) -> set[int] | None:
        for voice in self.voices:
            if voice["voice_id"] == voice_id:
                return set(voice["key_ids"])
        return None


class VoiceCatalog:
    def __init__(self, settings: Settings, redis: aioredis.Redis, keybank: KeyBank, upstream: Upstream) -> None:
        self.settings = settings
        self.redis = redis
        self.keybank = keybank
        self.upstream = upstream
        self._refreshing = asyncio.Lock()
        self._memo: tuple[int, float, Catalog] | None = None  # (key bank revision, when, list)

    async def get(self) -> Catalog:
        """The cached list for the current key set, fetched now when there is none."""
        revision = await self.keybank.revision(PROVIDER)
        memo = self._memo
        if memo is not None and memo[0] == revision and time.monotonic() - memo[1] < MEMO_SECONDS:
            return memo[2]
        key_ids = await self._active_key_ids()
        catalog = await self._read(key_ids)
        if catalog is None:
            catalog = await self.refresh(key_ids)
        if revision is not None:
            self._memo = (revision, time.monotonic(), catalog)
        return catalog

    async def owners(self, voice_id: str) -> tuple[set[int] | None, Catalog]:
        """Key ids that may voice `voice_id` (None when no key is known to own it), and the list asked.

        A voice missing from a list older than a minute triggers one refresh (it may be new)."""
        catalog = await self.get()
        found = catalog.owners(voice_id)
        if found is None and time.time() - catalog.fetched_at > 60:
            catalog = await self.refresh(await self._active_key_ids())
            found = catalog.owners(voice_id)
        return found, catalog

    async def refresh(self, key_ids: list[int] | None = None) -> Catalog:
        async with self._refreshing:
            key_ids = key_ids if key_ids is not None else await self._active_key_ids()
            cached = await self._read(key_ids)
            # Another caller in this process refreshed while we waited for the lock.
            if cached is not None and time.time() - cached.fetched_at < 5:
                return cached
            catalog = await self._fetch(key_ids)
            await self._write(key_ids, catalog)
            self._memo = None
            return catalog

    async def refresh_if_leader(self) -> bool:
        """The periodic refresh: only the worker holding the lock does it."""
        lock = self.settings.rkey("voices", "lock")
        token = uuid.uuid4().hex
        if not await self.redis.set(lock, token, nx=True, ex=max(30, int(FETCH_TIMEOUT * 3))):
            return False
        try:
            await self.refresh()
            return True
        finally:
            if await self.redis.get(lock) == token:
                await self.redis.delete(lock)

    # --- internals -------------------------------------------------------------------------

    async def _active_key_ids(self) -> list[int]:
        return sorted(k.id for k in await self.keybank.active_keys(PROVIDER))

    def _cache_key(self, key_ids: list[int]) -> str:
        tag = hashlib.sha256(",".join(map(str, key_ids)).encode()).hexdigest()[:16]
        return self.settings.rkey("voices", PROVIDER, tag)

    async def _read(self, key_ids: list[int]) -> Catalog | None:
        raw = await self.redis.get(self._cache_key(key_ids))
        if raw is None:
            return None
        data = json.loads(raw)
        return Catalog(data["voices"], data["fetched_at"], data["complete"])

    async def _write(self, key_ids: list[int], catalog: Catalog) -> None:
        # An incomplete list is kept briefly so a key that was down is asked again soon.
        ttl = int(self.settings.voices_refresh_interval * 2) if catalog.complete else 60
        payload = {"voices": catalog.voices, "fetched_at": catalog.fetched_at, "complete": catalog.complete}
        await self.redis.set(self._cache_key(key_ids), json.dumps(payload), ex=max(ttl, 10))

    async def _fetch(self, key_ids: list[int]) -> Catalog:
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(key_id: int) -> tuple[int, list[dict[str, Any]] | None]:
            async with gate:
                try:
                    secret = await self.keybank.secret_for(key_id)
                    async with asyncio.timeout(FETCH_TIMEOUT):
                        return key_id, await self.upstream.voices(secret)
                except Exception as exc:
                    failure = self.keybank.providers.classify(PROVIDER, exc)
                    log.warning(
                        "voice list unavailable for a key",
                        extra={"key_id": key_id, "failure": failure.describe() if failure else type(exc).__name__},
                    )
                    return key_id, None

        results = await asyncio.gather(*(one(k) for k in key_ids))
        merged: dict[str, dict[str, Any]] = {}
        for key_id, voices in results:
            for voice in voices or ():
                entry = merged.setdefault(voice["voice_id"], {**voice, "key_ids": []})
                entry["key_ids"].append(key_id)
        ordered = sorted(merged.values(), key=lambda v: (v.get("category") == "premade", v["name"].lower()))
        complete = all(voices is not None for _, voices in results)
        return Catalog(ordered, time.time(), complete)
