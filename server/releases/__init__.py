"""Panel releases: published packages, signed update manifests, downloads and the oldest supported panel.

`setup(app)` puts a `ReleaseService` at `app[RELEASES]`, builds the manifests at start, keeps them
current in the background, serves `/v1/updates/{product}/{channel}` and `/downloads/...`, and adds
the middleware that answers 426 to panels older than their product's minimum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web

from server.appkeys import DB, PANEL_FLOOR, REDIS, SETTINGS
from server.releases.manifest import Release
from server.releases.service import RELEASES, Actor, ReleaseService
from server.settings import Settings
from server.storage import BlobStorage, open_storage

log = logging.getLogger("server.releases")

__all__ = ["RELEASES", "Actor", "Release", "ReleaseService", "package_storage", "setup"]


def package_storage(settings: Settings) -> BlobStorage:
    """Packages are content addressed like audio, under packages/ of the store STORAGE_URL names
    (DATA_DIR/packages by default, the shared bucket on several machines; never swept by audio retention)."""
    return open_storage(settings, "packages")


def setup(app: web.Application) -> None:
    from server.releases.handlers import api, routes
    from server.web.middleware import panel_version

    api.register(app)
    app.router.add_routes(routes)
    app.middlewares.append(panel_version)
    app.cleanup_ctx.append(releases_ctx)


async def releases_ctx(app: web.Application) -> AsyncIterator[None]:
    service = ReleaseService(app[SETTINGS], app[DB], app[REDIS], package_storage(app[SETTINGS]))
    app[RELEASES] = service
    app[PANEL_FLOOR] = service
    try:
        async with asyncio.timeout(10):
            await service.refresh()
    except Exception:
        # The server still starts; /v1/updates answers 503 until the upkeep task builds them.
        log.warning("update manifests not built at startup", exc_info=True)
    upkeep = asyncio.create_task(service.run_upkeep(), name="releases-upkeep")
    yield
    upkeep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await upkeep
    await service.storage.aclose()
