"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.appkeys import DB, ENDPOINTS, METRICS, REDIS
from server.web.api import ApiRoutes, build_openapi, json_response
from server.web.errors import ServiceUnavailable

routes = web.RouteTableDef()
api = ApiRoutes("meta")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks = {"postgres": await _check_postgres(request.app), "redis": await _check_redis(request.app)}
    if not all(checks.values()):
        raise ServiceUnavailable(
            "A dependency is unreachable",
            code="not_ready",
            retry_after=5,
            details={"checks": {k: ("ok" if v else "down") for k, v in checks.items()}},
        )
    return json_response({"status": "ready", "checks": {k: "ok" for k in checks}})


async def _check_postgres(app: web.Application) -> bool:
    try:
        async with asyncio.timeout(2):
            await app[DB].fetchval("SELECT 1")
        return True
    except Exception:
        return False


async def _check_redis(app: web.Application) -> bool:
    try:
        async with asyncio.timeout(2):
            await app[REDIS].ping()
        return True
    except Exception:
        return False


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


@api.get("/v1/openapi.json", summary="This OpenAPI 3.1 document", auth=False)
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app))


def openapi_document(app: web.Application) -> dict:
    from server import __version__

    return build_openapi(app[ENDPOINTS], title="SFX Studio API", version=__version__)
