"""Static facts the simulator serves: premade voices, models, output formats and prices.

Numbers follow the public ElevenLabs documentation closely enough that the proxy's logic
(limits, costs, formats) meets realistic values; where the real service varies, a fixed
plausible value is chosen and documented here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
DEFAULT_TTS_MODEL = "eleven_multilingual_v2"
DEFAULT_SFX_MODEL = "eleven_text_to_sound_v2"
SFX_MODELS = ("eleven_text_to_sound_v2", "eleven_text_to_sound_v3")

# ElevenLabs credits per second of sound when a duration is given, and the flat price of an
# automatic-duration generation (the service charges a fixed amount when it picks the length).
SFX_CREDITS_PER_SECOND = 20
SFX_AUTO_DURATION_CREDITS = 100
SFX_MIN_SECONDS = 0.5
SFX_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class TtsModel:
    model_id: str
    name: str
    max_characters: int
    cost_factor: float  # ElevenLabs credits per character
    description: str


TTS_MODELS: dict[str, TtsModel] = {
    m.model_id: m
    for m in (
        TtsModel("eleven_multilingual_v2", "Eleven Multilingual v2", 10_000, 1.0,
                 "Our most life-like, emotionally rich model in 29 languages."),
        TtsModel("eleven_v3", "Eleven v3", 5_000, 1.0, "Our most expressive model."),
        TtsModel("eleven_flash_v2_5", "Eleven Flash v2.5", 40_000, 0.5, "Ultra low latency, 32 languages."),
        TtsModel("eleven_turbo_v2_5", "Eleven Turbo v2.5", 40_000, 0.5, "High quality, low latency, 32 languages."),
        TtsModel("eleven_flash_v2", "Eleven Flash v2", 30_000, 0.5, "Ultra low latency, English only."),
        TtsModel("eleven_turbo_v2", "Eleven Turbo v2", 30_000, 0.5, "English only, low latency."),
        TtsModel("eleven_monolingual_v1", "Eleven English v1", 10_000, 1.0, "Legacy English model."),
    )
}


def tts_cost(model: TtsModel, text: str) -> int:
    return max(1, math.ceil(len(text) * model.cost_factor))


def sfx_cost(duration_seconds: float | None) -> int:
    if duration_seconds is None:
        return SFX_AUTO_DURATION_CREDITS
    return max(1, math.ceil(duration_seconds * SFX_CREDITS_PER_SECOND))


def model_json(model: TtsModel) -> dict:
    """Shape of one entry of GET /v1/models (elevenlabs.types.Model)."""
    return {
        "model_id": model.model_id,
        "name": model.name,
        "can_be_finetuned": True,
        "can_do_text_to_speech": True,
        "can_do_voice_conversion": model.model_id == "eleven_multilingual_v2",
        "can_use_style": True,
        "can_use_speaker_boost": True,
        "serves_pro_voices": True,
        "token_cost_factor": model.cost_factor,
        "description": model.description,
        "requires_alpha_access": False,
        "max_characters_request_free_user": min(model.max_characters, 2_500),
        "max_characters_request_subscribed_user": model.max_characters,
        "maximum_text_length_per_request": model.max_characters,
        "languages": [{"language_id": "en", "name": "English"}],
        "model_rates": {"character_cost_multiplier": model.cost_factor},
        "concurrency_group": "turbo" if model.cost_factor < 1 else "standard",
    }


# --- output formats -----------------------------------------------------------------------

@dataclass(frozen=True)
class OutputFormat:
    name: str
    codec: str  # pcm, wav, mp3, opus, ulaw, alaw
    sample_rate: int
    bitrate_kbps: int | None

    @property
    def content_type(self) -> str:
        return {
            "pcm": "audio/pcm",
            "wav": "audio/wav",
            "mp3": "audio/mpeg",
            "opus": "audio/ogg",
            "ulaw": "audio/basic",
            "alaw": "audio/alaw",
        }[self.codec]


OUTPUT_FORMATS: dict[str, OutputFormat] = {}
for _rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
    OUTPUT_FORMATS[f"pcm_{_rate}"] = OutputFormat(f"pcm_{_rate}", "pcm", _rate, None)
    OUTPUT_FORMATS[f"wav_{_rate}"] = OutputFormat(f"wav_{_rate}", "wav", _rate, None)
for _name, _rate, _kbps in (("mp3_22050_32", 22050, 32), ("mp3_24000_48", 24000, 48), ("mp3_44100_32", 44100, 32),
                            ("mp3_44100_64", 44100, 64), ("mp3_44100_96", 44100, 96), ("mp3_44100_128", 44100, 128),
                            ("mp3_44100_192", 44100, 192)):
    OUTPUT_FORMATS[_name] = OutputFormat(_name, "mp3", _rate, _kbps)
for _kbps in (32, 64, 96, 128, 192):
    OUTPUT_FORMATS[f"opus_48000_{_kbps}"] = OutputFormat(f"opus_48000_{_kbps}", "opus", 48000, _kbps)
OUTPUT_FORMATS["ulaw_8000"] = OutputFormat("ulaw_8000", "ulaw", 8000, None)
OUTPUT_FORMATS["alaw_8000"] = OutputFormat("alaw_8000", "alaw", 8000, None)


# --- voices -------------------------------------------------------------------------------

def _premade(voice_id: str, name: str, gender: str, accent: str, age: str, description: str, use_case: str) -> dict:
    return {
        "voice_id": voice_id,
        "name": name,
        "category": "premade",
        "labels": {"accent": accent, "description": description, "age": age, "gender": gender, "use_case": use_case},
        "description": f"{name}: {description}, {accent} accent.",
    }


# Real premade voice ids, so configuration written against the simulator also works upstream.
PREMADE_VOICES: tuple[dict, ...] = (
    _premade("21m00Tcm4TlvDq8ikWAM", "Rachel", "female", "american", "young", "calm", "narration"),
    _premade("EXAVITQu4vr4xnSDxMaL", "Sarah", "female", "american", "young", "soft", "news"),
    _premade("JBFqnCBsd6RMkjVDRZzb", "George", "male", "british", "middle aged", "warm", "narration"),
    _premade("pNInz6obpgDQGcFmaJgB", "Adam", "male", "american", "middle aged", "deep", "narration"),
    _premade("TX3LPaxmHKxFdv7VOQHJ", "Liam", "male", "american", "young", "articulate", "narration"),
    _premade("XB0fDUnXU5powFXDhCwa", "Charlotte", "female", "swedish", "young", "seductive", "characters"),
)


def cloned_voice(owner_key: str, spec: str | dict) -> dict:
    """A key's own voice: from a name, or a dict with at least `name` (and optionally `voice_id`)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    name = spec["name"]
    # The id is derived from the owning key so two keys cloning "Narrator" get different voices,
    # as two real accounts would.
    derived = hashlib.sha256(f"{owner_key}\0{name}".encode()).hexdigest()[:20]
    return {
        "voice_id": spec.get("voice_id") or derived,
        "name": name,
        "category": spec.get("category", "cloned"),
        "labels": dict(spec.get("labels") or {}),
        "description": spec.get("description", f"{name} (instant voice clone)"),
    }


def voice_json(voice: dict, base_url: str) -> dict:
    """Shape of elevenlabs.types.Voice, with a preview served by the simulator itself."""
    return {
        **voice,
        "samples": None,
        "fine_tuning": None,
        "preview_url": f"{base_url}/_sim/previews/{voice['voice_id']}.mp3",
        "available_for_tiers": [],
        "settings": None,
        "sharing": None,
        "high_quality_base_model_ids": list(TTS_MODELS) if voice["category"] == "premade" else ["eleven_multilingual_v2"],
        "verified_languages": [],
        "is_owner": voice["category"] != "premade",
        "is_legacy": False,
        "is_mixed": False,
    }


def espeak_voice(voice: dict) -> tuple[str, int]:
    """An espeak-ng voice variant and pitch (0-99) that make each simulated voice sound distinct."""
    digest = hashlib.sha256(voice["voice_id"].encode()).digest()
    gender = (voice.get("labels") or {}).get("gender") or ("female" if digest[0] % 2 else "male")
    variant = f"en-us+{'f' if gender == 'female' else 'm'}{1 + digest[1] % 4}"
    return variant, 30 + digest[2] % 40
