"""Accounts, quotas, concurrency and injected faults of the simulated ElevenLabs service.

One `SimulatorState` is shared by the application and the test (or admin endpoint) that
drives it. It is plain data used from one event loop; nothing here awaits.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from server.simulator.catalog import PREMADE_VOICES, cloned_voice

FAULTS = frozenset({
    "429_concurrency", "429_busy", "401_invalid", "401_quota", "401_permissions", "500", "503",
    "slow", "hang", "reset", "truncated", "empty", "corrupt",
})
# Scopes of a fault: "generation" (sound generation and text to speech) or "all" (every
# authenticated endpoint, e.g. the subscription check too). An invalid key is invalid
# everywhere, so that fault defaults to "all"; other faults model trouble with generations.
SCOPES = frozenset({"generation", "all"})
DEFAULT_SLOW_DELAY = 2.0
QUOTA_PERIOD = 30 * 24 * 3600
REQUEST_LOG_SIZE = 10_000


def mask(api_key: str) -> str:
    """What may be shown of a key: its last four characters."""
    return api_key[-4:]


@dataclass
class Fault:
    kind: str
    times: int | None  # None: until cleared
    delay: float = 0.0
    retry_after: float | None = None
    scope: str = "generation"

    def applies_to(self, group: str) -> bool:
        return self.scope == "all" or group == "generation"

    def public(self) -> dict:
        return {"fault": self.kind, "times": self.times, "delay": self.delay,
                "retry_after": self.retry_after, "scope": self.scope}


@dataclass
class SimKey:
    api_key: str = field(repr=False)
    label: str
    character_limit: int
    max_concurrency: int
    tier: str
    voices: list[dict]
    quota_period: float
    reset_unix: int
    user_id: str = field(default_factory=lambda: uuid.uuid4().hex[:28])
    created_unix: int = field(default_factory=lambda: int(time.time()))
    character_count: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    requests: int = 0
    rejected_concurrency: int = 0
    faults: list[Fault] = field(default_factory=list)

    @property
    def last4(self) -> str:
        return mask(self.api_key)

    @property
    def remaining(self) -> int:
        return max(0, self.character_limit - self.character_count)

    def roll_quota(self, now: float) -> None:
        """Start a new quota period once the reset time has passed, as the real service does."""
        while now >= self.reset_unix:
            self.character_count = 0
            self.reset_unix += max(1, int(self.quota_period))

    def public(self) -> dict:
        return {
            "label": self.label, "last4": self.last4, "tier": self.tier,
            "character_count": self.character_count, "character_limit": self.character_limit,
            "next_character_count_reset_unix": self.reset_unix, "max_concurrency": self.max_concurrency,
            "in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight, "requests": self.requests,
            "rejected_concurrency": self.rejected_concurrency,
            "voices": [v["voice_id"] for v in self.voices],
            "faults": [f.public() for f in self.faults],
        }


class SimulatorState:
    """Everything the simulated service knows. Secrets are keys of `_keys` and never leave it:
    logs, stats and errors show only labels and last-four characters."""

    def __init__(self, *, request_log_size: int = REQUEST_LOG_SIZE) -> None:
        self._keys: dict[str, SimKey] = {}
        self.premade_voices: list[dict] = [dict(v) for v in PREMADE_VOICES]
        # Recent calls, newest last: {"method", "path", "key" (last 4), "query", "body", "status", "fault", "time"}.
        self.requests: deque[dict] = deque(maxlen=request_log_size)

    # --- accounts ---

    def add_key(self, api_key: str, *, character_limit: int = 100_000, max_concurrency: int = 5,
                tier: str = "creator", voices: Iterable[str | dict] | None = None, label: str | None = None,
                character_count: int = 0, reset_unix: int | None = None,
                quota_period: float = QUOTA_PERIOD) -> SimKey:
        """Register (or replace) an account's API key. `voices`: names or dicts of its cloned voices."""
        if not api_key or len(api_key) < 8:
            raise ValueError("api_key must be at least 8 characters")
        if max_concurrency < 1 or character_limit < 0:
            raise ValueError("max_concurrency must be >= 1 and character_limit >= 0")
        now = int(time.time())
        key = SimKey(
            api_key=api_key, label=label or f"key-{mask(api_key)}", character_limit=character_limit,
            max_concurrency=max_concurrency, tier=tier,
            voices=[cloned_voice(api_key, v) for v in (voices or ())],
            quota_period=quota_period, reset_unix=reset_unix if reset_unix is not None else now + int(quota_period),
            character_count=character_count,
        )
        self._keys[api_key] = key
        return key

    def remove_key(self, api_key: str) -> None:
        self._keys.pop(api_key, None)

    def key(self, api_key: str | None) -> SimKey | None:
        return self._keys.get(api_key) if api_key else None

    def keys(self) -> list[SimKey]:
        return list(self._keys.values())

    def set_usage(self, api_key: str, *, character_count: int | None = None, reset_unix: int | None = None) -> None:
        """Move an account's quota, e.g. to exhaust it or bring its reset time close."""
        key = self._require(api_key)
        if character_count is not None:
            key.character_count = character_count
        if reset_unix is not None:
            key.reset_unix = reset_unix

    def voices_for(self, key: SimKey) -> list[dict]:
        return self.premade_voices + key.voices

    def find_voice(self, key: SimKey, voice_id: str) -> dict | None:
        return next((v for v in self.voices_for(key) if v["voice_id"] == voice_id), None)

    def any_voice(self, voice_id: str) -> dict | None:
        """A voice of any account (previews are public URLs, like the real CDN links)."""
        for voice in self.premade_voices + [v for k in self._keys.values() for v in k.voices]:
            if voice["voice_id"] == voice_id:
                return voice
        return None

    # --- faults ---

    def inject(self, api_key: str, fault: str, *, times: int | None = None, delay: float = 0.0,
               retry_after: float | None = None, scope: str | None = None) -> Fault:
        """Make the next `times` calls with this key (all calls when None) fail as `fault`.

        `delay` waits before answering (for "slow" it is the slowness itself, default 2 s);
        `retry_after` adds a Retry-After header to 429/503 answers; `scope` is "generation"
        or "all" (default: "all" for 401_invalid, else "generation"). Faults queue in order.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        scope = scope or ("all" if fault == "401_invalid" else "generation")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {sorted(SCOPES)}")
        if fault == "slow" and delay <= 0:
            delay = DEFAULT_SLOW_DELAY
        entry = Fault(fault, times, float(delay), retry_after, scope)
        self._require(api_key).faults.append(entry)
        return entry

    def clear_faults(self, api_key: str | None = None) -> None:
        for key in ([self._require(api_key)] if api_key else self._keys.values()):
            key.faults.clear()

    def take_fault(self, key: SimKey, group: str) -> Fault | None:
        for fault in key.faults:
            if fault.applies_to(group):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        key.faults.remove(fault)
                return fault
        return None

    # --- stats ---

    def stats(self) -> dict:
        return {"keys": [k.public() for k in self._keys.values()], "requests_logged": len(self.requests)}

    def _require(self, api_key: str) -> SimKey:
        key = self._keys.get(api_key)
        if key is None:
            raise ValueError(f"unknown simulator key ending {mask(api_key)!r}")
        return key
