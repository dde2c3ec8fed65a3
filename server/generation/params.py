"""Normalised generation parameters: what decides the audio, hashed for idempotency and the cache.

Two hashes per request:
- `audio_hash`: everything that decides one result's audio (not the number of takes, not
  `reuse`); with the variation index it names a result the cache may serve again.
- `request_hash`: the whole request as the client sent it, normalised; an Idempotency-Key
  reused with a different `request_hash` is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from server.generation.models import SfxRequest, VoiceRequest

# Per-request text limits of the text-to-speech models (characters); unknown models get the smallest.
MODEL_TEXT_LIMITS = {
    "eleven_multilingual_v2": 10_000,
    "eleven_v3": 5_000,
    "eleven_flash_v2_5": 40_000,
    "eleven_turbo_v2_5": 40_000,
    "eleven_flash_v2": 30_000,
    "eleven_turbo_v2": 30_000,
    "eleven_monolingual_v1": 10_000,
}
DEFAULT_TEXT_LIMIT = 5_000
# Context passed beside a chunk for continuity; the provider only needs the neighbourhood.
CONTEXT_CHARS = 1_000

_SPACES = re.compile(r"\s+")


def squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Spec:
    kind: str
    params: dict[str, Any]  # normalised; stored in generations.params
    variations: int
    reuse: bool
    format: str
    bit_depth: int
    audio_hash: str = field(init=False)
    request_hash: str = field(init=False)

    def __post_init__(self) -> None:
        audio = {"kind": self.kind, **self.params}
        object.__setattr__(self, "audio_hash", digest(audio))
        object.__setattr__(self, "request_hash", digest({**audio, "variations": self.variations, "reuse": self.reuse}))

    @property
    def prompt(self) -> str | None:
        return self.params.get("prompt")

    @property
    def text(self) -> str | None:
        return self.params.get("text")

    @property
    def length_seconds(self) -> float | None:
        """A length the editor named, to be delivered to the sample; None lets the audio decide."""
        return self.params.get("duration_seconds") if self.kind == "sfx" else None

    @property
    def label(self) -> str:
        """What the file name is made from."""
        return self.prompt or self.text or self.kind


def sfx_spec(body: SfxRequest, *, model_id: str) -> Spec:
    # MP3 cannot hold a sample-exact loop: the encoder's priming and padding (about 24 ms) lengthen
    # it in every player that ignores the LAME gapless tag, Premiere among them. Loops come as WAV.
    fmt = "wav" if body.loop else body.format
    params = {
        "prompt": squash(body.prompt),
        "duration_seconds": None if body.duration_seconds is None else round(float(body.duration_seconds), 2),
        "prompt_influence": round(float(body.prompt_influence), 3),
        "loop": bool(body.loop),
        "model_id": model_id,
        "format": fmt,
        "bit_depth": body.bit_depth,
    }
    return Spec("sfx", params, body.variations, body.reuse, fmt, body.bit_depth)


def voice_spec(body: VoiceRequest, *, default_model: str) -> Spec:
    settings = None
    if body.voice_settings is not None:
        settings = {k: v for k, v in body.voice_settings.model_dump().items() if v is not None} or None
    params = {
        # Line breaks and spacing carry pauses in a script; only the ends are trimmed.
        "text": body.text.strip(),
        "voice_id": body.voice_id,
        "model_id": body.model_id or default_model,
        "voice_settings": settings,
        "seed": body.seed,
        "format": body.format,
        "bit_depth": body.bit_depth,
    }
    return Spec("voice", params, 1, body.reuse, body.format, body.bit_depth)


# --- splitting long scripts ------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def chunk_limit(model_id: str, configured: int) -> int:
    return max(1, min(configured, MODEL_TEXT_LIMITS.get(model_id, DEFAULT_TEXT_LIMIT)))


def split_script(text: str, limit: int) -> list[str]:
    """Chunks of at most `limit` characters, cut at sentence ends where possible, then at clause
    ends, then between words; a chunk never starts or ends with whitespace."""
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, limit: int) -> list[str]:
    out: list[str] = []
    for sentence in _split_keep(_SENTENCE_END, text):
        if len(sentence) <= limit:
            out.append(sentence)
            continue
        for clause in _split_keep(_CLAUSE_END, sentence):
            if len(clause) <= limit:
                out.append(clause)
            else:
                out.extend(_by_words(clause, limit))
    return out


def _split_keep(pattern: re.Pattern[str], text: str) -> list[str]:
    return [p.strip() for p in pattern.split(text) if p.strip()]


def _by_words(text: str, limit: int) -> list[str]:
    words, out, current = text.split(), [], ""
    for word in words:
        while len(word) > limit:  # a "word" longer than the limit: cut it hard
            if current:
                out.append(current)
                current = ""
            out.append(word[:limit])
            word = word[limit:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= limit:
            current = candidate
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    return out


def context_for(chunks: list[str], index: int) -> tuple[str | None, str | None]:
    """previous_text / next_text for chunk `index`: its neighbours, trimmed to the near side."""
    previous = chunks[index - 1][-CONTEXT_CHARS:] if index > 0 else None
    following = chunks[index + 1][:CONTEXT_CHARS] if index + 1 < len(chunks) else None
    return previous, following
