"""Prompt assistance: LLM help for editors (sound prompts, spotting from markers, voice-over scripts).

`setup(app)` registers the /v1/assist routes and a context that builds the AssistService on the
key bank (which holds the LLM keys) and the credits domain. Needs the key bank's setup first;
uses the generation domain's voice list, when it is there, to check a voice id.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from server.appkeys import DB, REDIS, SETTINGS
from server.assist.service import AssistService

__all__ = ["ASSIST", "AssistService", "setup"]

ASSIST = web.AppKey("assist", AssistService)

DRAIN_SECONDS = 10.0


def setup(app: web.Application) -> None:
    from server.assist.handlers import api

    api.register(app)
    app.cleanup_ctx.append(assist_ctx)


async def assist_ctx(app: web.Application) -> AsyncIterator[None]:
    from server.credits.ratelimit import RateLimiter
    from server.generation import GENERATION
    from server.keybank import KEYBANK
    from server.web.errors import ValidationFailed

    generation = app.get(GENERATION)

    async def voice_check(voice_id: str) -> None:
        if generation is None:
            return
        owners, catalog = await generation.voices.owners(voice_id)
        if owners is None and catalog.complete and catalog.voices:
            raise ValidationFailed("The selected voice does not exist or is not available", details={"fields": [
                {"field": "voice_id", "location": "body", "type": "voice_not_found", "message": "No available voice has this id"}
            ]})

    service = AssistService(
        settings=app[SETTINGS], pool=app[DB], keybank=app[KEYBANK], rate_limiter=RateLimiter(app[REDIS], app[SETTINGS]),
        voice_check=voice_check,
    )
    app[ASSIST] = service
    yield
    await service.drain(DRAIN_SECONDS)
