"""Page plumbing: rendering with the shared layout, access rules, security headers, HTML errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web

from portal import BACKGROUND, CSP, PORTAL_JINJA, csrf, forms
from portal.sessions import PORTAL_USER, PortalUser, current_user, pop_flashes, save_session
from server.appkeys import REQUEST_ID, SETTINGS
from server.settings import Settings
from server.outages import is_unavailable, unavailable
from server.web.errors import ApiError
from server.web.middleware import is_api

log = logging.getLogger("portal")

ROUTE_PREFIX = "portal."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STRIPE_HOSTED_ORIGINS = ("https://checkout.stripe.com", "https://billing.stripe.com")


class Forbidden403(Exception):
    """Raised by `require_admin`: rendered as the 403 page."""


# --- background work ---------------------------------------------------------------

def spawn(app: web.Application, coro: Awaitable[None]) -> asyncio.Task:
    """Run after the response; the task is kept referenced and awaited at shutdown."""
    task = asyncio.ensure_future(coro)
    app[BACKGROUND].add(task)
    task.add_done_callback(app[BACKGROUND].discard)
    return task


async def background_ctx(app: web.Application):
    app[BACKGROUND] = set()
    yield
    if app[BACKGROUND]:
        await asyncio.wait(list(app[BACKGROUND]), timeout=10)


# --- rendering -------------------------------------------------------------------


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    user = await current_user(request)
    base = {
        "user": user,
        "csrf_token": await csrf.csrf_token(request),
        "flashes": await pop_flashes(request),
        "path": request.path,
        "request_id": request.get(REQUEST_ID, ""),
    }
    base.update(context or {})
    rejected = request.get(forms.REJECTED_FIELDS)
    if rejected and isinstance(base.get("errors"), dict) and status == 200:
        base["errors"] = {**base["errors"], **rejected}
        status = 422
    response = aiohttp_jinja2.render_template(template, request, base, app_key=PORTAL_JINJA, status=status)
    if user is not None:
        # Pages of a signed-in user are personal: never cached by the browser or a proxy.
        response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def safe_next(value: str | None, default: str = "/dashboard") -> str:
    """Only local paths: an open redirect would let phishing links borrow our domain."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


# --- access rules ------------------------------------------------------------------


async def require_user(request: web.Request) -> PortalUser:
    user = await current_user(request)
    if user is None:
        target = request.path_qs if request.method == "GET" else "/dashboard"
        raise redirect("/signin?next=" + quote(target, safe="/"))
    return user


async def require_admin(request: web.Request) -> PortalUser:
    user = await current_user(request)
    if user is None or not user.is_admin:
        raise Forbidden403()
    return user


# --- security headers ----------------------------------------------------------------


def content_security_policy(settings: Settings) -> str:
    # Billing forms redirect to Stripe; browsers apply form-action to that redirect too.
    form_targets = ["'self'", *STRIPE_HOSTED_ORIGINS]
    stripe_api = urlsplit(settings.stripe_api_base)
    if stripe_api.hostname and stripe_api.hostname != "api.stripe.com":
        form_targets.append(f"{stripe_api.scheme}://{stripe_api.netloc}")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self'",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action " + " ".join(form_targets),
            "frame-ancestors 'none'",
        ]
    )


def add_security_headers(response: web.StreamResponse, settings: Settings, csp: str) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = csp
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if settings.is_production:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"


# --- middleware --------------------------------------------------------------------


def is_portal(request: web.Request) -> bool:
    route = request.match_info.route
    name = route.name if route is not None else None
    if name:
        return name.startswith(ROUTE_PREFIX)
    # Unmatched browser paths get the portal's 404 page rather than a bare text answer.
    return request.match_info.http_exception is not None and not is_api(request)


ERROR_TEXT = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Access denied", "You do not have permission to open this page."),
    404: ("Page not found", "There is nothing at this address. Check the link, or start from the dashboard."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too large", "What you sent is larger than we accept."),
    429: ("Slow down", "Too many attempts. Wait a little and try again."),
    500: ("Something went wrong", "An error happened on our side. Try again; if it persists, contact support with the request id below."),
}


async def error_page(request: web.Request, status: int, message: str | None = None, *, title: str | None = None) -> web.Response:
    default_title, default_message = ERROR_TEXT.get(status, ("Error", "The request failed."))
    return await render(
        request,
        "error.html",
        {"status": status, "title": title or default_title, "message": message or default_message},
        status=status,
    )


async def outage_page(request: web.Request) -> web.Response:
    """503 while Postgres or Redis is out of reach: rendered without asking either of them who the
    user is (the layout shows the signed-out header for this one page)."""
    log.warning("portal page: Postgres or Redis unavailable", extra={"path": request.path})
    request[PORTAL_USER] = None
    err = unavailable()
    response = await error_page(
        request, 503, "We cannot reach our database for a moment. Wait a few seconds and reload the page.",
        title="Briefly unavailable",
    )
    response.headers.update(err.headers)
    return response


@web.middleware
async def portal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_portal(request):
        return await handler(request)
    settings = request.app[SETTINGS]
    csp = request.app[CSP]
    try:
        if request.match_info.http_exception is None:  # unknown paths answer 404, not "form expired"
            await csrf.check(request)
            await forms.check_input(request)
        response = await handler(request)
    except forms.FormRejected as rejected:
        response = await rejected_input_page(request, rejected)
    except csrf.CsrfRejected:
        response = await error_page(
            request,
            403,
            "This form was not accepted: it expired or did not come from this site. Go back, reload the page and try again.",
            title="Form expired",
        )
    except Forbidden403:
        response = await error_page(request, 403)
    except ApiError as err:
        response = await error_page(request, err.status, err.message)
        response.headers.update(err.headers)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = await error_page(request, exc.status)
        else:
            add_security_headers(exc, settings, csp)
            await save_session(request, exc)
            raise
    except Exception as exc:
        if is_unavailable(exc):
            response = await outage_page(request)
        else:
            log.exception("portal page failed", extra={"path": request.path, "method": request.method})
            response = await error_page(request, 500)
    if not response.prepared:
        add_security_headers(response, settings, csp)
        await save_session(request, response)
    return response


def form_page(request: web.Request) -> Handler | None:
    """The GET handler at the address this request was posted to, if there is one."""
    posted = request.match_info.route.resource
    for resource in request.app.router.resources():
        if posted is not None and resource.canonical == posted.canonical:
            for route in resource:
                if route.method == "GET":
                    return route.handler
    return None


async def rejected_input_page(request: web.Request, rejected: forms.FormRejected) -> web.Response:
    """A form is shown again with the problem beside its field: the page is the GET route of the
    address the form was posted to (read-only by HTTP's rules, so safe to run). Forms without such
    a page, and query strings, get an error page that names the field."""
    if rejected.location == "form":
        page = form_page(request)
        if page is not None:
            request[forms.REJECTED_FIELDS] = {"_form": f"The form was not accepted: {rejected.message}.", **rejected.errors}
            try:
                response = await page(request)
            except (web.HTTPException, Forbidden403, ApiError):
                response = None  # the page redirects or refuses this visitor: the plain error page instead
            if isinstance(response, web.Response) and response.status == 422:
                return response
        return await error_page(request, 422, f"The form was not accepted: {rejected.message}. Go back and correct it.",
                                title="Check the form")
    return await error_page(request, 400, f"This address is not valid: {rejected.message}.")
