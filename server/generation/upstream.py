"""ElevenLabs calls through the official SDK, one attempt on one leased key.

Rotation, retries and deadlines belong to the key bank; here an attempt either returns usable
bytes with the provider's metadata or raises what the key bank classifies (the SDK's ApiError,
httpx transport errors, or RetryOnAnotherKey for an unusable 200 answer).
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
from elevenlabs import AsyncElevenLabs
from httpx_aiohttp import HttpxAiohttpClient
from elevenlabs.types import VoiceSettings

from server.keybank.failures import RetryOnAnotherKey

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
    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")

    def client(self, secret: str) -> AsyncElevenLabs:
        # Cheap to build (sub-clients are lazy); building per call keeps no secret in a long-lived map.
        return AsyncElevenLabs(api_key=secret, base_url=self.base_url, httpx_client=self.http)

    async def sound_effect(
        self, secret: str, *, text: str, duration_seconds: float | None, prompt_influence: float, loop: bool,
        model_id: str,
    ) -> UpstreamAudio:
        kwargs: dict[str, Any] = {"text": text, "prompt_influence": prompt_influence, "loop": loop, "model_id": model_id}
        if duration_seconds is not None:
            kwargs["duration_seconds"] = duration_seconds
        raw = self.client(secret).text_to_sound_effects.with_raw_response
        async with raw.convert(output_format=PREFERRED_FORMAT, request_options=NO_RETRIES, **kwargs) as resp:
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
        raw = self.client(secret).text_to_speech.with_raw_response
        async with raw.convert(voice_id, output_format=PREFERRED_FORMAT, request_options=NO_RETRIES, **kwargs) as resp:
            data = await _read_all(resp.data)
            headers = resp.headers
        return _checked(data, headers)

    async def voices(self, secret: str) -> list[dict[str, Any]]:
        result = await self.client(secret).voices.get_all(request_options=NO_RETRIES)
        return [voice_summary(v) for v in result.voices]


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


def _checked(data: bytes, headers: dict[str, str]) -> UpstreamAudio:
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


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
