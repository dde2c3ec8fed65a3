"""Storage of blobs (generated audio, panel packages) behind one small interface, content addressed.

`setup(app)` opens the backend STORAGE_URL names at `app[STORAGE]`: a local folder (the default)
or an S3-compatible bucket that every server shares; deletions the store cannot carry out during
an outage are kept in Postgres and retried (deletions.py). Domains that keep blob keys add a
reference check to `app[STORAGE].references` so a retried deletion spares a blob in use again. `serve_object` (server/storage/http.py)
answers a download from it with Range support, streamed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import unquote, urlsplit

from aiohttp import web

from server.settings import Settings
from server.storage.deletions import DurableDeletes
from server.storage.service import (
    AudioNotFound,
    AudioStorage,
    BlobStorage,
    InvalidKey,
    LocalStorage,
    ObjectInfo,
    ObjectNotFound,
    StorageUnavailable,
    key_for,
    validate_key,
)

__all__ = [
    "STORAGE", "AudioNotFound", "AudioStorage", "BlobStorage", "DurableDeletes", "InvalidKey", "LocalStorage", "ObjectInfo",
    "ObjectNotFound", "StorageUnavailable", "key_for", "open_storage", "setup", "validate_key",
]

STORAGE = web.AppKey("storage", DurableDeletes)


def open_storage(settings: Settings, namespace: str = "audio") -> BlobStorage:
    """The backend STORAGE_URL names, for one kind of blob: `namespace` is the folder (or key
    prefix) under the storage root, "audio" for generated audio, "packages" for panel releases.
    Empty STORAGE_URL: DATA_DIR/<namespace>; file:///root: /root/<namespace>; s3://bucket/prefix:
    objects under prefix/<namespace>/ in the bucket."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", namespace):
        raise ValueError("a storage namespace is a short lower-case name")
    url = settings.storage_url.strip()
    if url.startswith("s3://"):
        from server.storage.s3 import S3Storage

        return S3Storage.from_url(
            url.rstrip("/") + "/" + namespace, endpoint=settings.s3_endpoint, region=settings.s3_region,
            access_key_id=settings.s3_access_key_id, secret_access_key=settings.s3_secret_access_key,
            timeout=settings.storage_timeout,
        )
    if url.startswith("file://") and unquote(urlsplit(url).path).strip("/"):
        return LocalStorage(Path(unquote(urlsplit(url).path)) / namespace)
    return LocalStorage(settings.data_path / namespace)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(storage_ctx)


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    from server import periodic
    from server.appkeys import DB, SETTINGS
    from server.storage.deletions import RETRY_INTERVAL

    storage = DurableDeletes(open_storage(app[SETTINGS]), app[DB])
    app[STORAGE] = storage
    async with periodic.running("storage-deferred-deletions", RETRY_INTERVAL, storage.retry_deferred, jitter=(0.5, 1.0)):
        yield
    await storage.aclose()
