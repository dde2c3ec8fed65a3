"""A fair wait for a busy key: when no key has a free slot, a request stands in line instead of
getting 503 at once, and every worker process serves the same line (Redis).

Layout (under the key bank's Redis prefix, per provider):
  kb:wait:{provider}            sorted set of tickets, scored by round (see below)
  kb:wait-exp:{provider}        the same tickets scored by when they expire (ms): a request whose
                                process died leaves the line by itself
  kb:wait-user:{provider}:{id}  one account's tickets, scored by round
  kb:wait-seq:{provider}        arrival counter

A ticket is "<arrival number, 16 digits>:<account>:<random>". Within a round tickets are in
arrival order (same score: Redis orders members as strings). An account's first waiting request
is in the round at the head of the line, its second one round later, and so on, so one
account's batch of twenty is served interleaved with everybody else's requests instead of
ahead of them, and KEY_WAIT_PER_USER caps how many it may have in line at all.

Who gets a freed slot is decided inside the key bank's acquire script (leases.py): a request
may lease while fewer tickets stand ahead of it than there are free slots, and a newcomer counts
as standing last. Requests in line poll that script; a release in the same process wakes its
own waiters at once, other processes' waiters notice within POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

import redis.asyncio as aioredis

from server.keybank.leases import Refused
from server.settings import Settings

T = TypeVar("T")

POLL_SECONDS = 0.05

ENQUEUE = r"""
-- KEYS: 1 line, 2 expiries, 3 arrival counter
-- ARGV: 1 per-user line prefix, 2 account, 3 random part, 4 ticket lifetime ms, 5 per-user cap
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZREM', ARGV[1] .. (string.match(m, '^%d+:([^:]*):') or ''), m)
end
local mine_key = ARGV[1] .. ARGV[2]
local mine = redis.call('ZCARD', mine_key)
if mine >= tonumber(ARGV[5]) then
  return {0, mine}
end
local round = 0
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head > 0 then round = tonumber(head[2]) end
local last = redis.call('ZRANGE', mine_key, -1, -1, 'WITHSCORES')
if #last > 0 and tonumber(last[2]) + 1 > round then round = tonumber(last[2]) + 1 end
local ticket = string.format('%016d', redis.call('INCR', KEYS[3])) .. ':' .. ARGV[2] .. ':' .. ARGV[3]
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], round, ticket)
redis.call('ZADD', KEYS[2], now + ttl, ticket)
redis.call('ZADD', mine_key, round, ticket)
-- Leftovers of a crash disappear with time even if nobody queues again.
for _, k in ipairs({KEYS[1], KEYS[2], mine_key}) do
  if redis.call('PTTL', k) < ttl * 2 then redis.call('PEXPIRE', k, ttl * 2) end
end
return {1, ticket, redis.call('ZRANK', KEYS[1], ticket)}
"""

LEAVE = r"""
-- KEYS: 1 line, 2 expiries, 3 the account's tickets; ARGV: 1 ticket
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Waited:
    """How a wait ended without a lease: `refused` as the last try saw it, after `seconds`."""

    refused: Refused
    seconds: float
    reason: str  # "timeout", "per_user_cap", "no_keys"


class WaitLine:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._enqueue = redis.register_script(ENQUEUE)
        self._leave = redis.register_script(LEAVE)
        self._wake: asyncio.Future[None] | None = None

    def key(self, *parts: object) -> str:
        return self.settings.rkey("kb", *parts)

    @staticmethod
    def worth_waiting(refused: Refused) -> bool:
        """Busy keys, or keys cooling down, free up by themselves; no key at all never does."""
        return refused.keys > 0 and not refused.unsynced

    async def wait(
        self,
        provider: str,
        account: str,
        refused: Refused,
        try_lease: Callable[[str], Awaitable[T | Refused]],
    ) -> T | Waited:
        """Stand in line until `try_lease(ticket)` returns a lease, or KEY_WAIT_SECONDS pass.

        The ticket leaves the line however this ends: a lease (the acquire script takes it out),
        the limit, an error, or the caller being cancelled because its client went away."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        limit = self.settings.key_wait_seconds
        if limit <= 0 or not self.worth_waiting(refused):
            return Waited(refused, 0.0, "no_keys" if refused.keys == 0 else "timeout")
        ticket = await self._join(provider, account, limit)
        if ticket is None:
            return Waited(refused, 0.0, "per_user_cap")
        try:
            while True:
                left = started + limit - loop.time()
                if left <= 0:
                    return Waited(refused, loop.time() - started, "timeout")
                await self._pause(min(left, POLL_SECONDS * random.uniform(0.8, 1.2)))
                result = await try_lease(ticket)
                if not isinstance(result, Refused):
                    return result
                refused = result
                if not self.worth_waiting(refused):
                    return Waited(refused, loop.time() - started, "no_keys")
        finally:
            await asyncio.shield(self._leave_line(provider, account, ticket))

    def released(self) -> None:
        """A lease of this process ended: its waiters try again now rather than at their next poll."""
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def waiting(self, provider: str, account: str) -> tuple[int, int | None]:
        """(requests of this account in line, requests ahead of its first one) for the panel."""
        mine = await self.redis.zrange(self.key("wait-user", provider, account), 0, 0)
        count = await self.redis.zcard(self.key("wait-user", provider, account))
        if not mine:
            return 0, None
        rank = await self.redis.zrank(self.key("wait", provider), mine[0])
        return int(count), None if rank is None else int(rank)

    # --- parts ----------------------------------------------------------------------------

    async def _join(self, provider: str, account: str, limit: float) -> str | None:
        # A ticket outlives the wait a little; the caller removes it sooner in every normal case.
        result = await self._enqueue(
            keys=[self.key("wait", provider), self.key("wait-exp", provider), self.key("wait-seq", provider)],
            args=[self.key("wait-user", provider, ""), account, secrets.token_hex(6),
                  int((limit + 5) * 1000), self.settings.key_wait_per_user],
        )
        return str(result[1]) if int(result[0]) == 1 else None

    async def _leave_line(self, provider: str, account: str, ticket: str) -> None:
        with contextlib.suppress(Exception):  # Redis away: the ticket expires by itself
            await self._leave(
                keys=[self.key("wait", provider), self.key("wait-exp", provider),
                      self.key("wait-user", provider, account)],
                args=[ticket],
            )

    async def _pause(self, seconds: float) -> None:
        if self._wake is None or self._wake.done():
            self._wake = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._wake)
