"""Blob storage in an S3 bucket (a real S3 API server: moto's, started by the suite), and what both
backends promise alike: content addressing, streamed ranges, validated keys, a clear outage."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import urllib.request

import pytest
import aiohttp
from aiohttp import web

from server.settings import Settings
from server.storage import (
    AudioNotFound, BlobStorage, InvalidKey, LocalStorage, StorageUnavailable, key_for, open_storage,
)
from server.storage.s3 import S3Storage

AUDIO = b"RIFF" + bytes(range(256)) * 40


def bucket_objects(s3_env: dict[str, str]) -> list[str]:
    """Object names in the bucket, read with a plain HTTP request (not through our client)."""
    bucket = s3_env["STORAGE_URL"].removeprefix("s3://").split("/", 1)[0]
    with urllib.request.urlopen(f"{s3_env['S3_ENDPOINT']}/{bucket}?list-type=2", timeout=5) as resp:
        body = resp.read().decode()
    return sorted(part.split("</Key>", 1)[0] for part in body.split("<Key>")[1:])


@pytest.fixture
async def s3(s3_env, tmp_path) -> S3Storage:
    storage = open_storage(Settings.from_env({**s3_env, "DATA_DIR": str(tmp_path)}))
    assert isinstance(storage, S3Storage)
    yield storage
    await storage.aclose()


@pytest.fixture(params=["local", "s3"])
async def backend(request, tmp_path, s3_env) -> BlobStorage:
    if request.param == "local":
        storage = LocalStorage(tmp_path / "blobs")
    else:
        storage = open_storage(Settings.from_env({**s3_env, "DATA_DIR": str(tmp_path)}))
    yield storage
    await storage.aclose()


def test_storage_url_chooses_the_backend(tmp_path, s3_env):
    def settings(**env):
        return Settings.from_env({"DATA_DIR": str(tmp_path), **env})

    default = open_storage(settings())
    assert isinstance(default, LocalStorage) and default.root == (tmp_path / "audio").resolve()
    packages = open_storage(settings(), "packages")
    assert isinstance(packages, LocalStorage) and packages.root == (tmp_path / "packages").resolve()
    elsewhere = open_storage(settings(STORAGE_URL=f"file://{tmp_path}/elsewhere"))
    assert isinstance(elsewhere, LocalStorage) and elsewhere.root == (tmp_path / "elsewhere" / "audio").resolve()
    bucket = open_storage(settings(**s3_env))
    assert isinstance(bucket, S3Storage) and bucket.prefix == "sfx/audio"
    assert open_storage(settings(**s3_env), "packages").prefix == "sfx/packages"
    with pytest.raises(ValueError, match="STORAGE_URL"):
        settings(STORAGE_URL="ftp://example/x")
    with pytest.raises(ValueError, match="namespace"):
        open_storage(settings(), "../up")


async def test_put_stores_the_bytes_in_the_bucket_under_their_hash(s3, s3_env):
    key = await s3.put(AUDIO, "wav")
    assert key == hashlib.sha256(AUDIO).hexdigest() + ".wav"
    assert bucket_objects(s3_env) == [f"sfx/audio/{key[:2]}/{key[2:4]}/{key}"]
    assert await s3.read(key) == AUDIO
    assert await s3.exists(key) and await s3.size(key) == len(AUDIO)
    info = await s3.stat(key)
    assert info.size == len(AUDIO) and info.etag == f'"{key[:64]}"' and abs(info.modified - time.time()) < 60
    # Identical content is one object.
    assert await s3.put(AUDIO, "wav") == key
    assert len(bucket_objects(s3_env)) == 1


async def test_concurrent_puts_all_land_whole(s3):
    blobs = [os.urandom(300_000 + i) for i in range(8)]
    keys = await asyncio.gather(*(s3.put(b, "wav") for b in blobs), *(s3.put(blobs[0], "wav") for _ in range(4)))
    assert len(set(keys)) == 8
    for key, blob in zip(keys, blobs):
        assert await s3.read(key) == blob


async def test_delete_removes_the_object_and_is_idempotent(s3, s3_env):
    key = await s3.put(AUDIO, "mp3")
    assert await s3.delete(key) is True
    assert await s3.delete(key) is False
    assert bucket_objects(s3_env) == []
    for operation in (s3.read, s3.stat, s3.size):
        with pytest.raises(AudioNotFound):
            await operation(key)
    assert not await s3.exists(key)


async def test_ranges_stream_in_chunks_from_either_backend(backend):
    blob = os.urandom(1_500_000)
    key = await backend.put(blob, "wav")

    async def collect(start=0, end=None):
        chunks = [c async for c in backend.stream(key, start, end)]
        return chunks, b"".join(chunks)

    chunks, whole = await collect()
    assert whole == blob
    # Handed over piece by piece, never as one buffer of the whole file.
    assert len(chunks) > 1 and max(len(c) for c in chunks) < len(blob) // 2
    assert (await collect(1000, 1010))[1] == blob[1000:1010]
    assert (await collect(len(blob) - 5))[1] == blob[-5:]
    assert (await collect(0, 1))[1] == blob[:1]
    assert (await collect(7, 7))[1] == b""


@pytest.mark.parametrize("bad_key", ["../../etc/passwd", "a" * 64, "A" * 64 + ".wav", "aa/bb/" + "a" * 64 + ".wav", ""])
async def test_keys_that_are_not_hash_dot_extension_never_reach_the_bucket(s3, bad_key):
    for operation in (s3.read, s3.exists, s3.delete, s3.size, s3.stat):
        with pytest.raises(InvalidKey):
            await operation(bad_key)
    with pytest.raises(InvalidKey):
        await s3.presign(bad_key, expires_in=60)
    with pytest.raises(InvalidKey):
        [c async for c in s3.stream(bad_key)]


async def test_iter_keys_lists_the_bucket_and_spares_recent_objects(s3):
    keys = sorted([await s3.put(b"one" * 100, "wav"), await s3.put(b"two" * 100, "mp3")])
    assert sorted([k async for k in s3.iter_keys()]) == keys
    assert [k async for k in s3.iter_keys(older_than=600)] == []


async def test_a_presigned_url_downloads_the_object_without_credentials_until_it_expires(s3):
    key = await s3.put(AUDIO, "wav")
    url = await s3.presign(key, expires_in=60)
    assert "X-Amz-Signature=" in url and key in url
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == AUDIO
        assert resp.headers["Content-Type"] == "audio/wav"
    assert await LocalStorage("/nonexistent").presign(key, expires_in=60) is None


@pytest.fixture
async def failing_s3(aiohttp_server, tmp_path):
    """An S3 endpoint in an outage: every request answers 503 SlowDown, as S3 does when it sheds load."""
    hits = []

    async def slow_down(request: web.Request) -> web.Response:
        hits.append(request.method)
        return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>", content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow_down)
    server = await aiohttp_server(app)
    storage = S3Storage("bucket", prefix="audio", endpoint=str(server.make_url("")).rstrip("/"),
                        access_key_id="k", secret_access_key="secret-value", timeout=1.0)
    storage.hits = hits
    yield storage
    await storage.aclose()


async def test_an_outage_is_storage_unavailable_within_the_timeout(failing_s3):
    key = key_for(AUDIO, "wav")
    for call in (lambda: failing_s3.put(AUDIO, "wav"), lambda: failing_s3.stat(key), lambda: failing_s3.delete(key),
                 lambda: failing_s3.read(key)):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as err:
            await call()
        assert time.monotonic() - started < 4
        assert err.value.status == 503 and err.value.headers["Retry-After"]
        assert "secret-value" not in str(err.value.body())
    assert len(failing_s3.hits) > 4  # it did retry inside the bound


async def test_a_dead_endpoint_is_storage_unavailable_too(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = S3Storage("bucket", endpoint=f"http://127.0.0.1:{port}", access_key_id="k", secret_access_key="s",
                        timeout=1.0)
    try:
        with pytest.raises(StorageUnavailable):
            await storage.put(AUDIO, "wav")
    finally:
        await storage.aclose()


async def test_a_download_the_store_breaks_off_ends_short_so_the_client_can_tell(aiohttp_client, tmp_path):
    from server.storage.http import serve_object

    class Flaky(LocalStorage):
        async def stream(self, key, start=0, end=None):
            first = True
            async for chunk in super().stream(key, start, end):
                if not first:
                    raise StorageUnavailable("read")
                first = False
                yield chunk

    storage = Flaky(tmp_path / "blobs")
    blob = os.urandom(1_000_000)
    key = await storage.put(blob, "wav")

    async def download(request):
        return await serve_object(request, storage, key, content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/file", download)
    client = await aiohttp_client(app)
    resp = await client.get("/file")
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(blob)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-9", 100, (0, 10)),
    ("bytes=90-", 100, (90, 100)),
    ("bytes=90-500", 100, (90, 100)),  # an end past the file is cut to it
    ("bytes=-10", 100, (90, 100)),
    ("bytes=-500", 100, (0, 100)),
    ("bytes=100-", 100, False),  # starts past the end: 416
    ("bytes=-0", 100, False),
    ("bytes=5-1", 100, None),  # malformed: the whole file
    ("bytes=0-1,5-9", 100, None),  # several ranges: the whole file (RFC 9110 allows it)
    ("items=0-9", 100, None),
    ("bytes=", 100, None),
])
def test_range_headers_are_read_as_rfc_9110_says(header, size, expected):
    from server.storage.http import parse_range

    assert parse_range(header, size) == expected


def test_download_names_are_plain_ascii_with_the_exact_name_beside_it():
    from server.storage.http import attachment

    assert attachment("rain-1a2b.wav") == 'attachment; filename="rain-1a2b.wav"'
    assert attachment('Café "loud".wav') == (
        'attachment; filename="Caf_ _loud_.wav"; filename*=UTF-8\'\'Caf%C3%A9%20%22loud%22.wav')
