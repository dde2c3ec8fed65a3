"""Downloads for everyone, and the admin page that publishes and steers panel releases.

Every change goes through the releases service, which writes the audit record in the same
transaction; these handlers only read forms and render.
"""

from __future__ import annotations

from aiohttp import web

from portal import domains
from portal.forms import field_errors, form_data, parse_int
from portal.sessions import flash
from portal.web import redirect, render, require_admin
from server.appkeys import SETTINGS
from server.releases import Actor
from server.releases.signing import load_keys
from server.web.errors import ApiError

routes = web.RouteTableDef()

PRODUCT_NAMES = {"cep": "Premiere Pro panel (CEP)", "uxp": "Premiere Pro plugin (UXP)"}


@routes.get("/downloads", name="portal.downloads")
async def downloads(request: web.Request) -> web.Response:
    return await render(
        request, "downloads.html",
        {"page_title": "Download the panel", "products": await domains.downloads_by_product(request.app),
         "names": PRODUCT_NAMES},
    )


# --- admin ------------------------------------------------------------------------------------------


async def admin_page(request: web.Request, *, errors: dict | None = None, form: dict | None = None,
                     status: int = 200) -> web.Response:
    service = domains.releases(request.app)
    settings = request.app[SETTINGS]
    return await render(
        request, "admin/releases.html",
        {"page_title": "Releases", "releases": await service.list(), "floors": await service.min_versions(),
         "keys": load_keys(settings.update_signing_key), "errors": errors or {}, "form": form or {},
         "upload_limit": min(settings.release_max_bytes, request.client_max_size), "names": PRODUCT_NAMES},
        status=status,
    )


@routes.get("/admin/releases", name="portal.admin-releases")
async def releases_page(request: web.Request) -> web.Response:
    await require_admin(request)
    return await admin_page(request)


@routes.post("/admin/releases", name="portal.admin-releases-publish")
async def publish(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    post = await request.post()
    form = await form_data(request)
    upload = post.get("package")
    safe_form = {k: v for k, v in form.items() if k != "csrf_token"}
    if not isinstance(upload, web.FileField):
        return await admin_page(request, errors={"package": "Choose the package file (.zxp or .ccx)."}, form=safe_form, status=422)
    try:
        release = await domains.releases(request.app).publish(
            upload.file.read(), product=form.get("product", ""), channel=form.get("channel", ""),
            version=form.get("version", ""), notes_md=form.get("notes", ""),
            rollout=parse_int(form.get("rollout"), 100, lo=-1, hi=101), min_host=form.get("min_host") or None,
            actor=Actor(admin.id, admin.email),
        )
    except ApiError as err:
        errors = field_errors(err)
        if "file" in errors:
            errors["package"] = errors.pop("file")
        return await admin_page(request, errors=errors, form=safe_form, status=err.status if err.status < 500 else 422)
    await flash(request, f"Published {release.product} {release.version} on {release.channel} "
                         f"to {release.rollout_percent}% of installs.")
    raise redirect("/admin/releases")


@routes.post("/admin/releases/{product}/{version}/{action}", name="portal.admin-releases-action")
async def release_action(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    product, version, action = (request.match_info[k] for k in ("product", "version", "action"))
    if action not in ("rollout", "yank"):
        raise web.HTTPNotFound()
    form = await form_data(request)
    service = domains.releases(request.app)
    actor = Actor(admin.id, admin.email)
    try:
        if action == "rollout":
            release = await service.set_rollout(product, version, parse_int(form.get("percent"), -1, lo=-1, hi=101), actor=actor)
            await flash(request, f"{product} {version} is now offered to {release.rollout_percent}% of installs.")
        else:
            await service.yank(product, version, actor=actor)
            await flash(request, f"{product} {version} was yanked: no longer offered, listed or downloadable.")
    except ApiError as err:
        await flash(request, f"Not changed: {err.message}", "error")
    raise redirect("/admin/releases")


@routes.post("/admin/releases/min-supported", name="portal.admin-releases-floor")
async def min_supported(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    form = await form_data(request)
    product, version = form.get("product", ""), form.get("version", "")
    try:
        await domains.releases(request.app).set_min_supported(product, version, actor=Actor(admin.id, admin.email))
    except ApiError as err:
        await flash(request, f"Not changed: {err.message}", "error")
        raise redirect("/admin/releases#minimum")
    await flash(request, f"{product} panels older than {version} are now asked to update (426).")
    raise redirect("/admin/releases")
