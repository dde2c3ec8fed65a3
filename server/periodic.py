"""Background work repeated every few seconds in every server process, written once.

`run_every` sleeps a jittered interval (so processes started together do not act in lockstep),
runs one round, logs a failed round and carries on: a database or Redis hiccup must never end
the loop. `periodic_ctx` runs it as an application cleanup context that cancels it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import web

from server.outages import is_unavailable

log = logging.getLogger("server.periodic")

Round = Callable[[], Awaitable[Any]]


async def run_every(name: str, interval: float, work: Round, *, jitter: tuple[float, float] = (0.8, 1.2)) -> None:
    """Forever: wait `interval` times a random factor in `jitter`, then `await work()`."""
    while True:
        await asyncio.sleep(interval * random.uniform(*jitter))
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_unavailable(exc):  # Postgres or Redis is away: no stack trace for that
                log.warning("background round skipped: database unavailable", extra={"task": name})
            else:
                log.exception("background round failed; the next one tries again", extra={"task": name})


@contextlib.asynccontextmanager
async def running(name: str, interval: float, work: Round, *, jitter: tuple[float, float] = (0.8, 1.2)) -> AsyncIterator[None]:
    """`run_every` as a task for the duration of the block; cancelled and awaited on the way out."""
    task = asyncio.create_task(run_every(name, interval, work, jitter=jitter), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def periodic_ctx(
    name: str, interval: Callable[[web.Application], float], work: Callable[[web.Application], Awaitable[Any]],
    *, jitter: tuple[float, float] = (0.8, 1.2),
) -> Callable[[web.Application], Any]:
    """A cleanup context running `work(app)` every `interval(app)` seconds while the app runs."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with running(name, interval(app), lambda: work(app), jitter=jitter):
            yield

    ctx.__name__ = f"periodic_{name.replace('-', '_')}"
    return ctx
