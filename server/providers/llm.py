"""What the LLM providers share: one structured-output call, its answer, and its token usage.

Each LLM provider turns an `LlmRequest` (system text, user text, a strict JSON schema for the
answer, a token ceiling) into its own wire call through its official SDK, and returns the
parsed JSON object with the tokens the provider reports. An answer that is not a JSON object
raises RetryOnAnotherKey: the key bank counts it as that key's failure and tries another;
checking the object against the feature's model is the caller's job (it raises the same).
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from server.providers.base import Failure, FailureKind, Provider, QuotaReading, RetryOnAnotherKey


@dataclass(frozen=True)
class LlmRequest:
    model: str
    system: str
    user: str
    schema_name: str
    schema: dict[str, Any] = field(repr=False)
    max_tokens: int
    temperature: float = 0.7


@dataclass(frozen=True)
class LlmReply:
    data: dict[str, Any]
    input_tokens: int
    output_tokens: int
    model: str
    request_id: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class LlmProvider(Provider):
    quota_unit = "tokens"
    # The setting naming this provider's API root (tests and dev point it at the simulator).
    base_url_setting: ClassVar[str]

    @property
    def base_url(self) -> str:
        return getattr(self.settings, self.base_url_setting)

    @abc.abstractmethod
    async def complete(self, secret: str, request: LlmRequest) -> LlmReply:
        """One call on one key; raises the SDK's errors, or RetryOnAnotherKey for an unusable answer."""

    async def probe(self, secret: str, *, timeout: float) -> QuotaReading:
        """A model listing proves the key; these APIs do not tell a key's remaining spend, so the
        reading is unknown (the key bank then ranks by free concurrency alone) and an exhausted
        key shows itself by its quota error on use."""
        await self.list_models(secret, timeout=timeout)
        return QuotaReading(limit=None, used=None, reset_at=None)

    def classify(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, json.JSONDecodeError):
            # The SDK could not read the HTTP body at all (an HTML error page with a 200).
            return Failure(FailureKind.SERVER, message="unparseable response")
        return super().classify(exc)

    @abc.abstractmethod
    async def list_models(self, secret: str, *, timeout: float) -> list[str]:
        """Model ids this key may use."""


def json_object(text: str | None) -> dict[str, Any]:
    """The model's answer as a JSON object, or RetryOnAnotherKey."""
    if not text:
        raise RetryOnAnotherKey("empty reply")
    try:
        value = json.loads(text)
    except ValueError:
        raise RetryOnAnotherKey("reply is not valid JSON") from None
    if not isinstance(value, dict):
        raise RetryOnAnotherKey("reply is not a JSON object")
    return value


def tokens(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0
