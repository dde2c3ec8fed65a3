"""ElevenLabs: the SDK client per key, how its errors read, its quota, and the audio calls.

Rotation, retries and deadlines belong to the key bank; here an attempt either returns usable
bytes with the provider's metadata or raises what `classify` sorts (the SDK's ApiError, httpx
transport errors, or RetryOnAnotherKey for an unusable 200 answer).
"""

from __future__ import annotations

import asyncio
import io
import json
import wave
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import httpx
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError as ProviderApiError
from elevenlabs.types import VoiceSettings
from httpx_aiohttp import HttpxAiohttpClient

from server.providers.base import (
    Failure,
    FailureKind,
    Provider,
    QuotaReading,
    RetryOnAnotherKey,
    classify_status,
    parse_retry_after,
    safe_text,
)

try:
    from elevenlabs.core.parse_error import ParsingError
except ImportError:  # SDK releases before ParsingError raised pydantic errors, not classified
    ParsingError = ()  # type: ignore[assignment,misc]

# Editors want 48 kHz; a WAV container tells the decoder its own sample format, raw PCM would not.
PREFERRED_FORMAT = "wav_48000"
# The SDK must never retry by itself: it would hammer the same key. The key bank rotates.
# Its default 1 KiB read size turns a 30-second WAV into thousands of async iterations.
NO_RETRIES: dict[str, Any] = {"max_retries": 0, "chunk_size": 64 * 1024}
MIN_AUDIO_BYTES = 64
STREAMING_PLACEHOLDER = 0x7FFF0000


@dataclass(frozen=True)
class UpstreamAudio:
    data: bytes
    output_format: str
    request_id: str | None
    character_cost: int | None


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class UpstreamHttpClient(HttpxAiohttpClient):
    """The SDK speaks httpx; underneath, aiohttp's C-accelerated client carries the bytes.

    httpcore's pure-Python HTTP/1.1 stack cost about 1 ms of CPU per generation, the largest
    share of the proxy's overhead after audio processing (scripts/bench_proxy.py).

    No cookie jar: one pool serves every key, so a cookie one key's answer set must never ride
    along with another key's request, and the provider's API needs none. (httpx also parses
    every response's cookies through urllib, a measurable cost per call.)
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, value: Any) -> None:
        return None


_NO_COOKIES = _NoCookies()


def create_http_client(max_connections: int) -> httpx.AsyncClient:
    """The one connection pool every per-key SDK client shares."""
    return UpstreamHttpClient(
        timeout=httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
    )


class Upstream:
    """The generation path's one SDK client for the life of the process.

    Building an AsyncElevenLabs and its sub-clients per call cost measurable CPU per generation
    (scripts/bench_proxy.py). The key travels with each request instead (`xi-api-key` in the
    request options, which the SDK sends over its own headers), so no secret sits in the client
    or in a long-lived map of clients.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        # The SDK insists on a key; the real one is in every request's options (see _options).
        self._client = AsyncElevenLabs(api_key="per-request", base_url=self.base_url, httpx_client=http)
        self._sfx = self._client.text_to_sound_effects.with_raw_response
        self._tts = self._client.text_to_speech.with_raw_response

    @staticmethod
    def _options(secret: str) -> dict[str, Any]:
        return {**NO_RETRIES, "additional_headers": {"xi-api-key": secret}}

    async def sound_effect(
        self, secret: str, *, text: str, duration_seconds: float | None, prompt_influence: float, loop: bool,
        model_id: str,
    ) -> UpstreamAudio:
        kwargs: dict[str, Any] = {"text": text, "prompt_influence": prompt_influence, "loop": loop, "model_id": model_id}
        if duration_seconds is not None:
            kwargs["duration_seconds"] = duration_seconds
        async with self._sfx.convert(output_format=PREFERRED_FORMAT, request_options=self._options(secret),
                                     **kwargs) as resp:
            data = await _read_all(resp.data)
            headers = resp.headers
        return _checked(data, headers)

    async def speech(
        self, secret: str, voice_id: str, *, text: str, model_id: str, voice_settings: dict[str, Any] | None,
        seed: int | None, previous_text: str | None, next_text: str | None,
    ) -> UpstreamAudio:
        kwargs: dict[str, Any] = {"text": text, "model_id": model_id}
        if voice_settings:
            kwargs["voice_settings"] = VoiceSettings(**voice_settings)
        if seed is not None:
            kwargs["seed"] = seed
        if previous_text:
            kwargs["previous_text"] = previous_text
        if next_text:
            kwargs["next_text"] = next_text
        async with self._tts.convert(voice_id, output_format=PREFERRED_FORMAT, request_options=self._options(secret),
                                     **kwargs) as resp:
            data = await _read_all(resp.data)
            headers = resp.headers
        return _checked(data, headers)

    async def voices(self, secret: str) -> list[dict[str, Any]]:
        result = await self._client.voices.get_all(request_options=self._options(secret))
        return [voice_summary(v) for v in result.voices]


class DirectUpstream(Upstream):
    """The two hot calls (sound effect, speech) straight over one aiohttp session; the rest via the SDK.

    Through the SDK each generation built an httpx request (URL parsing, header encoding, the
    SDK's jsonable_encoder) on top of aiohttp: about 1.5 ms of CPU, the largest single share
    of the proxy's own cost (scripts/bench_proxy.py --profile). The same request is a few lines
    here. Failures are raised as the SDK raises them (its ApiError with status, headers and body)
    or as aiohttp's own errors, so the key bank classifies both paths alike
    (tests/test_generation_upstream.py runs its fault tests against each).
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str, session: aiohttp.ClientSession) -> None:
        super().__init__(http, base_url)
        self.session = session
        self._sfx_url = f"{self.base_url}/v1/sound-generation"
        self._params = {"output_format": PREFERRED_FORMAT}

    async def sound_effect(
        self, secret: str, *, text: str, duration_seconds: float | None, prompt_influence: float, loop: bool,
        model_id: str,
    ) -> UpstreamAudio:
        body: dict[str, Any] = {"text": text, "prompt_influence": prompt_influence, "loop": loop, "model_id": model_id}
        if duration_seconds is not None:
            body["duration_seconds"] = duration_seconds
        return await self._post(self._sfx_url, secret, body)

    async def speech(
        self, secret: str, voice_id: str, *, text: str, model_id: str, voice_settings: dict[str, Any] | None,
        seed: int | None, previous_text: str | None, next_text: str | None,
    ) -> UpstreamAudio:
        body: dict[str, Any] = {"text": text, "model_id": model_id}
        if voice_settings:
            body["voice_settings"] = VoiceSettings(**voice_settings).model_dump(mode="json", by_alias=True, exclude_none=True)
        if seed is not None:
            body["seed"] = seed
        if previous_text:
            body["previous_text"] = previous_text
        if next_text:
            body["next_text"] = next_text
        return await self._post(f"{self.base_url}/v1/text-to-speech/{quote(voice_id, safe='')}", secret, body)

    async def _post(self, url: str, secret: str, body: dict[str, Any]) -> UpstreamAudio:
        async with self.session.post(url, params=self._params, json=body, headers={"xi-api-key": secret}) as resp:
            data = await resp.read()
            if resp.status >= 400:
                raise ProviderApiError(status_code=resp.status, headers=dict(resp.headers), body=_error_body(data))
            return _checked(data, resp.headers)


def create_session(max_connections: int) -> aiohttp.ClientSession:
    """The generation path's connection pool. No cookie jar: one pool serves every key."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=120.0),
    )


def _error_body(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")


def voice_summary(voice: Any) -> dict[str, Any]:
    labels = getattr(voice, "labels", None) or {}
    return {
        "voice_id": voice.voice_id,
        "name": voice.name or voice.voice_id,
        "category": getattr(voice, "category", None),
        "labels": {str(k): str(v) for k, v in labels.items()},
        "preview_url": getattr(voice, "preview_url", None),
        "description": getattr(voice, "description", None),
    }


async def _read_all(chunks: AsyncIterator[bytes]) -> bytes:
    buf = bytearray()
    async for chunk in chunks:
        buf.extend(chunk)
    return bytes(buf)


def _checked(data: bytes, headers: Mapping[str, str]) -> UpstreamAudio:
    """A 200 with an empty or broken body is the provider's fault: another key may do better."""
    if len(data) < MIN_AUDIO_BYTES:
        raise RetryOnAnotherKey("empty audio")
    if not _is_wav(data):
        raise RetryOnAnotherKey("audio is not a decodable WAV")
    return UpstreamAudio(
        data=data,
        output_format=PREFERRED_FORMAT,
        request_id=headers.get("request-id") or headers.get("x-request-id"),
        character_cost=_int_or_none(headers.get("character-cost")),
    )


def _is_wav(data: bytes) -> bool:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    try:
        with wave.open(io.BytesIO(data)) as w:
            frames = w.getnframes()
            expected = frames * w.getsampwidth() * w.getnchannels()
            # A body cut short still carries the header's promise; compare against what arrived.
            got = len(w.readframes(frames))
    except (wave.Error, EOFError, ValueError):
        return False
    if got == 0:
        return False
    # Streamed WAVs may carry a placeholder size in the header; only a real size can be checked.
    return got == expected or expected >= STREAMING_PLACEHOLDER


def _int_or_none(value: Any) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


# --- the key bank's side: errors and quota ------------------------------------------------------

CONCURRENCY_CODES = frozenset({"too_many_concurrent_requests", "concurrent_limit_exceeded", "concurrency_limit_exceeded"})
QUOTA_CODES = frozenset({"quota_exceeded", "insufficient_quota", "credits_exhausted"})
INVALID_KEY_CODES = frozenset({"invalid_api_key", "api_key_invalid", "invalid_key"})
PERMISSION_CODES = frozenset({"missing_permissions", "missing_permission", "permission_denied"})

# Safe messages for the request errors users can act on; anything else gets the provider's text, scrubbed.
USER_MESSAGES = {
    "voice_not_found": "The selected voice does not exist or is not available.",
    "max_character_limit_exceeded": "The text is too long for this model; shorten it or split it.",
    "invalid_voice_settings": "The voice settings are out of range.",
    "model_not_found": "The selected model does not exist.",
    "invalid_output_format": "The requested output format is not available.",
}
_KNOWN = CONCURRENCY_CODES | QUOTA_CODES | INVALID_KEY_CODES | PERMISSION_CODES | set(USER_MESSAGES) | {
    "system_busy", "rate_limit_exceeded"
}


class ElevenLabs(Provider):
    name = "elevenlabs"
    quota_unit = "characters"
    validation_needs = "the user_read permission, to read its quota"
    user_messages = USER_MESSAGES

    def __init__(self, settings, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings)
        self._http = http
        self._owns_http = http is None

    @property
    def http(self) -> httpx.AsyncClient:
        """The pool for the key bank's calls (probes); generation has its own (Upstream)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=10.0),
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            )
        return self._http

    def client(self, secret: str) -> AsyncElevenLabs:
        return AsyncElevenLabs(api_key=secret, base_url=self.settings.elevenlabs_base_url, httpx_client=self.http)

    async def probe(self, secret: str, *, timeout: float) -> QuotaReading:
        """GET /v1/user/subscription with this key; raises the SDK's or httpx's exception on failure."""
        async with asyncio.timeout(timeout):
            sub = await self.client(secret).user.subscription.get(request_options={"max_retries": 0})
        reset_unix = getattr(sub, "next_character_count_reset_unix", None)
        return QuotaReading(
            limit=_int_or_none(getattr(sub, "character_limit", None)),
            used=_int_or_none(getattr(sub, "character_count", None)),
            reset_at=datetime.fromtimestamp(reset_unix, tz=timezone.utc) if reset_unix else None,
            tier=getattr(sub, "tier", None),
            overage_allowed=bool(getattr(sub, "can_extend_character_limit", False))
            and bool(getattr(sub, "allowed_to_extend_character_limit", False)),
        )

    def usage_from_headers(self, headers: Mapping[str, str]) -> float | None:
        for name, value in headers.items():
            if name.lower() == "character-cost":
                try:
                    return float(value)
                except ValueError:
                    return None
        return None

    def classify_api_error(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, ProviderApiError):
            return classify_api_error(exc.status_code, exc.headers or {}, exc.body)
        if isinstance(exc, ParsingError):
            # An answer that does not match the provider's schema: that server is having a bad moment.
            return Failure(FailureKind.SERVER, status=exc.status_code, message="unparseable response")
        return None

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None


def classify_api_error(status: int | None, headers: Mapping[str, str], body: Any) -> Failure:
    code, message = detail_of(body)
    return classify_status(
        status, code, message, parse_retry_after(headers), concurrency_codes=CONCURRENCY_CODES,
        quota_codes=QUOTA_CODES, permission_codes=PERMISSION_CODES,
    )


def detail_of(body: Any) -> tuple[str | None, str]:
    """(code, message) from the provider's error body, whatever shape it took."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        code = detail.get("code") or detail.get("status")
        message = detail.get("message") or detail.get("msg") or ""
        # ElevenLabs puts the reason in `status` and sometimes a generic value in `code`.
        status_field = detail.get("status")
        if isinstance(status_field, str) and status_field in _KNOWN and str(code) not in _KNOWN:
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
