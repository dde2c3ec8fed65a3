"""Blobs in an S3-compatible bucket (AWS S3, Cloudflare R2, Backblaze B2, MinIO, Ceph), through obstore.

Layout: `<prefix>/ab/cd/<key>`, the same fan-out as the local folder, so a folder copied into
the bucket as it is serves at once. An S3 PUT is atomic: an object is either absent or whole,
never half-written, so no temporary name is needed. Reads are ranged GETs handed over chunk by
chunk as they arrive. Every call is bounded by STORAGE_TIMEOUT (obstore retries connection
errors and 5xx inside it); past it the caller gets StorageUnavailable, a 503.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from datetime import timedelta
from typing import Any, AsyncIterator, Awaitable, TypeVar
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from server.storage.service import (
    CHUNK,
    KEY_PATTERN,
    AudioNotFound,
    ObjectInfo,
    StorageUnavailable,
    key_for,
    validate_key,
)

log = logging.getLogger("server.storage")

T = TypeVar("T")

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "zip": "application/zip", "zxp": "application/zip",
                 "json": "application/json"}


class S3Storage:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.timeout = timeout
        config: dict[str, Any] = {"region": region}
        if endpoint:
            config["endpoint"] = endpoint
        if access_key_id:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        self._store: S3Store | None = S3Store(
            bucket,
            prefix=self.prefix or None,
            config=config,
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": timedelta(seconds=min(timeout, 5.0)),
                "timeout": timedelta(seconds=timeout),
            },
            # Retries (connection errors, 5xx) stay inside the caller's bound, so an outage is
            # answered as one in about STORAGE_TIMEOUT, not after obstore's default 3 minutes.
            retry_config={
                "max_retries": 3,
                "retry_timeout": timedelta(seconds=timeout),
                "backoff": {"init_backoff": timedelta(milliseconds=50), "max_backoff": timedelta(seconds=1)},
            },
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "S3Storage":
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("an S3 storage URL looks like s3://bucket/prefix")
        return cls(parts.netloc, prefix=parts.path, **kwargs)

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def store(self) -> S3Store:
        if self._store is None:
            raise RuntimeError("the storage was closed")
        return self._store

    @staticmethod
    def location(key: str) -> str:
        validate_key(key)
        return f"{key[:2]}/{key[2:4]}/{key}"

    # --- the interface ------------------------------------------------------------------

    async def put(self, data: bytes, ext: str, *, key: str | None = None) -> str:
        if key is None:
            # Hashing a long clip takes milliseconds: off the event loop.
            key = await asyncio.get_running_loop().run_in_executor(None, key_for, data, ext)
        validate_key(key)
        content_type = CONTENT_TYPES.get(key.rsplit(".", 1)[1], "application/octet-stream")
        # Same key, same bytes: a second put just refreshes the object's time, which a sweep's
        # `older_than` grace then counts from, as with the local folder.
        await self._call("put", obstore.put_async(
            self.store, self.location(key), data, attributes={"Content-Type": content_type},
        ))
        return key

    def put_blocking(self, data: bytes, ext: str) -> None:
        return None  # uploads are asynchronous: see put()

    async def read(self, key: str) -> bytes:
        result = await self._call("read", obstore.get_async(self.store, self.location(key)), key)
        return bytes(await self._call("read", result.bytes_async(), key))

    async def delete(self, key: str) -> bool:
        """True when an object was there; deleting a missing key is not an error (S3 says so too)."""
        location = self.location(key)
        try:
            await self._call("delete", obstore.head_async(self.store, location), key)
        except AudioNotFound:
            return False
        await self._call("delete", obstore.delete_async(self.store, location), key)
        return True

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except AudioNotFound:
            return False
        return True

    async def size(self, key: str) -> int:
        return (await self.stat(key)).size

    async def stat(self, key: str) -> ObjectInfo:
        meta = await self._call("stat", obstore.head_async(self.store, self.location(key)), key)
        return ObjectInfo(key, int(meta["size"]), meta["last_modified"].timestamp())

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) as they arrive: one ranged GET, never the whole object in memory."""
        location = self.location(key)
        if end is not None and end <= start:
            return
        options: dict[str, Any] = {}
        if end is not None:
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        result = await self._call("read", obstore.get_async(self.store, location, options=options), key)
        chunks = result.stream(min_chunk_size=CHUNK)
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise StorageUnavailable("read") from exc
            yield bytes(chunk)

    async def iter_keys(self, *, older_than: float | None = None) -> AsyncIterator[str]:
        cutoff = time.time() - older_than if older_than is not None else None
        batches = obstore.list(self.store, chunk_size=1000)
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    batch = await batches.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise StorageUnavailable("list") from exc
            for meta in batch:
                name = meta["path"].rsplit("/", 1)[-1]
                if not KEY_PATTERN.fullmatch(name):
                    continue
                if cutoff is not None and meta["last_modified"].timestamp() > cutoff:
                    continue
                yield name

    async def presign(self, key: str, *, expires_in: float) -> str | None:
        """A short-lived GET URL for this one object, signed locally (no request to the store)."""
        return await self._call("presign", obstore.sign_async(
            self.store, "GET", self.location(key), timedelta(seconds=max(1, int(expires_in))),
        ))

    async def aclose(self) -> None:
        # obstore runs its HTTP client on a Tokio runtime of its own. Dropping the store and
        # giving that runtime a moment to close its pooled connections before the interpreter
        # exits avoids an abort at exit (SIGABRT) seen when connections were still being torn down.
        self._store = None
        gc.collect()
        await asyncio.sleep(0.05)

    # --- errors ---------------------------------------------------------------------------

    async def _call(self, operation: str, awaitable: Awaitable[T], key: str | None = None) -> T:
        try:
            async with asyncio.timeout(self.timeout + 1):
                return await awaitable
        except (NotFoundError, FileNotFoundError):
            raise AudioNotFound(key or operation) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Connection refused, timeouts, 5xx after retries, bad credentials: the caller answers 503.
            # The message names the operation only; obstore's text can carry the endpoint and bucket.
            log.warning("storage call failed", extra={"operation": operation, "error": type(exc).__name__})
            raise StorageUnavailable(operation) from exc
