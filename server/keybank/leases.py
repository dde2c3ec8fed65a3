"""Runtime key state in Redis, shared by every worker process.

Layout (all under the settings' Redis prefix):
  kb:cand:{provider}    hash key id -> "max_concurrency weight" for the provider's ACTIVE keys
  kb:quota:{provider}   hash key id -> remaining quota (absent when unknown)
  kb:rev:{provider}     revision of the Postgres snapshot the two hashes were copied from
  kb:synced:{provider}  present once a snapshot was copied (absent after a Redis restart)
  kb:leases:{id}        sorted set of lease ids scored by expiry (ms); expired members are purged
  kb:cool:{id}          cooldown end (ms), expiring by itself at that moment
  kb:fails:{id}         consecutive failures, the exponent of the backoff
  kb:errors:{id}        failures in the current error window
  kb:usage              hash key id -> quota used since the last flush to Postgres (all providers)

Acquire is one Lua script, so choosing a key and taking a slot on it cannot interleave with
another worker doing the same: the capacity check and the lease are one atomic step.
Per-key keys are built inside the scripts from a prefix, which is fine on a single Redis (not
Redis Cluster, which would need every key declared up front).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Iterable

import redis.asyncio as aioredis
import redis.exceptions

from server.settings import Settings

ACQUIRE = r"""
-- KEYS: 1 candidates hash, 2 quota hash, 3 synced marker; with the fair wait (server/keybank/waiting.py)
--       also 4 waiting line, 5 ticket expiries
-- ARGV: 1 lease key prefix, 2 cooldown key prefix, 3 lease id, 4 lease ttl ms,
--       5 allowed ids ("," separated, "" = any), 6 excluded ids, 7 random number in [0, 1),
--       8 this request's ticket in the line ("" = none yet), 9 per-user line key prefix
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {-1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])

local function id_set(csv)
  local s = {}
  for id in string.gmatch(csv, '[^,]+') do s[id] = true end
  return s
end
local allowed = nil
if ARGV[5] ~= '' then allowed = id_set(ARGV[5]) end
local excluded = id_set(ARGV[6])

local quota = {}
local q = redis.call('HGETALL', KEYS[2])
for i = 1, #q, 2 do quota[q[i]] = tonumber(q[i + 1]) end

local cands = redis.call('HGETALL', KEYS[1])
local eligible = {}
local max_quota = 0
local soonest = -1
local considered = 0
for i = 1, #cands, 2 do
  local id = cands[i]
  if (allowed == nil or allowed[id]) and not excluded[id] then
    considered = considered + 1
    local cap, weight = string.match(cands[i + 1], '^(%d+) (%d+)$')
    cap = tonumber(cap)
    weight = tonumber(weight)
    local cool_until = tonumber(redis.call('GET', ARGV[2] .. id) or '0')
    if cool_until > now then
      if soonest < 0 or cool_until - now < soonest then soonest = cool_until - now end
    else
      local lk = ARGV[1] .. id
      redis.call('ZREMRANGEBYSCORE', lk, '-inf', now)
      local busy = redis.call('ZCARD', lk)
      if busy < cap then
        eligible[#eligible + 1] = {id = id, cap = cap, weight = weight, busy = busy, quota = quota[id]}
        if quota[id] ~= nil and quota[id] > max_quota then max_quota = quota[id] end
      end
    end
  end
end
if #eligible == 0 then
  return {0, soonest, considered}
end

-- The fair wait: requests already in line go first. One in line may take a slot while fewer
-- requests stand ahead of it than there are free slots; a newcomer counts as standing last.
local ticket = ARGV[8] or ''
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)) do
    redis.call('ZREM', KEYS[4], m)
    redis.call('ZREM', KEYS[5], m)
    redis.call('ZREM', ARGV[9] .. (string.match(m, '^%d+:([^:]*):') or ''), m)
  end
  local free = 0
  for _, e in ipairs(eligible) do free = free + e.cap - e.busy end
  local rank = false
  if ticket ~= '' then rank = redis.call('ZRANK', KEYS[4], ticket) end
  if not rank then rank = redis.call('ZCARD', KEYS[4]) end
  if rank >= free then
    return {2, rank, considered}
  end
end

-- Score: weight x free share of the key's concurrency x its remaining quota relative to the
-- richest candidate (unknown quota counts as full; an empty one only wins when nothing else is free).
local best = {}
local best_score = -1
for _, e in ipairs(eligible) do
  local qf = 1
  if e.quota ~= nil then
    if max_quota > 0 then qf = math.max(e.quota, 0) / max_quota else qf = 0 end
    if qf < 0.001 then qf = 0.001 end
  end
  local score = e.weight * ((e.cap - e.busy) / e.cap) * qf
  if score > best_score + 1e-12 then
    best = {e}
    best_score = score
  elseif math.abs(score - best_score) <= 1e-12 then
    best[#best + 1] = e
  end
end
local pick = best[math.floor(tonumber(ARGV[7]) * #best) + 1] or best[1]
local lk = ARGV[1] .. pick.id
redis.call('ZADD', lk, now + ttl, ARGV[3])
if ticket ~= '' and KEYS[4] then
  redis.call('ZREM', KEYS[4], ticket)
  redis.call('ZREM', KEYS[5], ticket)
  redis.call('ZREM', ARGV[9] .. (string.match(ticket, '^%d+:([^:]*):') or ''), ticket)
end
local pttl = redis.call('PTTL', lk)
if pttl < ttl then redis.call('PEXPIRE', lk, ttl) end
return {1, pick.id, pick.busy + 1, now + ttl}
"""

COOLDOWN = r"""
-- KEYS: 1 cooldown key, 2 consecutive failures key, 3 error window counter
-- ARGV: 1 base ms, 2 max ms, 3 retry-after ms (-1 when absent), 4 random in [0, 1),
--       5 error window ms, 6 failure memory ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fails = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local errors = redis.call('INCR', KEYS[3])
if errors == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
-- Exponential backoff with +-20% jitter so keys cooled together do not return together.
local backoff = tonumber(ARGV[1]) * 2 ^ math.min(fails - 1, 30)
backoff = math.min(backoff, tonumber(ARGV[2])) * (0.8 + 0.4 * tonumber(ARGV[4]))
local retry_after = tonumber(ARGV[3])
if retry_after > backoff then backoff = retry_after end
backoff = math.floor(backoff)
if backoff < 1 then backoff = 1 end
local cool_until = now + backoff
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > cool_until then cool_until = current end
redis.call('SET', KEYS[1], cool_until, 'PX', cool_until - now)
return {cool_until, fails, cool_until - now}
"""

SYNC = r"""
-- KEYS: 1 candidates hash, 2 quota hash, 3 revision, 4 synced marker, 5 unflushed usage hash
-- ARGV: 1 revision, 2 number of candidates n, then n x (id, "cap weight"), then (id, remaining) pairs
-- Postgres does not know the usage still waiting in Redis, so it is taken off the remaining quota.
local stored = tonumber(redis.call('GET', KEYS[3]) or '-1')
local revision = tonumber(ARGV[1])
if stored > revision then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
local i = 3
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  local pending = tonumber(redis.call('HGET', KEYS[5], ARGV[i]) or '0')
  redis.call('HSET', KEYS[2], ARGV[i], tonumber(ARGV[i + 1]) - pending)
  i = i + 2
end
redis.call('SET', KEYS[3], revision)
redis.call('SET', KEYS[4], '1')
return 1
"""

RELEASE = r"""
-- Free a lease; a success also resets the backoff ladder and counts the quota it used, both in
-- the unflushed usage (written to Postgres later, off the request path) and in the remaining
-- quota that acquire prefers by (only while the key is still a candidate with a known quota).
-- KEYS: 1 leases, 2 fails, 3 usage hash, 4 quota hash, 5 candidates hash
-- ARGV: 1 lease id, 2 key id, 3 succeeded (1/0), 4 cost
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
  local cost = tonumber(ARGV[4])
  if cost > 0 then
    redis.call('HINCRBY', KEYS[3], ARGV[2], cost)
    if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 and redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then
      redis.call('HINCRBY', KEYS[4], ARGV[2], -cost)
    end
  end
end
return redis.call('ZCARD', KEYS[1])
"""

SETTLE_USAGE = r"""
-- Postgres has recorded these amounts: take them off the unflushed usage.
-- KEYS: 1 usage hash; ARGV: (id, amount) pairs
for i = 1, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""

STATE = r"""
-- Runtime state of some keys (purging expired leases first).
-- ARGV: 1 lease prefix, 2 cooldown prefix, 3 fails prefix, 4 errors prefix, 5 usage hash, then ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
for i = 6, #ARGV do
  local id = ARGV[i]
  local lk = ARGV[1] .. id
  redis.call('ZREMRANGEBYSCORE', lk, '-inf', now)
  out[#out + 1] = redis.call('ZCARD', lk)
  out[#out + 1] = tonumber(redis.call('GET', ARGV[2] .. id) or '0')
  out[#out + 1] = tonumber(redis.call('GET', ARGV[3] .. id) or '0')
  out[#out + 1] = tonumber(redis.call('GET', ARGV[4] .. id) or '0')
  out[#out + 1] = tonumber(redis.call('HGET', ARGV[5], id) or '0')
end
return out
"""

RELEASE_LOCK = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Granted:
    key_id: int
    lease_id: str
    in_flight: int
    expires_at_ms: int


@dataclass(frozen=True)
class Refused:
    """No key could take the request; `cooldown_ms` is the soonest cooldown end, -1 if none is cooling.

    `keys` counts the keys that were considered (allowed, not excluded): with none, waiting is
    pointless. `behind` is set when a key was free but requests waiting longer come first."""

    cooldown_ms: int
    unsynced: bool = False
    keys: int = 0
    behind: int | None = None


@dataclass(frozen=True)
class Cooldown:
    until_ms: int
    consecutive_failures: int
    duration_ms: int


@dataclass(frozen=True)
class RuntimeState:
    in_flight: int = 0
    cooldown_until_ms: int = 0
    consecutive_failures: int = 0
    recent_errors: int = 0
    now_ms: int = 0
    unflushed_usage: int = 0  # quota used that Postgres does not show yet

    @property
    def cooling(self) -> bool:
        return self.cooldown_until_ms > self.now_ms

    @property
    def cooldown_remaining(self) -> float:
        return max(0.0, (self.cooldown_until_ms - self.now_ms) / 1000)


@dataclass(frozen=True)
class CandidateRow:
    key_id: int
    max_concurrency: int
    weight: int
    remaining: int | None


class LeaseStore:
    """The Redis side of the key bank. Knows nothing of Postgres or providers."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._acquire = redis.register_script(ACQUIRE)
        self._cooldown = redis.register_script(COOLDOWN)
        self._sync = redis.register_script(SYNC)
        self._state = redis.register_script(STATE)
        self._release = redis.register_script(RELEASE)
        self._settle_usage = redis.register_script(SETTLE_USAGE)
        self._release_lock = redis.register_script(RELEASE_LOCK)
        # Releases Redis did not take (it was out of reach): sent again before the next acquire.
        self._unreleased: dict[str, tuple[list[str], list[object]]] = {}

    def key(self, *parts: object) -> str:
        return self.settings.rkey("kb", *parts)

    async def acquire(
        self,
        provider: str,
        *,
        ttl: float,
        allowed: Iterable[int] | None = None,
        excluded: Iterable[int] = (),
        ticket: str = "",
    ) -> Granted | Refused:
        """A slot on the best key. Requests waiting in the fair line (waiting.py) go first: this
        one gets a slot only if fewer of them stand ahead of it (`ticket`: its place) than are free."""
        if self._unreleased:
            await self._release_unreleased()
        lease_id = uuid.uuid4().hex
        result = await self._acquire(
            keys=[self.key("cand", provider), self.key("quota", provider), self.key("synced", provider),
                  self.key("wait", provider), self.key("wait-exp", provider)],
            args=[
                self.key("leases", ""),
                self.key("cool", ""),
                lease_id,
                max(1, int(ttl * 1000)),
                "" if allowed is None else ",".join(str(int(i)) for i in allowed) or "none",
                ",".join(str(int(i)) for i in excluded),
                random.random(),
                ticket,
                self.key("wait-user", provider, ""),
            ],
        )
        status = int(result[0])
        if status == 1:
            return Granted(key_id=int(result[1]), lease_id=lease_id, in_flight=int(result[2]), expires_at_ms=int(result[3]))
        if status == -1:
            return Refused(cooldown_ms=-1, unsynced=True)
        if status == 2:
            return Refused(cooldown_ms=-1, keys=int(result[2]), behind=int(result[1]))
        return Refused(cooldown_ms=int(result[1]), keys=int(result[2]))

    async def release(self, key_id: int, lease_id: str, *, succeeded: bool, provider: str = "", cost: int = 0) -> int:
        """Free the slot; a success also resets the backoff ladder and counts `cost` against the
        key's quota (in Redis only: see `unflushed_usage`). Returns the key's in-flight count."""
        keys = [self.key("leases", key_id), self.key("fails", key_id), self.key("usage"),
                self.key("quota", provider), self.key("cand", provider)]
        args: list[object] = [lease_id, key_id, 1 if succeeded else 0, max(0, int(cost)) if succeeded else 0]
        try:
            in_flight = await self._release(keys=keys, args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Redis stayed out of reach through the client's retries. The slot must not stay taken
            # until the lease's TTL (minutes): the release is sent again before the next acquire.
            # The answer the provider gave stands; the in-flight count is unknown (0 reported).
            self._unreleased[lease_id] = (keys, args)
            return 0
        return int(in_flight)

    async def _release_unreleased(self) -> None:
        for lease_id, (keys, args) in list(self._unreleased.items()):
            try:
                await self._release(keys=keys, args=args)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                return
            self._unreleased.pop(lease_id, None)

    async def unflushed_usage(self) -> dict[int, int]:
        """Quota used per key that is not in Postgres yet."""
        raw = await self.redis.hgetall(self.key("usage"))
        return {int(k): int(v) for k, v in raw.items() if int(v) > 0}

    async def settle_usage(self, amounts: dict[int, int]) -> None:
        """Postgres recorded `amounts`; later usage counted meanwhile stays."""
        if amounts:
            args: list[object] = []
            for key_id, amount in amounts.items():
                args += [key_id, amount]
            await self._settle_usage(keys=[self.key("usage")], args=args)

    async def cool_down(
        self,
        key_id: int,
        *,
        base: float,
        maximum: float,
        retry_after: float | None,
        error_window: float,
    ) -> Cooldown:
        result = await self._cooldown(
            keys=[self.key("cool", key_id), self.key("fails", key_id), self.key("errors", key_id)],
            args=[
                int(base * 1000),
                int(maximum * 1000),
                -1 if retry_after is None else int(retry_after * 1000),
                random.random(),
                int(error_window * 1000),
                int(max(maximum * 4, 3600) * 1000),
            ],
        )
        return Cooldown(until_ms=int(result[0]), consecutive_failures=int(result[1]), duration_ms=int(result[2]))

    async def count_error(self, key_id: int, *, error_window: float) -> None:
        """A failure that does not cool the key still shows in its recent error count."""
        key = self.key("errors", key_id)
        if await self.redis.incr(key) == 1:
            await self.redis.pexpire(key, int(error_window * 1000))

    async def clear_health(self, key_id: int) -> None:
        """A successful probe: no cooldown, no backoff history."""
        await self.redis.delete(self.key("cool", key_id), self.key("fails", key_id))

    async def sync(self, provider: str, revision: int, candidates: list[CandidateRow]) -> bool:
        args: list[object] = [revision, len(candidates)]
        for c in candidates:
            args += [c.key_id, f"{c.max_concurrency} {c.weight}"]
        for c in candidates:
            if c.remaining is not None:
                args += [c.key_id, c.remaining]
        applied = await self._sync(
            keys=[self.key("cand", provider), self.key("quota", provider), self.key("rev", provider),
                  self.key("synced", provider), self.key("usage")],
            args=args,
        )
        return bool(applied)

    async def drop_candidate(self, provider: str, key_id: int) -> None:
        """Take a key out of rotation at once; the revisioned sync that follows confirms it."""
        await self.redis.hdel(self.key("cand", provider), str(key_id))

    async def revision(self, provider: str) -> int | None:
        """The revision of the candidate list Redis holds (None: not synced yet)."""
        raw = await self.redis.get(self.key("rev", provider))
        return None if raw is None else int(raw)

    async def candidate_ids(self, provider: str) -> set[int]:
        return {int(k) for k in await self.redis.hkeys(self.key("cand", provider))}

    async def state(self, key_ids: Iterable[int]) -> dict[int, RuntimeState]:
        ids = [int(i) for i in key_ids]
        if not ids:
            return {}
        raw = await self._state(
            keys=[],
            args=[self.key("leases", ""), self.key("cool", ""), self.key("fails", ""), self.key("errors", ""),
                  self.key("usage"), *ids],
        )
        now = int(raw[0])
        out = {}
        for n, key_id in enumerate(ids):
            busy, cool, fails, errors, usage = (int(v) for v in raw[1 + 5 * n : 6 + 5 * n])
            out[key_id] = RuntimeState(busy, cool, fails, errors, now, usage)
        return out

    async def forget(self, key_id: int) -> None:
        """A removed key leaves no runtime state behind."""
        await self.redis.delete(*(self.key(kind, key_id) for kind in ("leases", "cool", "fails", "errors")))
        await self.redis.hdel(self.key("usage"), str(key_id))

    async def try_lock(self, name: str, token: str, ttl: float) -> bool:
        return bool(await self.redis.set(self.key("lock", name), token, nx=True, px=max(1, int(ttl * 1000))))

    async def unlock(self, name: str, token: str) -> bool:
        return bool(await self._release_lock(keys=[self.key("lock", name)], args=[token]))
