"""What an upstream failure means for the key that produced it.

The key bank never retries blindly: each failure is sorted into a kind, and the kind decides
whether the key cools down, is parked until its quota resets, is disabled for an operator, or
whether the request itself was wrong (then no other key would do better, so no retry).
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import aiohttp
import httpx
from elevenlabs.core.api_error import ApiError as ProviderApiError

from server.web.errors import ApiError
from server.web.logs import REDACTOR

try:
    from elevenlabs.core.parse_error import ParsingError
except ImportError:  # SDK releases before ParsingError raised pydantic errors, not classified
    ParsingError = ()  # type: ignore[assignment,misc]

# A Retry-After beyond this is treated as this: a key parked for days should be an operator's call.
MAX_RETRY_AFTER = 3600.0

CONCURRENCY_CODES = {"too_many_concurrent_requests", "concurrent_limit_exceeded", "concurrency_limit_exceeded"}
QUOTA_CODES = {"quota_exceeded", "insufficient_quota", "credits_exhausted"}
INVALID_KEY_CODES = {"invalid_api_key", "api_key_invalid", "invalid_key"}
PERMISSION_CODES = {"missing_permissions", "missing_permission", "permission_denied"}


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


class UpstreamUserError(ApiError):
    """The provider rejected the request itself; another key would answer the same."""

    status, code = 400, "invalid_request"


class RetryOnAnotherKey(Exception):
    """Raised by an attempt whose answer was unusable (empty or corrupt audio): cool the key, try another."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Safe messages for the request errors users can act on; anything else gets the provider's text, scrubbed.
USER_MESSAGES = {
    "voice_not_found": "The selected voice does not exist or is not available.",
    "max_character_limit_exceeded": "The text is too long for this model; shorten it or split it.",
    "invalid_voice_settings": "The voice settings are out of range.",
    "model_not_found": "The selected model does not exist.",
    "invalid_output_format": "The requested output format is not available.",
}


def classify(exc: BaseException) -> Failure | None:
    """The failure an exception stands for, or None when it is not an upstream failure at all."""
    if isinstance(exc, ProviderApiError):
        return classify_api_error(exc.status_code, exc.headers or {}, exc.body)
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
    if isinstance(exc, ParsingError):
        # An answer that does not match the provider's schema: that server is having a bad moment.
        return Failure(FailureKind.SERVER, status=exc.status_code, message="unparseable response")
    return None


def classify_api_error(status: int | None, headers: Mapping[str, str], body: Any) -> Failure:
    code, message = detail_of(body)
    retry_after = parse_retry_after(headers)
    status = status or 0
    if status == 429:
        kind = FailureKind.CONCURRENCY if code in CONCURRENCY_CODES else FailureKind.BUSY
        return Failure(kind, status, code, message, retry_after)
    if status in (401, 402):
        if code in QUOTA_CODES or status == 402:
            kind = FailureKind.QUOTA
        elif code in PERMISSION_CODES:
            kind = FailureKind.PERMISSIONS
        else:
            # invalid_api_key and any other 401: the key cannot be used as it is.
            kind = FailureKind.INVALID_KEY
        return Failure(kind, status, code, message, retry_after)
    if status == 403:
        return Failure(FailureKind.FORBIDDEN, status, code, message)
    if status in (408, 409, 425) or status >= 500:
        kind = FailureKind.TIMEOUT if status == 408 else (FailureKind.BUSY if status in (409, 425) else FailureKind.SERVER)
        return Failure(kind, status, code, message, retry_after)
    return Failure(FailureKind.USER, status, code, message)


def user_error(failure: Failure) -> UpstreamUserError:
    """The API error shown to the user for a request the provider rejected."""
    status = 422 if failure.status == 422 else 400
    code = "validation_failed" if status == 422 else "invalid_request"
    message = USER_MESSAGES.get(failure.code or "") or (
        "The provider rejected the request" + (": " + failure.message if failure.message else ".")
    )
    details = {"upstream_status": failure.status}
    if failure.code:
        details["upstream_code"] = failure.code
    return UpstreamUserError(safe_text(message, 300), code=code, status=status, details=details)


def detail_of(body: Any) -> tuple[str | None, str]:
    """(code, message) from the provider's error body, whatever shape it took."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        code = detail.get("code") or detail.get("status")
        message = detail.get("message") or detail.get("msg") or ""
        # ElevenLabs puts the reason in `status` and sometimes a generic value in `code`.
        status_field = detail.get("status")
        if isinstance(status_field, str) and _known(status_field) and not _known(str(code)):
            code = status_field
        return (str(code) if code else None), safe_text(str(message))
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, dict):
            loc = ".".join(str(p) for p in first.get("loc", []) if p != "body")
            msg = str(first.get("msg", ""))
            return "validation_error", safe_text(f"{loc}: {msg}" if loc else msg)
    if isinstance(detail, str):
        return None, safe_text(detail)
    return None, ""


def _known(code: str) -> bool:
    return code in CONCURRENCY_CODES | QUOTA_CODES | INVALID_KEY_CODES | PERMISSION_CODES | set(USER_MESSAGES) | {
        "system_busy", "rate_limit_exceeded"
    }


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
