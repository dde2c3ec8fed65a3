"""OpenAI through the official `openai` SDK: chat completions with a strict JSON schema."""

from __future__ import annotations

import asyncio
from typing import Any

import openai

from server.providers.base import Failure, FailureKind, classify_status, parse_retry_after, safe_text
from server.providers.llm import LlmProvider, LlmReply, LlmRequest, json_object, tokens

# 429 with this code: the account's credit is spent. Not a busy signal: park the key.
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


class OpenAI(LlmProvider):
    name = "openai"
    base_url_setting = "openai_base_url"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._http: Any = None

    def _pool(self) -> Any:
        if self._http is None:
            # One pool for every key; the SDK's own timeout is per operation, the key bank bounds the total.
            self._http = openai.DefaultAsyncHttpxClient()
        return self._http

    def client(self, secret: str) -> openai.AsyncOpenAI:
        # max_retries=0: the SDK would otherwise retry the same key; rotation is the key bank's.
        return openai.AsyncOpenAI(
            api_key=secret, base_url=self.base_url, max_retries=0, timeout=self.settings.upstream_attempt_timeout,
            http_client=self._pool(),
        )

    async def complete(self, secret: str, request: LlmRequest) -> LlmReply:
        completion = await self.client(secret).chat.completions.create(
            model=request.model,
            messages=[{"role": "system", "content": request.system}, {"role": "user", "content": request.user}],
            max_completion_tokens=request.max_tokens,
            temperature=request.temperature,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.schema, "strict": True},
            },
        )
        choice = completion.choices[0] if completion.choices else None
        data = json_object(choice.message.content if choice and choice.message else None)
        usage = completion.usage
        return LlmReply(
            data=data,
            input_tokens=tokens(usage.prompt_tokens if usage else 0),
            output_tokens=tokens(usage.completion_tokens if usage else 0),
            model=completion.model or request.model,
            request_id=getattr(completion, "_request_id", None) or completion.id,
        )

    async def list_models(self, secret: str, *, timeout: float) -> list[str]:
        async with asyncio.timeout(timeout):
            page = await self.client(secret).models.list()
        return [m.id for m in page.data]

    def classify_api_error(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, openai.APITimeoutError):
            return Failure(FailureKind.TIMEOUT, message=type(exc).__name__)
        if isinstance(exc, openai.APIConnectionError):
            return Failure(FailureKind.CONNECTION, message=type(exc).__name__)
        if isinstance(exc, openai.APIResponseValidationError):
            return Failure(FailureKind.SERVER, status=exc.status_code, message="unparseable response")
        if isinstance(exc, openai.APIStatusError):
            code = exc.code or (exc.type if isinstance(exc.type, str) else None)
            return classify_status(
                exc.status_code, code, safe_text(_message(exc.body)), parse_retry_after(exc.response.headers),
                quota_codes=QUOTA_CODES,
            )
        return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _message(body: object) -> str:
    return str(body.get("message") or "") if isinstance(body, dict) else ""
