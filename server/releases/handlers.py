"""HTTP of the releases domain: the signed update manifest (API) and package downloads."""

from __future__ import annotations

from aiohttp import web

from server.releases.manifest import CHANNELS, PRODUCTS, SIGNATURE_HEADER
from server.releases.service import RELEASES
from server.storage.http import serve_object
from server.web.api import ApiRoutes
from server.web.errors import NotFound, ServiceUnavailable

api = ApiRoutes("updates")
routes = web.RouteTableDef()

_MANIFEST = {"content": {"application/json": {"schema": {"type": "object"}}}}


@api.get(
    "/v1/updates/{product}/{channel}", auth=False,
    summary="The signed update manifest of a panel product and channel",
    responses={
        "200": {"description": f"Canonical JSON, signed: `{SIGNATURE_HEADER}: kid:base64signature[,kid:signature]` "
                               "over exactly these bytes", **_MANIFEST},
        "304": {"description": "Unchanged since the ETag sent in If-None-Match"},
    },
)
async def manifest(request: web.Request) -> web.Response:
    product, channel = request.match_info["product"], request.match_info["channel"]
    built = request.app[RELEASES].manifest(product, channel)
    if built is None:
        if product not in PRODUCTS or channel not in CHANNELS:
            raise NotFound(f"No update manifest for {product}/{channel}", code="unknown_manifest",
                           details={"products": list(PRODUCTS), "channels": list(CHANNELS)})
        raise ServiceUnavailable("Update manifests are not ready yet", code="manifest_unavailable")
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and (if_none_match == built.etag or built.etag in _etags(if_none_match)):
        return web.Response(status=304, headers=built.not_modified_headers)
    return web.Response(body=built.body, headers=built.headers)


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]


@routes.get("/downloads/{product}/{version}", name="portal.download-package")
async def download(request: web.Request) -> web.StreamResponse:
    service = request.app[RELEASES]
    try:
        release = await service.get(request.match_info["product"], request.match_info["version"])
    except NotFound:
        raise web.HTTPNotFound() from None
    if release.yanked_at is not None:
        raise web.HTTPGone()
    range_header = request.headers.get("Range", "")
    # A resumed download (Range past byte 0) is the same download, counted once; HEAD is no download.
    # Counted before the bytes go out: serve_object streams, so the client has the whole file by the
    # time it returns.
    if request.method == "GET" and (not range_header or range_header.replace(" ", "").startswith("bytes=0-")):
        await service.count_download(release)
    return await serve_object(request, service.storage, release.storage_key,
                              content_type=release.content_type, filename=release.filename)
