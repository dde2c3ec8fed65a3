"""What a request costs, computed from its parameters before the upstream call.

Pure functions over the pricing_rules rows, so the reservation, the panel and the portal
quote with the same numbers. Nothing here touches the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

SFX, VOICE, REUSE, ASSIST = "sfx", "voice", "reuse", "assist"

# Decoders and resamplers add a few milliseconds to a clip; a 10 s request that comes back
# as 10.02 s must not cost a second block. Lengths are counted to the nearest 0.1 s.
_LENGTH_DECIMALS = 1


@dataclass(frozen=True)
class PricingRule:
    code: str
    description: str
    unit: str
    unit_size: int
    credits_per_block: int
    per_variation: bool
    minimum_credits: int
    reserve_units: int | None

    @classmethod
    def from_row(cls, row: Any) -> "PricingRule":
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def credits_for(self, units: float) -> int:
        if units < 0:
            raise ValueError("a length cannot be negative")
        blocks = math.ceil(round(units, _LENGTH_DECIMALS) / self.unit_size)
        return max(self.minimum_credits, blocks * self.credits_per_block)


@dataclass(frozen=True)
class Pricing:
    rules: Mapping[str, PricingRule]

    def rule(self, code: str) -> PricingRule:
        try:
            return self.rules[code]
        except KeyError:
            raise LookupError(f"no pricing rule {code!r}; the credits migration seeds it") from None


def quote_sfx(pricing: Pricing, *, duration_seconds: float | None, variations: int = 1, reuse: bool = False) -> int:
    """Credits for a sound effect.

    `duration_seconds=None` means the model picks the length: the reservation counts the
    rule's reserve_units (30 s), and the capture quotes again with the real length.
    """
    if variations < 1:
        raise ValueError("variations must be at least 1")
    rule = pricing.rule(REUSE if reuse else SFX)
    if rule.unit == "request":
        each = rule.credits_for(1)
    else:
        seconds = duration_seconds if duration_seconds is not None else rule.reserve_units
        if seconds is None:
            raise ValueError("the sfx rule has no reserve length for automatic durations")
        each = rule.credits_for(seconds)
    return each * variations if rule.per_variation else each


def quote_voice(pricing: Pricing, *, characters: int, reuse: bool = False) -> int:
    """Credits for a voice-over of `characters` characters (len of the text as sent upstream)."""
    if characters < 0:
        raise ValueError("characters cannot be negative")
    rule = pricing.rule(REUSE if reuse else VOICE)
    return rule.credits_for(1 if rule.unit == "request" else characters)


def quote_tokens(pricing: Pricing, *, tokens: int) -> int:
    """Credits for an LLM call of `tokens` tokens (prompt + reply): reserved on the call's ceiling,
    charged on what the provider reports."""
    if tokens < 0:
        raise ValueError("tokens cannot be negative")
    return pricing.rule(ASSIST).credits_for(tokens)
