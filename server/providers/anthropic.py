"""Anthropic through the official `anthropic` SDK: a forced tool call gives schema-shaped JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic

from server.providers.base import Failure, FailureKind, RetryOnAnotherKey, classify_status, parse_retry_after, safe_text
from server.providers.llm import LlmProvider, LlmReply, LlmRequest, tokens

# Anthropic says "credit balance is too low" with a 400 (or 402 billing_error): park the key.
QUOTA_TYPES = frozenset({"billing_error"})
QUOTA_WORDS = ("credit balance is too low", "credit balance too low")


class Anthropic(LlmProvider):
    name = "anthropic"
    base_url_setting = "anthropic_base_url"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._http: Any = None

    def _pool(self) -> Any:
        if self._http is None:
            self._http = anthropic.DefaultAsyncHttpxClient()
        return self._http

    def client(self, secret: str) -> anthropic.AsyncAnthropic:
        # max_retries=0: the SDK would otherwise retry the same key; rotation is the key bank's.
        return anthropic.AsyncAnthropic(
            api_key=secret, base_url=self.base_url, max_retries=0, timeout=self.settings.upstream_attempt_timeout,
            http_client=self._pool(),
        )

    async def complete(self, secret: str, request: LlmRequest) -> LlmReply:
        message = await self.client(secret).messages.create(
            model=request.model,
            max_tokens=request.max_tokens,
            system=request.system,
            messages=[{"role": "user", "content": request.user}],
            tools=[{"name": request.schema_name, "description": "Give the answer.", "input_schema": request.schema}],
            tool_choice={"type": "tool", "name": request.schema_name},
        )
        answer = next(
            (b for b in message.content if getattr(b, "type", None) == "tool_use" and b.name == request.schema_name),
            None,
        )
        if answer is None or not isinstance(answer.input, dict):
            raise RetryOnAnotherKey("reply has no answer in the requested shape")
        usage = message.usage
        return LlmReply(
            data=answer.input,
            input_tokens=tokens(usage.input_tokens if usage else 0),
            output_tokens=tokens(usage.output_tokens if usage else 0),
            model=message.model or request.model,
            request_id=getattr(message, "_request_id", None) or message.id,
        )

    async def list_models(self, secret: str, *, timeout: float) -> list[str]:
        async with asyncio.timeout(timeout):
            page = await self.client(secret).models.list()
        return [m.id for m in page.data]

    def classify_api_error(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, anthropic.APITimeoutError):
            return Failure(FailureKind.TIMEOUT, message=type(exc).__name__)
        if isinstance(exc, anthropic.APIConnectionError):
            return Failure(FailureKind.CONNECTION, message=type(exc).__name__)
        if isinstance(exc, anthropic.APIResponseValidationError):
            return Failure(FailureKind.SERVER, status=exc.status_code, message="unparseable response")
        if isinstance(exc, anthropic.APIStatusError):
            kind_of = getattr(exc, "type", None)
            message = safe_text(getattr(exc, "api_message", None) or "")
            retry_after = parse_retry_after(exc.response.headers)
            status = exc.status_code
            if kind_of in QUOTA_TYPES or (status == 400 and any(w in message.lower() for w in QUOTA_WORDS)):
                return Failure(FailureKind.QUOTA, status, kind_of, message, retry_after)
            if status == 403:
                # A key without permission for the API is as unusable as an invalid one.
                return Failure(FailureKind.PERMISSIONS, status, kind_of, message)
            if status == 529:
                return Failure(FailureKind.BUSY, status, kind_of, message, retry_after)
            return classify_status(status, kind_of, message, retry_after)
        return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
