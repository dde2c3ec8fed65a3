"""The customer portal and admin pages: server-rendered HTML, usable without JavaScript.

`setup(app)` installs encrypted cookie sessions, the template engine, the page routes, the
static files; every page gets CSRF checks and security headers from
`portal.web.portal_middleware`.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import AbstractStorage

from server import __version__
from server.appkeys import SETTINGS

PACKAGE_DIR = Path(__file__).resolve().parent

PORTAL_JINJA = web.AppKey("portal_jinja", jinja2.Environment)
SESSION_STORAGE = web.AppKey("portal_session_storage", AbstractStorage)
CSP = web.AppKey("portal_csp", str)
# Work spawned after a response (reset mails), awaited at shutdown.
BACKGROUND = web.AppKey("portal_background", set)


def setup(app: web.Application) -> None:
    from portal import filters
    from portal.handlers import account, admin, alerts, auth, billing, public, releases
    from portal.sessions import cookie_storage
    from portal.web import background_ctx, content_security_policy, portal_middleware

    settings = app[SETTINGS]
    app[SESSION_STORAGE] = cookie_storage(settings)
    app.middlewares.append(portal_middleware)
    app[CSP] = content_security_policy(settings)

    env = aiohttp_jinja2.setup(
        app,
        app_key=PORTAL_JINJA,
        loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined if not settings.is_production else jinja2.Undefined,
        default_helpers=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset_version"] = __version__
    filters.install(env)

    for module in (public, auth, account, billing, admin, alerts, releases):
        app.router.add_routes(module.routes)
    app.router.add_static("/static/", PACKAGE_DIR / "static", name="portal.static", append_version=False)

    app.cleanup_ctx.append(background_ctx)

