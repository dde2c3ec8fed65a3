"""Deletions that survive an outage of the store.

Retention and account deletion first hide or remove the rows that refer to a blob, then delete
the blob. When the bucket is down at that moment, the blob would stay for ever: nothing refers to
it any more. `DurableDeletes` wraps the backend: such a deletion is written to Postgres
(`storage_deletions`) and retried in the background by every server process until the store
answers, unless something refers to the blob again by then (content addressing: the same audio
may be generated anew). Domains that keep blob keys register a reference check for that.
"""

from __future__ import annotations

import logging
from typing import AsyncIterator, Awaitable, Callable

import asyncpg

from server.storage import repo
from server.storage.service import BlobStorage, ObjectInfo, StorageUnavailable

log = logging.getLogger("server.storage")

RETRY_INTERVAL = 30.0
BATCH = 100

ReferenceCheck = Callable[[str], Awaitable[bool]]


class DurableDeletes:
    def __init__(self, backend: BlobStorage, pool: asyncpg.Pool) -> None:
        self.backend = backend
        self.pool = pool
        self.references: list[ReferenceCheck] = []

    def __repr__(self) -> str:
        return f"DurableDeletes({self.backend!r})"

    async def delete(self, key: str) -> bool:
        """True when a blob was removed now; False when there was none, or when the store is down
        and the deletion was recorded to be carried out later."""
        try:
            return await self.backend.delete(key)
        except StorageUnavailable:
            await repo.defer(self.pool, [key])
            log.warning("blob deletion deferred until the store answers", extra={"key": key})
            return False

    async def retry_deferred(self) -> int:
        """One pass over the due deletions; returns how many blobs were removed."""
        removed = 0
        for key in await repo.claim_due(self.pool, limit=BATCH, retry_in=RETRY_INTERVAL):
            if await self._referenced(key):
                await repo.forget(self.pool, key)
                continue
            try:
                if await self.backend.delete(key):
                    removed += 1
            except StorageUnavailable:
                return removed  # still down: the claimed keys come due again later
            await repo.forget(self.pool, key)
        return removed

    async def _referenced(self, key: str) -> bool:
        for check in self.references:
            if await check(key):
                return True
        return False

    # --- the rest of the interface, unchanged -------------------------------------------------

    async def put(self, data: bytes, ext: str, *, key: str | None = None) -> str:
        return await self.backend.put(data, ext, key=key)

    def put_blocking(self, data: bytes, ext: str) -> str | None:
        return self.backend.put_blocking(data, ext)

    async def read(self, key: str) -> bytes:
        return await self.backend.read(key)

    async def exists(self, key: str) -> bool:
        return await self.backend.exists(key)

    async def size(self, key: str) -> int:
        return await self.backend.size(key)

    async def stat(self, key: str) -> ObjectInfo:
        return await self.backend.stat(key)

    def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.backend.stream(key, start, end)

    def iter_keys(self, *, older_than: float | None = None) -> AsyncIterator[str]:
        return self.backend.iter_keys(older_than=older_than)

    async def presign(self, key: str, *, expires_in: float) -> str | None:
        return await self.backend.presign(key, expires_in=expires_in)

    async def aclose(self) -> None:
        await self.backend.aclose()

    def __getattr__(self, name: str):
        # What only one backend has (LocalStorage.path and .root, S3Storage.bucket), for tests and tools.
        return getattr(self.backend, name)
