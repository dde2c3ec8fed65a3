"""Talking to providers about a key itself: is it valid, and how much quota does it have left."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable

import httpx
from elevenlabs import AsyncElevenLabs

# The SDK would otherwise sleep and retry the same key; rotation belongs to the key bank.
NO_RETRIES = {"max_retries": 0}


@dataclass(frozen=True)
class QuotaReading:
    limit: int | None
    used: int | None
    reset_at: datetime | None
    tier: str | None = None
    # Usage-based billing lets an account go past its limit; such a key is not parked on a reading.
    overage_allowed: bool = False
    # The provider answered quota_exceeded instead of a reading.
    quota_exceeded: bool = False

    @property
    def remaining(self) -> int | None:
        if self.limit is None or self.used is None:
            return None
        return self.limit - self.used

    @property
    def exhausted(self) -> bool:
        if self.quota_exceeded:
            return True
        return self.remaining is not None and self.remaining <= 0 and not self.overage_allowed


Probe = Callable[[str], Awaitable[QuotaReading]]


def elevenlabs_client(secret: str, base_url: str, http: httpx.AsyncClient) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=secret, base_url=base_url, httpx_client=http)


async def probe_elevenlabs(secret: str, *, base_url: str, http: httpx.AsyncClient, timeout: float) -> QuotaReading:
    """GET /v1/user/subscription with this key; raises the SDK's or httpx's exception on failure."""
    client = elevenlabs_client(secret, base_url, http)
    async with asyncio.timeout(timeout):
        sub = await client.user.subscription.get(request_options=NO_RETRIES)
    reset_unix = getattr(sub, "next_character_count_reset_unix", None)
    return QuotaReading(
        limit=_int_or_none(getattr(sub, "character_limit", None)),
        used=_int_or_none(getattr(sub, "character_count", None)),
        reset_at=datetime.fromtimestamp(reset_unix, tz=timezone.utc) if reset_unix else None,
        tier=getattr(sub, "tier", None),
        overage_allowed=bool(getattr(sub, "can_extend_character_limit", False))
        and bool(getattr(sub, "allowed_to_extend_character_limit", False)),
    )


def _int_or_none(value: object) -> int | None:
    try:
        return None if value is None else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
