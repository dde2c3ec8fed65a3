"""File names editors see in their bins: readable, safe on every filesystem, unique."""

from __future__ import annotations

import re
import unicodedata
import uuid

MAX_STEM = 48
_NON_WORD = re.compile(r"[^a-z0-9]+")


def slug(text: str, *, limit: int = MAX_STEM) -> str:
    """Lower-case ASCII words joined by hyphens, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = [w for w in _NON_WORD.split(ascii_text.lower()) if w]
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            if not out:
                out = word[:limit]
            break
        out = candidate
    return out


def filename_for(text: str | None, generation_id: uuid.UUID, ext: str, *, fallback: str) -> str:
    """`heavy-wooden-door-slams-3f9a1c.wav`: the prompt's words plus part of the id, so two takes
    of one prompt never overwrite each other in a project folder."""
    stem = slug(text or "") or fallback
    return f"{stem}-{generation_id.hex[:6]}.{ext}"


def content_disposition(filename: str) -> str:
    # The slug is plain ASCII without quotes or separators, so no RFC 5987 encoding is needed.
    return f'attachment; filename="{filename}"'
