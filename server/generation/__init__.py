"""Generation: the panel's SFX and voice-over API on top of auth, credits, the key bank, audio and storage.

`setup(app)` registers the /v1 routes and a context that owns the shared ElevenLabs HTTP pool,
the voice list refresher and the retention sweeper. Needs the key bank's setup to run first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import AsyncIterator

from aiohttp import web

from server.appkeys import DB, METRICS, REDIS, SETTINGS
from server.generation.handlers import GENERATION, api
from server.generation.service import GenerationService

__all__ = ["GENERATION", "GenerationService", "setup"]

log = logging.getLogger("server.generation")

# In-flight generations get this long to finish and settle when the server stops.
DRAIN_SECONDS = 30.0


def setup(app: web.Application) -> None:
    api.register(app)
    app.cleanup_ctx.append(generation_ctx)


async def generation_ctx(app: web.Application) -> AsyncIterator[None]:
    from server.credits.ratelimit import RateLimiter
    from server.generation.retention import run_sweeper
    from server.generation.upstream import Upstream, create_http_client
    from server.generation.voices import VoiceCatalog
    from server.keybank import KEYBANK
    from server.storage import LocalStorage

    settings = app[SETTINGS]
    http = create_http_client(settings.upstream_max_connections)
    upstream = Upstream(http, settings.elevenlabs_base_url)
    voices = VoiceCatalog(settings, app[REDIS], app[KEYBANK], upstream)
    service = GenerationService(
        settings=settings, pool=app[DB], redis=app[REDIS], keybank=app[KEYBANK], upstream=upstream,
        storage=LocalStorage(settings.data_path / "audio"), voices=voices, metrics=app[METRICS],
        rate_limiter=RateLimiter(app[REDIS], settings),
    )
    app[GENERATION] = service
    background = [
        asyncio.create_task(_refresh_voices(voices, settings.voices_refresh_interval), name="voices-refresher"),
        asyncio.create_task(run_sweeper(service, interval=settings.retention_sweep_interval), name="generation-sweeper"),
    ]
    yield
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await service.drain(DRAIN_SECONDS)
    await http.aclose()


async def _refresh_voices(voices, interval: float) -> None:
    while True:
        await asyncio.sleep(interval * random.uniform(0.8, 1.0))
        try:
            await voices.refresh_if_leader()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("voice list refresh failed; will retry")
