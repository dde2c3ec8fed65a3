"""Middleware: request ids, access logs and metrics, and the one JSON error envelope."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
import uuid

from aiohttp import web

from server.appkeys import METRICS, PANEL_FLOOR, REQUEST_ID, SETTINGS
from server.outages import is_unavailable, unavailable
from server.web.errors import ApiError, BadRequest, PayloadTooLarge
from server.web.logs import request_id_var

log = logging.getLogger("server.http")

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")

# Routes asked too often for an access line each (every panel polls the update manifest): the
# request metrics still count them, and failures are still logged.
QUIET_ROUTES = frozenset({"/healthz", "/metrics", "/v1/updates/{product}/{channel}"})

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@web.middleware
async def client_address(request: web.Request, handler) -> web.StreamResponse:
    """Behind a reverse proxy the TCP peer is the proxy: every sign-in and sign-up would count
    against one address. When the peer is one of TRUSTED_PROXIES, the client is taken from
    X-Forwarded-For instead; from anyone else the header is ignored (a client could write
    anything there to dodge the per-address limits)."""
    networks = request.app[SETTINGS].trusted_networks
    if networks and _in(request.remote, networks):
        client = forwarded_client(request.headers.getall("X-Forwarded-For", []), networks)
        if client is not None:
            request = request.clone(remote=client)
    return await handler(request)


def forwarded_client(values: list[str], trusted: Networks) -> str | None:
    """The client in X-Forwarded-For: the rightmost address that is not one of our proxies (each
    proxy appends the address it got the request from, so entries left of that are the client's
    own claims). None when the header is missing or a hop is not an address."""
    hops = [hop.strip() for value in values for hop in value.split(",")]
    client = None
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return None
        client = str(address)
        if not any(address in network for network in trusted):
            return client
    return client  # every hop is one of ours: the leftmost is the closest we know to the client


def _in(remote: str | None, networks: Networks) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/v1") or request.path.startswith("/webhooks")


def route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    if resource is None or info.http_exception is not None:
        return "unmatched"
    return resource.canonical


def error_response(err: ApiError, request_id: str) -> web.Response:
    resp = web.json_response(err.body(), status=err.status, headers=err.headers)
    resp.headers[REQUEST_ID_HEADER] = request_id
    return resp


@web.middleware
async def request_context(request: web.Request, handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except ApiError as err:
            response = error_response(err, request_id)
        except web.HTTPException as exc:
            if exc.status >= 400 and is_api(request):
                response = error_response(_from_http_exception(exc), request_id)
            else:
                exc.headers[REQUEST_ID_HEADER] = request_id
                raise
        except asyncio.CancelledError:
            status = 499  # client went away; nothing is sent
            raise
        except Exception as exc:
            if is_unavailable(exc):
                # An outage, not a bug: the client should retry, and /readyz says the same.
                log.warning("Postgres or Redis unavailable", extra={"path": request.path, "error": type(exc).__name__})
                response = error_response(unavailable(), request_id)
            else:
                log.exception("unhandled error", extra={"path": request.path, "method": request.method})
                err = ApiError("Something went wrong on our side. Try again; if it persists, quote the request id.",
                               code="internal_error", status=500, details={"request_id": request_id})
                if is_api(request):
                    response = error_response(err, request_id)
                else:
                    response = web.Response(status=500, text="Internal server error. Request id: " + request_id,
                                            headers={REQUEST_ID_HEADER: request_id})
        status = response.status
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics = request.app.get(METRICS)
        label = route_label(request)
        if metrics is not None:
            metrics.requests.labels(request.method, label, str(status)).inc()
            metrics.latency.labels(request.method, label).observe(elapsed)
        if label not in QUIET_ROUTES or status >= 400:
            log.info(
                "request",
                extra={"method": request.method, "path": request.path, "status": status, "ms": round(elapsed * 1000, 2)},
            )
        request_id_var.reset(token)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    if exc.status == 413:
        return PayloadTooLarge("The request body is too large")
    code = HTTP_CODES.get(exc.status, "http_error" if exc.status < 500 else "internal_error")
    message = {
        404: "No such endpoint or object",
        405: "This method is not allowed here",
    }.get(exc.status, exc.reason)
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return ApiError(message, code=code, status=exc.status, headers=headers)


CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id, X-Panel-Version, X-Panel-Product"
CORS_EXPOSE_HEADERS = (
    "X-Request-Id, Retry-After, Content-Disposition, X-Generation-Id, X-Credits-Charged, "
    "X-Credits-Remaining, X-Audio-Duration, ETag, X-Update-Signatures"
)


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    """The panel's page is a file:// origin inside Premiere, so /v1 answers cross-origin requests.

    Any origin is safe here: the API authenticates with bearer tokens, never cookies, so a
    foreign page gains nothing it could not do with the token itself.
    """
    if not request.path.startswith("/v1"):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    return response


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


# The manifest must reach every panel, however old: it is how an outdated panel learns what to install.
PANEL_CHECK_EXEMPT = ("/v1/updates/", "/v1/openapi.json")


@web.middleware
async def panel_version(request: web.Request, handler) -> web.StreamResponse:
    """Panels send X-Panel-Product and X-Panel-Version on every call; one older than its product's
    minimum gets 426 panel_outdated with the download address, before any handler runs. Calls
    without the header (scripts, panels from before the header) pass unless PANEL_VERSION_REQUIRED."""
    path = request.path
    if not path.startswith("/v1/") or path.startswith(PANEL_CHECK_EXEMPT) or request.method == "OPTIONS":
        return await handler(request)
    floors = request.app.get(PANEL_FLOOR)
    version = request.headers.get("X-Panel-Version")
    product = request.headers.get("X-Panel-Product", "cep")
    if version is None:
        if request.app[SETTINGS].panel_version_required:
            raise ApiError(
                "This API answers only the SFX Studio panel: update the panel (it sends X-Panel-Version).",
                code="panel_version_required", status=426,
                details={"download_url": floors.download_url(product) if floors else None},
            )
        return await handler(request)
    if floors is not None:
        try:
            outdated = floors.panel_outdated(product, version)
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_panel_version") from None
        if outdated is not None:
            raise ApiError(
                f"This panel ({version}) is too old: version {outdated['min_supported_version']} or newer is needed. "
                "Download and install the update, then restart Premiere Pro.",
                code="panel_outdated", status=426, details=outdated,
            )
    return await handler(request)
