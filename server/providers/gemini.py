"""Google Gemini through the official `google-genai` SDK: JSON output under a response schema."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from google import genai
from google.genai import errors, types

from server.providers.base import Failure, FailureKind, classify_status, parse_retry_after, safe_text
from server.providers.llm import LlmProvider, LlmReply, LlmRequest, json_object, tokens

INVALID_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
# 429 RESOURCE_EXHAUSTED is both "slow down" and "nothing left today"; a daily quota id tells them apart.
DAILY_QUOTA = re.compile(r"per ?day", re.IGNORECASE)
# A key stands in for the real one in the shared client; each call sends its own key.
_PLACEHOLDER_KEY = "per-request-key"


class Gemini(LlmProvider):
    name = "gemini"
    base_url_setting = "gemini_base_url"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self._client: genai.Client | None = None
        self._session: aiohttp.ClientSession | None = None

    def client(self, secret: str) -> genai.Client:
        """A client for this key. Building one is costly (TLS contexts, pools): calls inside the
        key bank share one client instead and pass the key per request (see `_options`)."""
        return genai.Client(api_key=secret, http_options=self._http_options())

    def _shared(self) -> genai.Client:
        """One client and one aiohttp pool for every key (made inside the running loop)."""
        if self._client is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            options = self._http_options()
            options.aiohttp_client = self._session
            self._client = genai.Client(api_key=_PLACEHOLDER_KEY, http_options=options)
        return self._client

    def _http_options(self, secret: str | None = None) -> types.HttpOptions:
        return types.HttpOptions(
            base_url=self.base_url,
            timeout=int(self.settings.upstream_attempt_timeout * 1000),  # milliseconds
            # One attempt: the key bank decides whether to retry, and on which key.
            retry_options=types.HttpRetryOptions(attempts=1),
            headers={"x-goog-api-key": secret} if secret else None,
        )

    async def complete(self, secret: str, request: LlmRequest) -> LlmReply:
        response = await self._shared().aio.models.generate_content(
            model=request.model,
            contents=request.user,
            config=types.GenerateContentConfig(
                system_instruction=request.system,
                max_output_tokens=request.max_tokens,
                temperature=request.temperature,
                response_mime_type="application/json",
                response_json_schema=request.schema,
                http_options=self._http_options(secret),
            ),
        )
        data = json_object(response.text)
        usage = response.usage_metadata
        return LlmReply(
            data=data,
            input_tokens=tokens(usage.prompt_token_count if usage else 0),
            output_tokens=tokens(usage.candidates_token_count if usage else 0),
            model=response.model_version or request.model,
            request_id=response.response_id,
        )

    async def list_models(self, secret: str, *, timeout: float) -> list[str]:
        async with asyncio.timeout(timeout):
            pager = await self._shared().aio.models.list(
                config=types.ListModelsConfig(http_options=self._http_options(secret))
            )
        return [m.name or "" for m in pager.page]

    def classify_api_error(self, exc: BaseException) -> Failure | None:
        if not isinstance(exc, errors.APIError):
            return None
        status = exc.code if isinstance(exc.code, int) else None
        details = exc.details if isinstance(exc.details, dict) else {}
        reasons, quota_ids, retry_delay = _error_details(details)
        message = safe_text(exc.message or "")
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        retry_after = parse_retry_after(headers) or retry_delay
        code = next(iter(reasons), None) or exc.status
        if reasons & INVALID_KEY_REASONS or "api key not valid" in message.lower():
            return Failure(FailureKind.INVALID_KEY, status, code, message)
        if status == 429 and any(DAILY_QUOTA.search(q) for q in quota_ids):
            return Failure(FailureKind.QUOTA, status, code, message, retry_after)
        return classify_status(status, code, message, retry_after)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            self._client.close()
            self._client = None
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_details(body: dict[str, Any]) -> tuple[set[str], list[str], float | None]:
    """(reasons, quota ids, retry delay in seconds) from a google.rpc error body."""
    error = body.get("error", body)
    reasons: set[str] = set()
    quota_ids: list[str] = []
    retry_delay = None
    for item in error.get("details") or [] if isinstance(error, dict) else []:
        if not isinstance(item, dict):
            continue
        if item.get("reason"):
            reasons.add(str(item["reason"]))
        for violation in item.get("violations") or []:
            if isinstance(violation, dict) and violation.get("quotaId"):
                quota_ids.append(str(violation["quotaId"]))
        delay = item.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                retry_delay = float(delay[:-1])
            except ValueError:
                pass
    return reasons, quota_ids, retry_delay
