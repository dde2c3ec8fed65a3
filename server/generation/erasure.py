"""Erasing a deleted account's generations: the rows inside the caller's transaction (with the rest
of the account), the audio files only after it committed, and only files no one else still uses."""

from __future__ import annotations

import uuid
from typing import Iterable

import asyncpg

from server.generation import repo


async def erase_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[str]:
    """Deletes every generation of the user; returns the storage keys to pass to `drop_files`."""
    return await repo.delete_user_generations(conn, user_id)


async def drop_files(service, storage_keys: Iterable[str]) -> int:
    """`service` is the GenerationService; content-addressed files may be shared by other users'
    identical results, so each is deleted only when unused. Returns how many were deleted."""
    removed = 0
    for key in storage_keys:
        if await service.drop_file_if_unused(key):
            removed += 1
    return removed
