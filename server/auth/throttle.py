"""Failed sign-ins and sign-up attempts counted in Redis, so every worker process sees the same numbers.

Two counters per attempt: one for the account (keyed by a digest of the normalised email, so
unknown and known emails are throttled alike and Redis holds no addresses) and one for the
client IP. Each counts failures in a fixed window that starts at the first failure; once
either reaches LOGIN_MAX_FAILURES, attempts get 429 until that window ends.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from server.settings import Settings
from server.web.errors import TooManyRequests


class LoginThrottle:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.max_failures = settings.login_max_failures
        self.window = settings.login_failure_window
        self._settings = settings

    def keys(self, email: str, ip: str | None) -> tuple[str, str]:
        account = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
        return (
            self._settings.rkey("login_failures", "account", account),
            self._settings.rkey("login_failures", "ip", ip or "unknown"),
        )

    async def check(self, email: str, ip: str | None) -> None:
        """Raises TooManyRequests (with Retry-After) while the account or the IP is throttled."""
        keys = self.keys(email, ip)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            values = await pipe.execute()
        waits = [
            ttl if ttl > 0 else self.window
            for count, ttl in zip(values[0::2], values[1::2])
            if count is not None and int(count) >= self.max_failures
        ]
        if waits:
            raise TooManyRequests("Too many failed sign-in attempts; try again later", retry_after=max(waits))

    async def failed(self, email: str, ip: str | None) -> None:
        # MULTI makes the increment and the expiry one step: a counter never outlives its window.
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in self.keys(email, ip):
                pipe.incr(key)
                pipe.expire(key, self.window, nx=True)
            await pipe.execute()

    async def succeeded(self, email: str, ip: str | None) -> None:
        # Only the account counter: a guesser must not clear its IP's record by signing in to its own account.
        account_key, _ = self.keys(email, ip)
        await self.redis.delete(account_key)


class SignupThrottle:
    """Account creations per client IP: every attempt counts (a taken email too, so the sign-up
    form cannot be used to test thousands of addresses), in a fixed window that starts at the
    first attempt; beyond SIGNUP_MAX_PER_IP, 429 until that window ends."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.limit = settings.signup_max_per_ip
        self.window = settings.signup_window
        self._settings = settings

    async def attempt(self, ip: str | None) -> None:
        """Count one attempt from `ip`; TooManyRequests (with Retry-After) when it is one too many."""
        key = self._settings.rkey("signups", "ip", ip or "unknown")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) > self.limit:
            raise TooManyRequests(
                "Too many accounts created from this address; try again later",
                retry_after=ttl if ttl > 0 else self.window,
            )
