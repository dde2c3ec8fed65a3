"""Canned, schema-valid answers of the simulated LLMs, one builder per response schema.

The assist prompts send their input as a JSON object inside the user message; the builders read
it back so a demo answer fits what was asked (a cue per marker, prompts about the idea given).
An unknown schema gets an empty object, which the caller's validation rejects, as it would a
real model's wrong answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable


def input_of(user_text: str) -> dict[str, Any]:
    """The JSON object embedded in the prompt (first "{" to last "}"), or {}."""
    start, end = user_text.find("{"), user_text.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        value = json.loads(user_text[start : end + 1])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def sfx_prompts(data: dict[str, Any]) -> dict[str, Any]:
    idea = str(data.get("idea") or "a sound").strip()[:120]
    scene = str(data.get("context") or "").strip()
    where = f" in {scene[:80]}" if scene else ""
    return {"prompts": [
        {"prompt": f"{idea}{where}, close-miked, dry studio recording, crisp transient detail",
         "duration_seconds": 2.0, "loop": False, "prompt_influence": 0.5},
        {"prompt": f"{idea}{where}, heard from across a reverberant hallway, natural room tone",
         "duration_seconds": 4.0, "loop": False, "prompt_influence": 0.35},
        {"prompt": f"continuous {idea} ambience{where}, even texture, seamless loop",
         "duration_seconds": 10.0, "loop": True, "prompt_influence": 0.3},
    ]}


def spot_cues(data: dict[str, Any]) -> dict[str, Any]:
    cues = []
    for marker in data.get("markers") or []:
        if not isinstance(marker, dict):
            continue
        name = str(marker.get("name") or "moment").strip() or "moment"
        comments = str(marker.get("comments") or "").strip()
        duration = marker.get("duration") or 2.0
        cues.append({
            "time": marker.get("time", 0.0),
            "prompt": f"{name}: {comments}" if comments else f"{name}, clean foley, close perspective",
            "duration_seconds": min(float(duration), 30.0),
            "loop": float(duration) > 10.0,
            "note": f"from marker {name!r}",
        })
    return {"cues": cues}


def voice_script(data: dict[str, Any]) -> dict[str, Any]:
    text = " ".join(str(data.get("script") or "").split())
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    tidy = " ".join(s[0].upper() + s[1:] for s in sentences)
    if tidy and tidy[-1] not in ".!?":
        tidy += "."
    notes = ["Collapsed extra spaces and capitalised sentence starts."]
    if data.get("target_seconds"):
        notes.append("Kept the wording; check the estimate against the target.")
    return {"script": tidy or "Silence.", "notes": notes}


BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sfx_prompts": sfx_prompts,
    "spot_cues": spot_cues,
    "voice_script": voice_script,
}


def reply_for(schema_name: str, user_text: str) -> dict[str, Any]:
    builder = BUILDERS.get(schema_name)
    return builder(input_of(user_text)) if builder else {}
