"""Pages anyone may see: the front door and pricing (downloads live with the releases pages)."""

from __future__ import annotations

from aiohttp import web

from portal import domains
from portal.sessions import current_user
from portal.web import redirect, render
from server.appkeys import DB

routes = web.RouteTableDef()


@routes.get("/", name="portal.home")
async def home(request: web.Request) -> web.Response:
    raise redirect("/dashboard" if await current_user(request) else "/pricing")


@routes.get("/pricing", name="portal.pricing")
async def pricing(request: web.Request) -> web.Response:
    pool = request.app[DB]
    user = await current_user(request)
    current_plan = (await domains.plan_for(pool, user.id)).code if user else None
    return await render(
        request,
        "pricing.html",
        {
            "page_title": "Plans and pricing",
            "plans": await domains.plans(pool),
            "rules": await domains.pricing_rules(pool),
            "current_plan": current_plan,
        },
    )
