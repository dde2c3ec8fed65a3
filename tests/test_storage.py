"""Local, content-addressed audio storage: keys are hashes, never paths from users."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from server.storage import AudioNotFound, AudioStorage, InvalidKey, LocalStorage, key_for, validate_key

AUDIO = b"RIFF" + bytes(range(256)) * 40


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "audio")


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_put_stores_bytes_under_their_sha256_and_extension(storage):
    key = await storage.put(AUDIO, "wav")
    assert key == hashlib.sha256(AUDIO).hexdigest() + ".wav"
    assert await storage.read(key) == AUDIO
    assert await storage.exists(key)
    assert await storage.size(key) == len(AUDIO)
    assert storage.path(key) == storage.root / key[:2] / key[2:4] / key
    assert storage.path(key).read_bytes() == AUDIO


async def test_open_returns_a_readable_binary_file(storage):
    key = await storage.put(AUDIO, ".MP3")
    assert key.endswith(".mp3")
    f = await storage.open(key)
    with f:
        f.seek(4)
        assert f.read(3) == bytes([0, 1, 2])


async def test_the_same_content_is_stored_once(storage):
    first = await storage.put(AUDIO, "wav")
    second = await storage.put(AUDIO, "wav")
    assert first == second
    assert files_under(storage.root) == [f"{first[:2]}/{first[2:4]}/{first}"]


async def test_concurrent_puts_of_the_same_content_leave_one_complete_file_and_no_temporaries(storage):
    big = os.urandom(2 * 1024 * 1024)
    keys = await asyncio.gather(*(storage.put(big, "wav") for _ in range(16)))
    assert len(set(keys)) == 1
    assert files_under(storage.root) == [f"{keys[0][:2]}/{keys[0][2:4]}/{keys[0]}"]
    assert await storage.read(keys[0]) == big


async def test_concurrent_puts_of_different_content_all_land(storage):
    blobs = [os.urandom(1000 + i) for i in range(20)]
    keys = await asyncio.gather(*(storage.put(b, "wav") for b in blobs))
    assert len(set(keys)) == 20
    for key, blob in zip(keys, blobs):
        assert await storage.read(key) == blob


async def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(storage, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        await storage.put(AUDIO, "wav")
    monkeypatch.undo()
    assert not await storage.exists(key_for(AUDIO, "wav"))
    assert files_under(storage.root) == []


async def test_delete_removes_the_file_and_is_idempotent(storage):
    key = await storage.put(AUDIO, "wav")
    assert await storage.delete(key) is True
    assert await storage.delete(key) is False
    assert not await storage.exists(key)
    with pytest.raises(AudioNotFound):
        await storage.read(key)
    with pytest.raises(AudioNotFound):
        await storage.open(key)
    with pytest.raises(AudioNotFound):
        await storage.size(key)


@pytest.mark.parametrize("bad_key", [
    "../../etc/passwd",
    "..",
    "/etc/passwd",
    "a" * 64,  # no extension
    "A" * 64 + ".wav",  # upper-case hex
    "a" * 63 + ".wav",
    "a" * 64 + ".wav/../../x",
    "a" * 64 + ".wa\x00v",
    "a" * 64 + "..wav",
    "a" * 64 + ".toolongext",
    "aa/bb/" + "a" * 64 + ".wav",
    "",
])
async def test_keys_that_are_not_hash_dot_extension_are_rejected_before_touching_the_disk(storage, bad_key):
    with pytest.raises(InvalidKey):
        storage.path(bad_key)
    for operation in (storage.read, storage.open, storage.exists, storage.delete, storage.size):
        with pytest.raises(InvalidKey):
            await operation(bad_key)


@pytest.mark.parametrize("bad_ext", ["", "../wav", "w/av", "wav\x00", "x" * 9, "wäv"])
async def test_extensions_are_validated_too(storage, bad_ext):
    with pytest.raises(InvalidKey):
        await storage.put(AUDIO, bad_ext)


def test_invalid_key_is_a_value_error_and_valid_keys_pass_through():
    key = "0" * 64 + ".wav"
    assert validate_key(key) == key
    with pytest.raises(ValueError):
        validate_key(None)  # type: ignore[arg-type]


async def test_iter_keys_lists_stored_files_and_skips_temporaries_and_strays(storage):
    keys = sorted([await storage.put(b"one" * 100, "wav"), await storage.put(b"two" * 100, "mp3")])
    leaf = storage.path(keys[0]).parent
    (leaf / ".tmp-abandoned").write_bytes(b"partial")
    (leaf / "notes.txt").write_text("not audio")
    assert sorted([k async for k in storage.iter_keys()]) == keys


async def test_iter_keys_older_than_spares_recent_files_for_retention_sweeps(storage):
    old = await storage.put(b"old" * 100, "wav")
    new = await storage.put(b"new" * 100, "wav")
    an_hour_ago = time.time() - 3600
    os.utime(storage.path(old), (an_hour_ago, an_hour_ago))
    assert [k async for k in storage.iter_keys(older_than=600)] == [old]
    # Storing the same bytes again is a fresh reference: the grace period starts over.
    await storage.put(b"old" * 100, "wav")
    assert [k async for k in storage.iter_keys(older_than=600)] == []
    assert new in [k async for k in storage.iter_keys()]


async def test_iter_keys_of_an_empty_or_missing_root_yields_nothing(tmp_path):
    assert [k async for k in LocalStorage(tmp_path / "never-created").iter_keys()] == []


def test_local_storage_implements_the_audio_storage_interface(storage):
    assert isinstance(storage, AudioStorage)
