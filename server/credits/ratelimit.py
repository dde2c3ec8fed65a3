"""Per-user request limits from the plan, kept in Redis so every worker process shares them.

GCRA (the generic cell rate algorithm): each limit stores one timestamp, the theoretical
arrival time of the next request. "N per window" allows a burst of N and then one request
every window/N, with an exact Retry-After. Both windows are checked and updated in one
Lua script, so the check and the count are atomic, a refused request costs nothing, and
Redis's clock is the only clock.
"""

from __future__ import annotations

import logging
import math
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.credits.models import Plan
from server.settings import Settings
from server.web.errors import TooManyRequests

log = logging.getLogger("server.credits.ratelimit")

# KEYS: one per window. ARGV: window length in ms and limit, for each key in turn.
# Returns {allowed (1/0), milliseconds until a retry can succeed, index of the binding window}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local next_tats = {}
local wait, binding = 0, 0
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 * i - 1])
  local interval = window / tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  local over = next_tat - now - window
  if over > wait then wait, binding = over, i end
  next_tats[i] = next_tat
end
if wait > 0 then return {0, math.ceil(wait), binding} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.3f', next_tats[i]), 'PX', math.ceil(next_tats[i] - now) + 1)
end
return {1, 0, 0}
"""

WINDOWS = (("minute", 60_000), ("hour", 3_600_000))


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._settings = settings
        self._script = redis.register_script(_GCRA)

    async def hit(self, user_id: uuid.UUID, plan: Plan) -> None:
        """Count one request, or raise TooManyRequests (429 with Retry-After) without counting it.

        When Redis is unreachable the request is let through: credits still bound what a user
        can spend, and an outage of the limiter should not become an outage of the product.
        """
        limits = (plan.requests_per_minute, plan.requests_per_hour)
        keys = [self._settings.rkey("ratelimit", user_id, name) for name, _ in WINDOWS]
        args: list[int] = []
        for (_, window_ms), limit in zip(WINDOWS, limits):
            args += [window_ms, limit]
        try:
            allowed, wait_ms, binding = await self._script(keys=keys, args=args)
        except RedisError:
            log.warning("rate limiter unavailable; request let through", extra={"user_id": str(user_id)})
            return
        if allowed:
            return
        window, _ = WINDOWS[int(binding) - 1]
        limit = limits[int(binding) - 1]
        raise TooManyRequests(
            f"Too many requests: your plan allows {limit} per {window}",
            retry_after=math.ceil(int(wait_ms) / 1000),
            details={"limit": limit, "window": window, "plan": plan.code},
        )
