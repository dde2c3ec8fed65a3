"""What the server decides itself instead of trusting the model: cue placement and spoken length."""

from __future__ import annotations

import re

from server.assist.models import CueDraft, SpotCue

MIN_CUE_SECONDS = 0.5
MAX_CUE_SECONDS = 30.0
WORDS_PER_MINUTE = 150.0  # a natural read at speed 1.0
SENTENCE_PAUSE = 0.3
CLAUSE_PAUSE = 0.15
_WORD = re.compile(r"[\w'’]+(?:-[\w'’]+)*")


def clamp_cues(drafts: list[CueDraft], *, sequence_duration: float, limit: int) -> tuple[list[SpotCue], int]:
    """Cues inside the sequence, in time order, without duplicates, at most `limit`; and how many
    were dropped. A cue keeps its place where it can: only what lies outside moves."""
    latest_start = max(0.0, sequence_duration - MIN_CUE_SECONDS)
    seen: set[tuple[float, str]] = set()
    cues: list[SpotCue] = []
    dropped = 0
    for draft in sorted(drafts, key=lambda d: d.time):
        time = round(min(max(draft.time, 0.0), latest_start), 3)
        duration = min(max(draft.duration_seconds, MIN_CUE_SECONDS), MAX_CUE_SECONDS)
        room = sequence_duration - time
        if duration > room:
            duration = max(MIN_CUE_SECONDS, room)
        duration = round(duration, 3)
        identity = (time, draft.prompt.casefold())
        if identity in seen or len(cues) >= limit:
            dropped += 1
            continue
        seen.add(identity)
        moved = abs(time - draft.time) > 1e-3 or abs(duration - draft.duration_seconds) > 1e-3
        cues.append(SpotCue(time=time, prompt=draft.prompt, duration_seconds=duration, loop=draft.loop,
                            note=draft.note, clamped=moved))
    return cues, dropped


def count_words(script: str) -> int:
    return len(_WORD.findall(script))


def spoken_seconds(script: str, *, speed: float = 1.0) -> float:
    """Estimated read time: words at WORDS_PER_MINUTE scaled by the voice's speed, plus pauses."""
    words = count_words(script)
    sentences = len(re.findall(r"[.!?…]+(?=\s|$)", script))
    clauses = len(re.findall(r"[,;:—–]", script))
    seconds = words / (WORDS_PER_MINUTE * speed) * 60 + SENTENCE_PAUSE * sentences + CLAUSE_PAUSE * clauses
    return round(seconds, 1)


def fits(estimate: float, target: float | None) -> bool | None:
    return None if target is None else abs(estimate - target) <= 0.1 * target
