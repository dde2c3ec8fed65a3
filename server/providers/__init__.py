"""Every upstream provider in one place, chosen by name.

The registry below is the only list of providers: the key bank accepts, probes and classifies
keys of these names and never imports an SDK itself. A provider module is imported when it is
first used, so a process that never talks to Gemini never loads its SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

from server.providers.base import (
    Failure,
    FailureKind,
    Provider,
    QuotaReading,
    RetryOnAnotherKey,
    UpstreamUserError,
    classify_transport,
    parse_retry_after,
    safe_text,
)
from server.settings import Settings

__all__ = [
    "REGISTRY", "Failure", "FailureKind", "Provider", "Providers", "QuotaReading", "RetryOnAnotherKey",
    "UpstreamUserError", "classify_transport", "parse_retry_after", "safe_text",
]

# name -> "module:class". Adding a provider: one module with a Provider subclass, one row here.
REGISTRY: dict[str, str] = {
    "elevenlabs": "server.providers.elevenlabs:ElevenLabs",
    "openai": "server.providers.openai:OpenAI",
    "anthropic": "server.providers.anthropic:Anthropic",
    "gemini": "server.providers.gemini:Gemini",
}


def provider_class(name: str) -> type[Provider]:
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


class Providers:
    """One instance of each provider used by a process, each with its own connection pool."""

    def __init__(self, settings: Settings, **overrides: Provider) -> None:
        self.settings = settings
        self._made: dict[str, Provider] = dict(overrides)

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(REGISTRY)

    def get(self, name: str) -> Provider:
        provider = self._made.get(name)
        if provider is None:
            if name not in REGISTRY:
                raise LookupError(f"no provider named {name!r}")
            provider = self._made[name] = provider_class(name)(self.settings)
        return provider

    def classify(self, name: str, exc: BaseException) -> Failure | None:
        return self.get(name).classify(exc) if name in REGISTRY else classify_transport(exc)

    async def aclose(self) -> None:
        for provider in self._made.values():
            await provider.aclose()
        self._made.clear()

    def __repr__(self) -> str:  # never more than names
        return f"Providers({', '.join(self._made)})"


def describe() -> list[dict[str, Any]]:
    """Name and quota unit of every registered provider (for operators' listings)."""
    return [{"name": n, "quota_unit": provider_class(n).quota_unit} for n in REGISTRY]
