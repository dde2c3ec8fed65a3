"""Request and response models of /v1/assist, and the models an LLM's answer must pass.

The answer models are the API's own: an LLM reply that does not validate against them is a
provider failure (another key or provider is tried) and is never charged.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

import pydantic

from server.web.api import ApiModel, ApiQuery

MAX_PROMPT_CHARS = 450  # what the sound model accepts comfortably
MAX_SEQUENCE_SECONDS = 6 * 3600
MAX_MARKERS = 200
MAX_TRANSCRIPT_LINES = 500
MAX_SCRIPT_CHARS = 5000

Seconds = Annotated[float, pydantic.Field(ge=0, le=MAX_SEQUENCE_SECONDS, allow_inf_nan=False)]


# --- the LLM's answers (strict: unknown fields and wrong types are failures) ---------------------


class Reply(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)


class SfxPromptOption(Reply):
    prompt: str = pydantic.Field(min_length=3, max_length=MAX_PROMPT_CHARS, description="A text-to-sound prompt")
    duration_seconds: float | None = pydantic.Field(
        ge=0.5, le=30, allow_inf_nan=False, description="Suggested length; null lets the sound model choose"
    )
    loop: bool = pydantic.Field(description="Generate as a seamless loop")
    prompt_influence: float = pydantic.Field(ge=0, le=1, allow_inf_nan=False, description="0 to 1: how literally to follow")


class SfxPromptsReply(Reply):
    prompts: list[SfxPromptOption] = pydantic.Field(min_length=3, max_length=3)


class CueDraft(Reply):
    """A cue as the model proposed it; times and lengths are clamped to the sequence afterwards."""

    time: float = pydantic.Field(allow_inf_nan=False)
    prompt: str = pydantic.Field(min_length=3, max_length=MAX_PROMPT_CHARS)
    duration_seconds: float = pydantic.Field(allow_inf_nan=False)
    loop: bool
    note: str = pydantic.Field(max_length=500)


class SpotReply(Reply):
    cues: list[CueDraft] = pydantic.Field(max_length=2 * MAX_MARKERS)


class VoiceScriptReply(Reply):
    script: str = pydantic.Field(min_length=1, max_length=2 * MAX_SCRIPT_CHARS)
    notes: list[Annotated[str, pydantic.Field(max_length=500)]] = pydantic.Field(max_length=10)


# --- requests ---------------------------------------------------------------------------------------


class SfxPromptRequest(ApiModel):
    idea: str = pydantic.Field(min_length=1, max_length=200, description='A short idea, e.g. "door"')
    context: str | None = pydantic.Field(None, max_length=1000, description="Optional scene context")


class Marker(ApiModel):
    time: Seconds = pydantic.Field(description="Seconds from the sequence start")
    name: str = pydantic.Field("", max_length=200)
    comments: str = pydantic.Field("", max_length=1000)
    duration: float | None = pydantic.Field(None, ge=0, le=3600, allow_inf_nan=False, description="Marker length in seconds")


class TranscriptLine(ApiModel):
    start: Seconds
    end: Seconds | None = None
    text: str = pydantic.Field(min_length=1, max_length=500)


class SpotRequest(ApiModel):
    # Half a second: the shortest sound a cue can hold.
    sequence_duration: float = pydantic.Field(ge=0.5, le=MAX_SEQUENCE_SECONDS, allow_inf_nan=False,
                                              description="Length of the sequence in seconds")
    markers: list[Marker] = pydantic.Field(min_length=1, max_length=MAX_MARKERS)
    transcript: list[TranscriptLine] = pydantic.Field(default_factory=list, max_length=MAX_TRANSCRIPT_LINES)

    @pydantic.model_validator(mode="after")
    def _inside_the_sequence(self) -> "SpotRequest":
        late = [i for i, m in enumerate(self.markers) if m.time > self.sequence_duration]
        if late:
            raise ValueError(f"markers {late[:10]} lie after the sequence's end ({self.sequence_duration:g} s)")
        return self


class VoiceScriptRequest(ApiModel):
    script: str = pydantic.Field(min_length=1, max_length=MAX_SCRIPT_CHARS)
    voice_id: str | None = pydantic.Field(None, min_length=1, max_length=100, description="The voice it will be read by")
    speed: float = pydantic.Field(1.0, ge=0.7, le=1.2, allow_inf_nan=False, description="The voice's speed setting")
    target_seconds: float | None = pydantic.Field(None, ge=1, le=3600, allow_inf_nan=False,
                                                  description="Length the read should fit, if any")


# --- responses ----------------------------------------------------------------------------------------


class AssistUsage(pydantic.BaseModel):
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    credits_charged: int
    credits_remaining: int | None = pydantic.Field(description="null on unlimited plans")
    prompt_version: str
    replayed: bool = pydantic.Field(False, description="true when an Idempotency-Key retry was answered again, uncharged")


class SfxPromptResponse(pydantic.BaseModel):
    id: str
    prompts: list[SfxPromptOption]
    usage: AssistUsage


class SpotCue(pydantic.BaseModel):
    time: float = pydantic.Field(description="Seconds from the sequence start, within the sequence")
    prompt: str
    duration_seconds: float = pydantic.Field(description="0.5 to 30, and never past the sequence's end where it fits")
    loop: bool
    note: str
    clamped: bool = pydantic.Field(description="true when the time or duration was moved into range")


class SpotResponse(pydantic.BaseModel):
    id: str
    cues: list[SpotCue]
    dropped: int = pydantic.Field(description="Cues discarded as duplicates or beyond the limit")
    usage: AssistUsage


class VoiceScriptResponse(pydantic.BaseModel):
    id: str
    script: str
    notes: list[str]
    words: int
    estimated_seconds: float = pydantic.Field(description="Spoken length at the voice's speed (about 150 words a minute at 1.0)")
    target_seconds: float | None
    fits: bool | None = pydantic.Field(description="Within 10% of target_seconds; null without a target")
    voice_id: str | None
    usage: AssistUsage


class AssistHistoryQuery(ApiQuery):
    limit: int = pydantic.Field(50, ge=1, le=200)


class AssistHistoryItem(pydantic.BaseModel):
    id: str
    feature: Literal["sfx_prompt", "spot", "voice_script"]
    status: str
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    credits_charged: int
    failure_reason: str | None
    prompt_version: str
    created_at: datetime


class AssistHistory(pydantic.BaseModel):
    items: list[AssistHistoryItem]
    tokens_this_month: int
    credits_this_month: int


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
