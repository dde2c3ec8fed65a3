"""Request and response shapes of the generation API (validated input, documented output)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import pydantic

from server.web.api import ApiModel, ApiQuery, NonBlank

Format = Literal["wav", "mp3"]
Kind = Literal["sfx", "voice"]


class SfxRequest(ApiModel):
    prompt: NonBlank = pydantic.Field(min_length=1, max_length=1000, description="What the sound is")
    duration_seconds: float | None = pydantic.Field(
        default=None, ge=0.5, le=30,
        description="Length in seconds, delivered to the sample (48,000 per second); absent or null lets the model "
                    "choose, and trailing silence is then trimmed",
    )
    prompt_influence: float = pydantic.Field(default=0.3, ge=0, le=1)
    loop: bool = False
    variations: int = pydantic.Field(default=1, ge=1, le=4, description="Takes to generate (limited by plan)")
    format: Format = pydantic.Field(default="wav", description="Loops always come as WAV: an MP3 cannot loop sample-exactly")
    bit_depth: Literal[16, 24] = 16
    reuse: bool = pydantic.Field(default=False, description="Allow an identical earlier result at the cache price")


class VoiceSettingsIn(ApiModel):
    stability: float | None = pydantic.Field(default=None, ge=0, le=1)
    similarity_boost: float | None = pydantic.Field(default=None, ge=0, le=1)
    style: float | None = pydantic.Field(default=None, ge=0, le=1)
    speed: float | None = pydantic.Field(default=None, ge=0.7, le=1.2)
    use_speaker_boost: bool | None = None


class VoiceRequest(ApiModel):
    # The plan's max_voice_chars is the real limit; this bound only stops absurd bodies early.
    text: NonBlank = pydantic.Field(min_length=1, max_length=50_000)
    voice_id: str = pydantic.Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    model_id: str | None = pydantic.Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    voice_settings: VoiceSettingsIn | None = None
    seed: int | None = pydantic.Field(default=None, ge=0, le=4_294_967_295)
    format: Format = "wav"
    bit_depth: Literal[16, 24] = 16
    reuse: bool = False


class HistoryQuery(ApiQuery):
    kind: Kind | None = None
    cursor: str | None = pydantic.Field(default=None, max_length=200)
    limit: int = pydantic.Field(default=20, ge=1, le=100)


class GenerationOut(pydantic.BaseModel):
    id: str
    kind: Kind
    prompt: str | None = None
    text: str | None = None
    variation: int = pydantic.Field(description="0-based index of this take among its request's variations")
    takes: int = pydantic.Field(description="How many variations its request asked for")
    take_label: str | None = pydantic.Field(description='"take 2 of 3" when its request asked for several, else null')
    duration_seconds: float | None
    sample_rate: int | None
    credits: int
    format: str | None
    filename: str
    download_url: str
    cached: bool
    created_at: datetime


class AudioLink(pydantic.BaseModel):
    url: str = pydantic.Field(description="Where to GET the audio: a presigned bucket URL (no Authorization "
                                          "header; send none) or, when direct is false, this API's download URL")
    direct: bool = pydantic.Field(description="true: a short-lived presigned URL to the bucket")
    expires_in: int | None = pydantic.Field(description="seconds the presigned URL stays valid; null when not direct")


class QueueOut(pydantic.BaseModel):
    waiting: int = pydantic.Field(description="your generation requests now waiting for a free generator")
    ahead: int | None = pydantic.Field(description="requests of any account before your first waiting one; "
                                                   "null when none of yours waits")
    wait_limit_seconds: float = pydantic.Field(description="how long a request waits at most before 503")


class CreditsOut(pydantic.BaseModel):
    charged: int
    remaining: int | None = pydantic.Field(description="null on unlimited plans")


class FailedVariation(pydantic.BaseModel):
    variation: int
    error: dict


class GenerationsCreated(pydantic.BaseModel):
    generations: list[GenerationOut]
    credits: CreditsOut
    failed: list[FailedVariation] = pydantic.Field(default_factory=list, description="Takes that failed (not charged)")


class GenerationPage(pydantic.BaseModel):
    items: list[GenerationOut]
    next_cursor: str | None


class VoiceOut(pydantic.BaseModel):
    voice_id: str
    name: str
    category: str | None
    labels: dict[str, str]
    preview_url: str | None
    description: str | None


class VoiceList(pydantic.BaseModel):
    voices: list[VoiceOut]
