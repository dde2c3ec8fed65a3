"""One error type for the whole API; the middleware turns it into the JSON envelope."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details if details is not None else {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class PaymentRequired(ApiError):
    status, code = 402, "insufficient_credits"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    status, code = 422, "validation_failed"

    @classmethod
    def for_fields(cls, problems: list[dict[str, str]]) -> "ValidationFailed":
        """422 listing field problems (`{"field", "location", "message", "type"}`); the message names
        the first, so a client that shows only the message still says what to fix."""
        return cls(fields_message(problems), details={"fields": problems})


def fields_message(problems: list[dict[str, str]]) -> str:
    if not problems:
        return "The request is invalid"
    first = problems[0]
    message = f"{first.get('field') or first.get('location') or 'request'}: {first.get('message', 'is invalid')}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more)"
    return message


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None, details: Any = None) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(
            message,
            code=code,
            details={"retry_after": retry_after, **(details or {})},
            headers={"Retry-After": str(retry_after)},
        )


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, code: str | None = None, details: Any = None) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(
            message,
            code=code,
            details={"retry_after": retry_after, **(details or {})},
            headers={"Retry-After": str(retry_after)},
        )


class UpstreamError(ApiError):
    status, code = 502, "upstream_unavailable"
