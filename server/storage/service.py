"""Where blobs (generated audio, panel packages) live: one small interface, two backends.

`LocalStorage` keeps files under a folder (one machine); `S3Storage` (server/storage/s3.py)
keeps them in an S3-compatible bucket every server shares. `open_storage` picks one from
STORAGE_URL.

Blobs are content addressed: the key is the SHA-256 of the bytes plus an extension
("3f9a...e1.wav"). Keys are validated against a strict pattern before they touch a file
system or a bucket, so no user-supplied string can become a path. Identical content is stored
once; callers that share a key (cache reuse) must only delete a blob when no record refers to
it any more.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import re
import tempfile
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, AsyncIterator, Callable, Protocol, TypeVar, runtime_checkable

from server.web.errors import ServiceUnavailable

KEY_PATTERN = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")
EXT_PATTERN = re.compile(r"[a-z0-9]{1,8}")
_TEMP_PREFIX = ".tmp-"
CHUNK = 256 * 1024  # streamed reads hand over this much at a time
T = TypeVar("T")


class InvalidKey(ValueError):
    """A storage key that is not `<sha256 hex>.<ext>`: never resolved to a path."""


class AudioNotFound(FileNotFoundError):
    """No stored blob has this key (deleted, swept, or never stored)."""


ObjectNotFound = AudioNotFound  # the same error, by its general name


class StorageUnavailable(ServiceUnavailable):
    """The store did not answer (bucket unreachable, timed out, refused our credentials)."""

    code = "storage_unavailable"

    def __init__(self, operation: str) -> None:
        super().__init__(
            "File storage is unavailable right now; nothing was charged, try again shortly",
            code="storage_unavailable", retry_after=5, details={"operation": operation},
        )


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch

    @property
    def etag(self) -> str:
        """A strong validator that every backend and machine agrees on: the content hash."""
        return f'"{self.key.split(".", 1)[0]}"'


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidKey("invalid storage key")
    return key


def key_for(data: bytes, ext: str) -> str:
    """The key `data` is stored under: sha256 hex of the bytes, a dot, the lower-case extension."""
    ext = ext.lower().lstrip(".")
    if not EXT_PATTERN.fullmatch(ext):
        raise InvalidKey("extension must be 1-8 lower-case letters or digits")
    return f"{hashlib.sha256(data).hexdigest()}.{ext}"


@runtime_checkable
class BlobStorage(Protocol):
    """What every backend offers. Reads stream: nothing here needs a whole blob in memory,
    except `read`, for callers that need the bytes anyway."""

    async def put(self, data: bytes, ext: str, *, key: str | None = None) -> str:
        """Store `data`; returns its key. `key`: key_for(data, ext), when the caller hashed already."""
        ...

    def put_blocking(self, data: bytes, ext: str) -> str | None:
        """For a caller on a worker thread already (post-processing, say): store `data` from there,
        so one trip to the thread pool does both, when this backend writes with blocking I/O (a
        local folder); returns the key. None when it uploads asynchronously (S3): the caller then
        awaits put() with the key it hashed on its thread."""
        ...

    async def read(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> bool: ...
    async def exists(self, key: str) -> bool: ...
    async def size(self, key: str) -> int: ...
    async def stat(self, key: str) -> ObjectInfo: ...
    def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...
    def iter_keys(self, *, older_than: float | None = None) -> AsyncIterator[str]: ...
    async def presign(self, key: str, *, expires_in: float) -> str | None: ...
    async def aclose(self) -> None: ...


AudioStorage = BlobStorage  # the name callers used when audio was the only blob


class LocalStorage:
    """Files under `root/ab/cd/<key>` (two levels of fan-out keep directories small).

    Blocking file I/O runs in `executor` (the loop's default when None) so the event loop
    never waits on the disk. Writes go to a temporary file in the target directory and are
    renamed into place, so a reader sees either nothing or the whole file, and concurrent
    puts of the same bytes are harmless.
    """

    def __init__(self, root: Path | str, *, executor: Executor | None = None) -> None:
        self.root = Path(root).resolve()
        self._executor = executor

    def path(self, key: str) -> Path:
        validate_key(key)
        return self.root / key[:2] / key[2:4] / key

    async def put(self, data: bytes, ext: str, *, key: str | None = None) -> str:
        # Hashing a long clip takes milliseconds: off the event loop too, with the write.
        return await self._run(self._put, data, ext, key)

    def put_blocking(self, data: bytes, ext: str) -> str:
        return self._put(data, ext)

    async def open(self, key: str) -> IO[bytes]:
        """A binary file object for reading (caller closes it)."""
        path = self.path(key)
        return await self._run(self._open, path)

    async def read(self, key: str) -> bytes:
        path = self.path(key)
        return await self._run(self._read, path)

    async def delete(self, key: str) -> bool:
        """True when a file was removed; deleting a missing key is not an error."""
        path = self.path(key)
        return await self._run(self._unlink, path)

    async def exists(self, key: str) -> bool:
        path = self.path(key)
        return await self._run(path.is_file)

    async def size(self, key: str) -> int:
        path = self.path(key)
        return await self._run(self._size, path)

    async def stat(self, key: str) -> ObjectInfo:
        path = self.path(key)
        st = await self._run(self._stat, path)
        return ObjectInfo(key, st.st_size, st.st_mtime)

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) in chunks, each read off the event loop."""
        f = await self.open(key)
        try:
            await self._run(f.seek, start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = await self._run(f.read, CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def presign(self, key: str, *, expires_in: float) -> str | None:
        """A local folder has no URL of its own: downloads stream through the server."""
        validate_key(key)
        return None

    async def aclose(self) -> None:
        return None

    async def iter_keys(self, *, older_than: float | None = None) -> AsyncIterator[str]:
        """Every stored key, one fan-out directory at a time. `older_than` (seconds) skips files
        written more recently, so a retention sweep cannot remove a file whose record is still
        being committed."""
        cutoff = time.time() - older_than if older_than is not None else None
        for directory in await self._run(self._leaf_dirs):
            for key in await self._run(self._keys_in, directory, cutoff):
                yield key

    # --- blocking parts (run in the executor) ---

    def _put(self, data: bytes, ext: str, key: str | None = None) -> str:
        key = validate_key(key) if key is not None else key_for(data, ext)
        self._write(self.path(key), data)
        return key

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        try:
            if path.stat().st_size == len(data):
                # Same key and length: the content is already there. Refresh its time so a
                # sweep's `older_than` grace also covers this new reference to it.
                os.utime(path)
                return
        except FileNotFoundError:
            pass  # not there (or deleted meanwhile): write it
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _open(path: Path) -> IO[bytes]:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise AudioNotFound(path.name) from None

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise AudioNotFound(path.name) from None

    @staticmethod
    def _size(path: Path) -> int:
        return LocalStorage._stat(path).st_size

    @staticmethod
    def _stat(path: Path) -> os.stat_result:
        try:
            return path.stat()
        except FileNotFoundError:
            raise AudioNotFound(path.name) from None

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _leaf_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(leaf for top in self.root.iterdir() if top.is_dir() for leaf in top.iterdir() if leaf.is_dir())

    @staticmethod
    def _keys_in(directory: Path, cutoff: float | None) -> list[str]:
        keys = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if not KEY_PATTERN.fullmatch(entry.name) or not entry.is_file():
                    continue  # temporary files of writes in progress, strays
                if cutoff is not None and entry.stat().st_mtime > cutoff:
                    continue
                keys.append(entry.name)
        return sorted(keys)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
