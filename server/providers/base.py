"""What every provider shares: the kinds of failure, a quota reading, and the provider interface.

The key bank never retries blindly: each failure is sorted into a kind, and the kind decides
whether the key cools down, is parked until its quota resets, is disabled for an operator, or
whether the request itself was wrong (then no other key would do better, so no retry). Each
provider module sorts its own SDK's errors; the transport troubles every SDK shares (timeouts,
resets, refused connections) are sorted here once.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Mapping

import aiohttp
import httpx

from server.settings import Settings
from server.web.errors import ApiError
from server.web.logs import REDACTOR

# A Retry-After beyond this is treated as this: a key parked for days should be an operator's call.
MAX_RETRY_AFTER = 3600.0


class FailureKind(str, enum.Enum):
    CONCURRENCY = "concurrency_limited"  # that key is at its cap: another key now, no cooldown
    BUSY = "busy"  # 429 system busy / rate limited: cooldown with backoff
    SERVER = "server_error"  # 5xx or an unusable answer: cooldown with backoff
    TIMEOUT = "timeout"
    CONNECTION = "connection_error"
    QUOTA = "quota_exceeded"  # park the key until its quota resets
    INVALID_KEY = "invalid_key"  # disable, an operator must act
    PERMISSIONS = "missing_permissions"  # disable, an operator must act
    FORBIDDEN = "forbidden"  # this key may not do this; another key may
    USER = "user_error"  # the request is wrong: no retry

    @property
    def cools_down(self) -> bool:
        return self in (FailureKind.BUSY, FailureKind.SERVER, FailureKind.TIMEOUT, FailureKind.CONNECTION)

    @property
    def disables(self) -> bool:
        return self in (FailureKind.INVALID_KEY, FailureKind.PERMISSIONS)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    status: int | None = None
    code: str | None = None
    message: str = ""
    retry_after: float | None = None

    def describe(self) -> str:
        """Short, secret-free text for last_error and logs."""
        parts = [self.kind.value]
        if self.status:
            parts.append(str(self.status))
        if self.code and self.code != self.kind.value:
            parts.append(self.code)
        text = " ".join(parts)
        if self.message:
            text += ": " + self.message
        return safe_text(text, 300)


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


class UpstreamUserError(ApiError):
    """The provider rejected the request itself; another key would answer the same."""

    status, code = 400, "invalid_request"


class RetryOnAnotherKey(Exception):
    """Raised by an attempt whose answer was unusable (empty audio, a reply off its schema): cool
    the key, try another."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider(abc.ABC):
    """One upstream service: its SDK client, how its errors read, and how to read a key's quota.

    Adding a provider is a module with a subclass of this and one row in the registry
    (server/providers/__init__.py). The key bank only ever calls these methods.
    """

    name: ClassVar[str]
    # What a key's quota counts (ElevenLabs: characters; LLMs: tokens), shown beside quotas.
    quota_unit: ClassVar[str]
    # What validating a key calls, named in the error when a key may not do it.
    validation_needs: ClassVar[str] = "listing models"
    # Messages for the request errors users can act on, by the provider's error code.
    user_messages: ClassVar[Mapping[str, str]] = {}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def client(self, secret: str) -> Any:
        """The official SDK's client for one key, sharing this provider's connection pool."""

    @abc.abstractmethod
    async def probe(self, secret: str, *, timeout: float) -> QuotaReading:
        """Ask the provider about a key (valid? quota left?); raises what `classify` sorts."""

    @abc.abstractmethod
    def classify_api_error(self, exc: BaseException) -> Failure | None:
        """The failure one of this SDK's own exceptions stands for, or None when it is not one."""

    def classify(self, exc: BaseException) -> Failure | None:
        """The failure an exception stands for, or None when it is not an upstream failure at all."""
        return self.classify_api_error(exc) or classify_transport(exc)

    def usage_from_headers(self, headers: Mapping[str, str]) -> float | None:
        """Quota an answer used, when the provider states it in response headers."""
        return None

    def user_error(self, failure: Failure) -> UpstreamUserError:
        return user_error(failure, self.user_messages)

    async def aclose(self) -> None:
        """Close connection pools the provider opened."""


def classify_transport(exc: BaseException) -> Failure | None:
    """Failures every SDK shares: our own RetryOnAnotherKey, timeouts and connection trouble."""
    if isinstance(exc, RetryOnAnotherKey):
        return Failure(FailureKind.SERVER, message=safe_text(exc.reason))
    cause = exc.__cause__
    if isinstance(exc, httpx.TransportError) and isinstance(cause, aiohttp.ClientError):
        # The aiohttp transport reports every aiohttp connection error as httpx.ConnectTimeout;
        # a reset or a dropped connection is not a timeout, so sort by what really happened.
        exc = cause
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return Failure(FailureKind.TIMEOUT, message=type(exc).__name__)
    if isinstance(exc, aiohttp.ClientError):
        return Failure(FailureKind.CONNECTION, message=type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException) or isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Failure(FailureKind.TIMEOUT, message=type(exc).__name__)
    if isinstance(exc, httpx.TransportError) or isinstance(exc, ConnectionError):
        return Failure(FailureKind.CONNECTION, message=type(exc).__name__)
    return None


def classify_status(
    status: int | None, code: str | None, message: str, retry_after: float | None, *,
    concurrency_codes: frozenset[str] = frozenset(), quota_codes: frozenset[str] = frozenset(),
    permission_codes: frozenset[str] = frozenset(),
) -> Failure:
    """The common reading of an HTTP error status; providers pass the codes that refine it."""
    status = status or 0
    if status == 429:
        if code in quota_codes:
            return Failure(FailureKind.QUOTA, status, code, message, retry_after)
        kind = FailureKind.CONCURRENCY if code in concurrency_codes else FailureKind.BUSY
        return Failure(kind, status, code, message, retry_after)
    if status in (401, 402):
        if code in quota_codes or status == 402:
            kind = FailureKind.QUOTA
        elif code in permission_codes:
            kind = FailureKind.PERMISSIONS
        else:
            # An invalid key and any other 401: the key cannot be used as it is.
            kind = FailureKind.INVALID_KEY
        return Failure(kind, status, code, message, retry_after)
    if status == 403:
        return Failure(FailureKind.FORBIDDEN, status, code, message)
    if status in (408, 409, 425) or status >= 500:
        kind = FailureKind.TIMEOUT if status == 408 else (FailureKind.BUSY if status in (409, 425) else FailureKind.SERVER)
        return Failure(kind, status, code, message, retry_after)
    return Failure(FailureKind.USER, status, code, message)


def user_error(failure: Failure, messages: Mapping[str, str] | None = None) -> UpstreamUserError:
    """The API error shown to the user for a request the provider rejected."""
    status = 422 if failure.status == 422 else 400
    code = "validation_failed" if status == 422 else "invalid_request"
    message = (messages or {}).get(failure.code or "") or (
        "The provider rejected the request" + (": " + failure.message if failure.message else ".")
    )
    details: dict[str, Any] = {"upstream_status": failure.status}
    if failure.code:
        details["upstream_code"] = failure.code
    return UpstreamUserError(safe_text(message, 300), code=code, status=status, details=details)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or HTTP date), or None."""
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    raw = str(raw).strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def safe_text(text: str, limit: int = 200) -> str:
    """Provider text made fit for users and logs: secrets scrubbed, one line, bounded."""
    text = REDACTOR.scrub(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
