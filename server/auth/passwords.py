"""Password policy and bcrypt hashing, kept off the event loop.

bcrypt only reads the first 72 bytes of its input (and bcrypt 5 refuses longer input), so the
password is first reduced to a fixed-length SHA-256 digest, base64-encoded so it holds no NUL
bytes. Every character of a long passphrase therefore counts.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging

import bcrypt

log = logging.getLogger("server.auth")

MIN_LENGTH = 10
# Long enough for any passphrase, short enough that a request cannot make us hash megabytes.
MAX_LENGTH = 1024


def policy_problems(password: str, email: str) -> list[dict[str, str]]:
    """Field-level problems in the shape of a 422 `details.fields` entry; empty when acceptable."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(_problem("password_too_short", f"Use at least {MIN_LENGTH} characters"))
    elif len(password) > MAX_LENGTH:
        problems.append(_problem("password_too_long", f"Use at most {MAX_LENGTH} characters"))
    if email and password.strip().casefold() == email.strip().casefold():
        problems.append(_problem("password_is_email", "The password must not be your email address"))
    return problems


def _problem(kind: str, message: str) -> dict[str, str]:
    return {"field": "password", "location": "body", "message": message, "type": kind}


async def hash_password(password: str, cost: int) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _hash, password, cost)


async def check_password(password: str, hashed: str | None, cost: int) -> bool:
    """True when `password` matches `hashed`. With no hash (unknown account) a dummy hash of the
    same cost is checked instead, so the answer takes as long either way."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _check, password, hashed, cost)


def needs_rehash(hashed: str, cost: int) -> bool:
    """A hash made with another work factor is upgraded at the next successful sign-in."""
    try:
        return int(hashed.split("$")[2]) != cost
    except (IndexError, ValueError):
        return True


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def _hash(password: str, cost: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=cost)).decode("ascii")


def _check(password: str, hashed: str | None, cost: int) -> bool:
    if hashed is None:
        bcrypt.checkpw(_prehash(password), _dummy_hash(cost))
        return False
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except ValueError:
        log.warning("stored password hash is malformed")
        return False


@functools.lru_cache(maxsize=4)
def _dummy_hash(cost: int) -> bytes:
    return bcrypt.hashpw(b"no such account", bcrypt.gensalt(rounds=cost))
