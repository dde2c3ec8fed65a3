"""Time this process could not give a provider call, so our own load is not blamed on a key.

When the event loop is busy (a burst of requests post-processing audio, a slow synchronous call),
an answer the provider already sent waits in the socket until the loop gets to it. A plain
per-attempt timeout counts that wait against the key: under load the key is cooled down and the
request fails although the provider did its work. `FairTimeout` gives an attempt its full time
of a responsive loop instead: when its deadline comes, the time the loop was stalled meanwhile is
added once more before the attempt is given up.

`LoopStalls` measures stalls with a ticker task: each tick that runs late adds its lateness.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

TICK = 0.05
# Lateness below this is ordinary scheduling jitter, not a stall.
JITTER = 0.005


class LoopStalls:
    def __init__(self) -> None:
        self.total = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-stall-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            late = loop.time() - before - TICK
            if late > JITTER:
                self.total += late

    def timeout(self, seconds: float, *, most: float | None = None) -> "FairTimeout":
        return FairTimeout(seconds, self, most=seconds if most is None else most)


class FairTimeout:
    """Like asyncio.timeout(seconds), but stretched by the loop's stalls during it (at most `most`
    seconds more). Raises TimeoutError when it expires."""

    def __init__(self, seconds: float, stalls: LoopStalls, *, most: float) -> None:
        self.seconds = seconds
        self.stalls = stalls
        self.most = most
        self.stretched = 0.0
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "FairTimeout":
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._stalls_at_start = self.stalls.total
        self._schedule(loop.time() + self.seconds)
        return self

    def _schedule(self, when: float) -> None:
        self._when = when
        self._handle = asyncio.get_running_loop().call_at(when, self._on_deadline)

    def _on_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        # Stalls the ticker measured, or (when it has not run yet) how late this very call is.
        late = loop.time() - self._when
        stalled = max(self.stalls.total - self._stalls_at_start, late if late > JITTER else 0.0)
        owed = min(stalled, self.most) - self.stretched
        if owed > JITTER:
            self.stretched += owed
            self._schedule(loop.time() + owed)
            return
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
        if self.expired and exc_type is asyncio.CancelledError and self._task is not None:
            if self._task.uncancel() == 0:
                raise TimeoutError from exc
        return None
