"""Serving a stored object over HTTP, whatever backend holds it.

The local backend answers with aiohttp's FileResponse on the object's path, which handles Range,
If-Range and conditional requests itself and streams with sendfile.
"""

from __future__ import annotations

from aiohttp import web

from server.storage.service import AudioStorage


async def serve_object(
    request: web.Request, storage: AudioStorage, key: str, *, content_type: str, filename: str | None = None
) -> web.StreamResponse:
    if not await storage.exists(key):
        raise web.HTTPNotFound()
    headers = {"Content-Type": content_type}
    if filename:
        # Filenames here are ours (ASCII, no quotes); quoting keeps a space or comma harmless.
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return web.FileResponse(storage.path(key), headers=headers)
