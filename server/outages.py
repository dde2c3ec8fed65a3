"""Postgres or Redis out of reach: telling an outage from a bug, and riding a short one out.

A connection-level failure (refused, reset, "the database system is shutting down", a Redis
connection closed by the server) says nothing about the request: the same request will work
once the service is back. Clients get 503 `service_unavailable` with Retry-After for those,
never 500 `internal_error`, which is kept for our own bugs. Writes that settle money already
owed (a capture, a release) are retried across a reconnect instead of being given up at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from typing import Awaitable, Callable, TypeVar

import asyncpg
import redis.exceptions

from server.web.errors import ServiceUnavailable

log = logging.getLogger("server.outages")

T = TypeVar("T")

# What a client is told to wait: a restart of either service takes a few seconds.
RETRY_AFTER_SECONDS = 2

_POSTGRES_GONE = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,  # terminated by a fast shutdown
    asyncpg.CrashShutdownError,  # terminated because another backend crashed (immediate shutdown)
)
_SOCKET_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                  errno.ETIMEDOUT, errno.EPIPE}
_REDIS_GONE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of the connection to Postgres or Redis rather than of the request."""
    if isinstance(exc, _POSTGRES_GONE + _REDIS_GONE):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's own word for a connection that closed under an operation.
        return "connection is closed" in str(exc) or "connection was closed" in str(exc)
    if isinstance(exc, asyncpg.InternalClientError) and str(exc).startswith("cannot switch to state"):
        # A pooled connection that got its FATAL "terminating connection" while idle, handed out
        # before the socket's close reached asyncpg: the protocol is stuck consuming that error.
        return True
    # A refused or reset socket while (re)connecting: asyncpg raises the OS error as it is. Other
    # OS errors (a full disk, a missing file) are not outages of a service and stay 500.
    return isinstance(exc, ConnectionError) or (type(exc) is OSError and exc.errno in _SOCKET_ERRNOS) or (
        type(exc) is OSError and str(exc).startswith("Multiple exceptions: [Errno 111]"))


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The service is briefly unavailable (a database connection was lost); try again in a moment",
        retry_after=RETRY_AFTER_SECONDS,
    )


async def retry_through_outage(
    write: Callable[[], Awaitable[T]], *, seconds: float, what: str, first_delay: float = 0.05, max_delay: float = 0.5
) -> T:
    """Run `write`, and again with backoff while Postgres or Redis is unreachable, for up to
    `seconds`. `write` must be safe to repeat: its first try may have committed before the
    connection died. Other errors are raised at once; the outage's error once time is up."""
    deadline = time.monotonic() + seconds
    delay = first_delay
    tries = 0
    while True:
        try:
            return await write()
        except Exception as exc:
            tries += 1
            if not is_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            if tries == 1:
                log.warning("%s waits for the database to come back", what, extra={"error": type(exc).__name__})
        # Jitter keeps the writes of many requests from hitting a restarted server in lockstep.
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, max_delay)
