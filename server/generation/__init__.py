"""Generation: the panel's SFX and voice-over API on top of auth, credits, the key bank, audio and storage.

`setup(app)` registers the /v1 routes and a context that owns the shared ElevenLabs HTTP pool,
the process's owner connection (owner.py), the voice list refresher, the retention sweeper and
the orphan sweeper. Needs the key bank's and the storage's setup to run first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import AsyncIterator

from aiohttp import web

from server import periodic
from server.appkeys import DB, METRICS, REDIS, SETTINGS
from server.generation import repo
from server.generation.service import GenerationService

__all__ = ["GENERATION", "GenerationService", "setup"]

log = logging.getLogger("server.generation")

GENERATION = web.AppKey("generation", GenerationService)

# In-flight generations get this long to finish and settle when the server stops.
DRAIN_SECONDS = 30.0


def setup(app: web.Application) -> None:
    from server.generation.handlers import api

    api.register(app)
    # HEAD of a download (size, ETag, resumability) runs the GET handler; serve_object sends no body.
    for endpoint in api.endpoints:
        if endpoint.method == "GET" and endpoint.path == "/v1/generations/{id}/audio":
            app.router.add_route("HEAD", endpoint.path, endpoint.handler)
    app.cleanup_ctx.append(generation_ctx)


async def generation_ctx(app: web.Application) -> AsyncIterator[None]:
    from server.credits.ratelimit import RateLimiter
    from server.credits.sweep import sweep_interval
    from server.generation.owner import OwnerBeacon
    from server.generation.retention import close_orphans, sweep_if_leader
    from server.generation.voices import VoiceCatalog
    from server.keybank import KEYBANK
    from server.providers.elevenlabs import DirectUpstream, create_http_client, create_session
    from server.storage import STORAGE

    settings = app[SETTINGS]
    http = create_http_client(settings.upstream_max_connections)
    session = create_session(settings.upstream_max_connections)
    upstream = DirectUpstream(http, settings.elevenlabs_base_url, session)
    voices = VoiceCatalog(settings, app[REDIS], app[KEYBANK], upstream)
    owner = OwnerBeacon(settings.database_url)
    service = GenerationService(
        settings=settings, pool=app[DB], redis=app[REDIS], keybank=app[KEYBANK], upstream=upstream,
        storage=app[STORAGE], voices=voices, metrics=app[METRICS],
        rate_limiter=RateLimiter(app[REDIS], settings), owner=owner,
    )
    app[GENERATION] = service
    # A deletion deferred by a storage outage must spare audio that a new generation uses again.
    app[STORAGE].references.append(functools.partial(repo.storage_key_in_use, service.pool))
    # Jitter spreads the workers so they do not all wake at once to contend for the sweep lock.
    interval = settings.retention_sweep_interval
    owner_task = asyncio.create_task(owner.run(), name="generation-owner")
    async with periodic.running("voices-refresher", settings.voices_refresh_interval, voices.refresh_if_leader,
                                jitter=(0.8, 1.0)), \
            periodic.running("generation-sweeper", interval, lambda: sweep_if_leader(service, interval=interval),
                             jitter=(0.5, 1.0)), \
            periodic.running("generation-orphan-sweeper", sweep_interval(settings.hold_ttl),
                             lambda: close_orphans(service)):
        # The orphan sweep keeps the credit hold sweep's pace: a row whose hold that sweep
        # released is closed as soon.
        yield
    await service.drain(DRAIN_SECONDS)
    # The owner connection goes last: while it is open, retries wait for the requests drained above.
    owner_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await owner_task
    await owner.aclose()
    await http.aclose()
    await session.close()

