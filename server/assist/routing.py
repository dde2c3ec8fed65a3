"""Which provider and model serve each assist feature, in the order they are tried.

Configuration (ASSIST_ROUTES), not code: `feature=provider:model>provider:model;...`, with a
`default` entry for features not named. A provider without an active key is skipped, a
failing one falls through to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

FEATURES = ("sfx_prompt", "spot", "voice_script")
DEFAULT = "default"


class RoutesError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_routes(raw: str) -> dict[str, tuple[Route, ...]]:
    """feature -> ordered routes, for every feature; raises RoutesError naming ASSIST_ROUTES."""
    from server.providers import REGISTRY

    table: dict[str, tuple[Route, ...]] = {}
    for entry in raw.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        feature, sep, chain = entry.partition("=")
        feature = feature.strip()
        if not sep or feature not in (*FEATURES, DEFAULT):
            raise RoutesError(f"ASSIST_ROUTES: {entry!r} must be <feature>=provider:model>..., feature one of "
                              f"{', '.join((*FEATURES, DEFAULT))}")
        routes = []
        for hop in chain.split(">"):
            provider, sep, model = hop.strip().partition(":")
            if not sep or not model.strip() or provider.strip() not in REGISTRY or provider.strip() == "elevenlabs":
                raise RoutesError(f"ASSIST_ROUTES: {hop.strip()!r} must be an LLM provider:model "
                                  f"(providers: {', '.join(p for p in REGISTRY if p != 'elevenlabs')})")
            routes.append(Route(provider.strip(), model.strip()))
        table[feature] = tuple(routes)
    default = table.get(DEFAULT)
    for feature in FEATURES:
        if feature not in table:
            if default is None:
                raise RoutesError(f"ASSIST_ROUTES names no route for {feature} and no default")
            table[feature] = default
    table.pop(DEFAULT, None)
    return table
