"""Admin pages: users, usage, the key bank, the audit log and the dev mail outbox.

Every handler starts with `require_admin` (everyone else gets 403), and every change is
recorded with `server.audit.audit`, in the same transaction as the change where the owning
domain lets us pass a connection.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from aiohttp import web

from portal import charts, domains, repo
from portal.forms import field_errors, form_data, parse_int, parse_uuid
from portal.sessions import PortalUser, end_all_sessions, flash
from portal.web import redirect, render, require_admin
from server import audit as audit_log
from server import mail
from server.appkeys import DB, SETTINGS
from server.audit import audit
from server.auth import service as auth
from server.web.errors import ApiError

log = logging.getLogger("portal.admin")

routes = web.RouteTableDef()

PAGE_SIZE = 25
USAGE_PERIODS = (7, 30, 90)


@routes.get("/admin", name="portal.admin")
async def admin_home(request: web.Request) -> web.Response:
    await require_admin(request)
    raise redirect("/admin/users")


# --- users -----------------------------------------------------------------------------------------


@routes.get("/admin/users", name="portal.admin-users")
async def users(request: web.Request) -> web.Response:
    await require_admin(request)
    pool = request.app[DB]
    query = request.query.get("q", "").strip()
    status = request.query.get("status", "")
    status = status if status in ("active", "suspended", "deleted") else ""
    page = parse_int(request.query.get("page"), 1, lo=1, hi=10_000)
    total = await repo.count_users(pool, query, status)
    rows = await repo.search_users(pool, query, status, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return await render(
        request, "admin/users.html",
        {"page_title": "Users", "users": rows, "q": query,
         "credits": await domains.credit_summaries(pool, [r["id"] for r in rows if r["status"] != "deleted"]), "status": status, "page": page,
         "pages": max(1, -(-total // PAGE_SIZE)), "total": total},
    )


async def _target(request: web.Request):
    user_id = parse_uuid(request.match_info["user_id"])
    row = await repo.user_row(request.app[DB], user_id)
    if row is None:
        raise web.HTTPNotFound()
    return row


@routes.get("/admin/users/{user_id}", name="portal.admin-user")
async def user_detail(request: web.Request) -> web.Response:
    await require_admin(request)
    pool = request.app[DB]
    target = await _target(request)
    billing = domains.billing(request.app)
    devices = await auth.list_devices(pool, auth.CurrentUser(target["id"], target["email"], target["role"], target["status"], None))
    generations = await repo.admin_recent_generations(pool, target["id"], 15)
    return await render(
        request, "admin/user.html",
        {
            "page_title": target["email"],
            "target": target,
            "summary": await domains.credit_summary(pool, target["id"]),
            "subscription": await billing.subscription(target["id"]) if billing else None,
            "plans": await domains.plans(pool),
            "devices": devices,
            "generations": generations,
            "ledger": await domains.ledger(pool, target["id"], 30),
            "history": await audit_log.entries(pool, object_type="user", object_id=str(target["id"]), limit=20),
            "errors": {},
        },
    )


@routes.post("/admin/users/{user_id}/status", name="portal.admin-user-status")
async def set_status(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    target = await _target(request)
    form = await form_data(request)
    action = form.get("action")
    if action not in ("suspend", "reactivate") or target["status"] == "deleted":
        raise web.HTTPBadRequest()
    if target["id"] == admin.id:
        await flash(request, "You cannot suspend your own account.", "error")
        raise redirect(f"/admin/users/{target['id']}")
    pool = request.app[DB]
    async with pool.acquire() as conn, conn.transaction():
        await auth.set_status(conn, target["id"], "suspended" if action == "suspend" else "active")
        if action == "suspend":
            await auth.revoke_all_devices(conn, target["id"], "admin")
        await audit(conn, admin.id, f"user.{'suspended' if action == 'suspend' else 'reactivated'}", "user", target["id"],
                    {"reason": form.get("reason", "")[:500]} if form.get("reason") else {})
    if action == "suspend":
        await end_all_sessions(request.app, target["id"])
    await flash(request, f"{target['email']} is {'suspended; every device was signed out' if action == 'suspend' else 'active again'}.")
    raise redirect(f"/admin/users/{target['id']}")


@routes.post("/admin/users/{user_id}/plan", name="portal.admin-user-plan")
async def set_plan(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    target = await _target(request)
    form = await form_data(request)
    plan = form.get("plan", "")
    pool = request.app[DB]
    if plan not in {p.code for p in await domains.plans(pool)}:
        await flash(request, "Choose one of the plans.", "error")
        raise redirect(f"/admin/users/{target['id']}")
    before = (await domains.plan_for(pool, target["id"])).code
    async with pool.acquire() as conn, conn.transaction():
        await domains.set_plan(conn, target["id"], plan)
        await audit(conn, admin.id, "user.plan_changed", "user", target["id"], {"from": before, "to": plan, "comped": True})
    await flash(request, f"{target['email']} is now on the {plan} plan (comped, no charge).")
    raise redirect(f"/admin/users/{target['id']}")


@routes.post("/admin/users/{user_id}/credits", name="portal.admin-user-credits")
async def adjust_credits(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    target = await _target(request)
    form = await form_data(request)
    reason = form.get("reason", "").strip()
    try:
        amount = int(form.get("amount", ""))
    except ValueError:
        amount = 0
    if amount == 0 or abs(amount) > 1_000_000 or not reason:
        await flash(request, "Give a non-zero whole number of credits and a reason.", "error")
        raise redirect(f"/admin/users/{target['id']}#credits")
    pool = request.app[DB]
    try:
        async with pool.acquire() as conn, conn.transaction():
            await domains.adjust_credits(conn, target["id"], amount, reason[:500], f"admin:{admin.email}")
            await audit(conn, admin.id, "credits.adjusted", "user", target["id"], {"amount": amount, "reason": reason[:500]})
    except ApiError as err:
        await flash(request, f"The adjustment was refused: {err.message}", "error")
        raise redirect(f"/admin/users/{target['id']}#credits")
    await flash(request, f"{'Added' if amount > 0 else 'Removed'} {abs(amount)} credits {'to' if amount > 0 else 'from'} {target['email']}.")
    raise redirect(f"/admin/users/{target['id']}")


# --- usage -------------------------------------------------------------------------------------------


@routes.get("/admin/usage", name="portal.admin-usage")
async def usage(request: web.Request) -> web.Response:
    await require_admin(request)
    pool = request.app[DB]
    days = parse_int(request.query.get("days"), 30, lo=1, hi=365)
    days = days if days in USAGE_PERIODS else 30
    end = datetime.now(timezone.utc).date()
    start = end - timedelta(days=days - 1)
    per_day = {r["day"]: r for r in await repo.generations_per_day(pool, start, end)}
    dates = charts.day_range(start, end)
    labels = [charts.day_label(d) for d in dates]

    def col(name: str) -> list[float]:
        return [float(per_day[d][name] or 0) if d in per_day else 0.0 for d in dates]

    def measured(name: str) -> list[float | None]:
        # A day without successful generations has no latency, not a latency of zero.
        return [float(per_day[d][name]) if d in per_day and per_day[d][name] is not None else None for d in dates]

    totals = await repo.usage_totals(pool, start, end)
    context = dict(
        page_title="Usage", days=days, periods=USAGE_PERIODS,
        totals=totals,
        failure_rate=(totals["failed"] / totals["total"]) if totals["total"] else 0.0,
        generations_chart=charts.line_chart(
            "generations", "Generations per day", labels,
            [charts.Series("All", col("total"), "series-1"), charts.Series("Failed", col("failed"), "series-2")],
            unit="generations", size="compact",
        ),
        credits_chart=charts.bar_chart("credits", "Credits charged per day", labels, col("credits"), unit="credits", size="compact"),
        cost_chart=charts.bar_chart("cost", "Upstream cost per day", labels, col("upstream_cost"), unit="characters", css="series-2", size="compact"),
        latency_chart=charts.line_chart(
            "latency", "Generation latency per day", labels,
            [charts.Series("p50", measured("p50"), "series-1", summable=False),
             charts.Series("p95", measured("p95"), "series-2", summable=False)],
            unit="ms", size="compact",
        ),
        failures=await repo.failures_by_reason(pool, start, end),
        top_users=await repo.top_users(pool, start, end, 10),
    )
    return await render(request, "admin/usage.html", context)


# --- key bank -------------------------------------------------------------------------------------


async def keys_page(request: web.Request, *, errors: dict | None = None, form: dict | None = None, status: int = 200) -> web.Response:
    bank = domains.keybank(request.app)
    keys = await bank.list_keys() if bank else []
    return await render(
        request, "admin/keys.html",
        {"page_title": "Key bank", "keys": keys, "available": bank is not None, "errors": errors or {},
         "form": form or {}, "now": datetime.now(timezone.utc), "providers": domains.provider_names()},
        status=status,
    )


@routes.get("/admin/keys", name="portal.admin-keys")
async def keys(request: web.Request) -> web.Response:
    await require_admin(request)
    return await keys_page(request)


@routes.post("/admin/keys", name="portal.admin-keys-add")
async def add_key(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    bank = domains.keybank(request.app)
    if bank is None:
        raise web.HTTPServiceUnavailable()
    form = await form_data(request)
    # The secret is never echoed back, not even into the form after an error.
    safe_form = {k: v for k, v in form.items() if k not in ("secret", "csrf_token")}
    max_concurrency = parse_int(form.get("max_concurrency"), 0, lo=0, hi=100_000)
    weight = parse_int(form.get("weight"), 1, lo=0, hi=100_000)
    try:
        view = await bank.add_key(
            provider=form.get("provider", "elevenlabs"), label=form.get("label", ""), secret=form.get("secret", ""),
            max_concurrency=max_concurrency, weight=weight,
        )
    except ApiError as err:
        return await keys_page(request, errors=field_errors(err), form=safe_form, status=422)
    await audit(request.app[DB], admin.id, "key.added", "provider_key", view.id,
                {"provider": view.provider, "label": view.label, "last4": view.last4, "status": view.status})
    await flash(request, f"Key “{view.label}” (…{view.last4}) was validated and added. Its secret will not be shown again.")
    raise redirect("/admin/keys")


@routes.post("/admin/keys/{key_id}/{action}", name="portal.admin-keys-action")
async def key_action(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    bank = domains.keybank(request.app)
    action = request.match_info["action"]
    if bank is None or action not in ("enable", "disable", "remove"):
        raise web.HTTPNotFound()
    key_id = parse_int(request.match_info["key_id"], 0, lo=0, hi=2**62)
    form = await form_data(request)
    before = await bank.get_key(key_id)
    if action == "enable":
        await bank.enable(key_id)
    elif action == "disable":
        await bank.disable(key_id, form.get("reason") or f"disabled by {admin.email}")
    else:
        await bank.remove(key_id)
    await audit(request.app[DB], admin.id, f"key.{action}d" if action != "remove" else "key.removed", "provider_key", key_id,
                {"provider": before.provider, "label": before.label, "last4": before.last4})
    verb = {"enable": "enabled", "disable": "disabled", "remove": "removed"}[action]
    await flash(request, f"Key “{before.label}” was {verb}.")
    raise redirect("/admin/keys")


# --- audit log and outbox --------------------------------------------------------------------------


@routes.get("/admin/audit", name="portal.admin-audit")
async def audit_page(request: web.Request) -> web.Response:
    await require_admin(request)
    pool = request.app[DB]
    filters = {name: request.query.get(name, "").strip() for name in ("actor", "action", "object_type", "object_id")}
    before = parse_int(request.query.get("before"), 0, lo=0, hi=2**62) or None
    entries = await audit_log.entries(pool, before_id=before, limit=PAGE_SIZE + 1, **filters)
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    return await render(
        request, "admin/audit.html",
        {"page_title": "Audit log", "entries": entries, "filters": filters, "names": await audit_log.object_names(pool, entries), "object_types": await audit_log.object_types(pool),
         "next_before": entries[-1].id if more and entries else None},
    )


@routes.get("/admin/outbox", name="portal.admin-outbox")
async def outbox(request: web.Request) -> web.Response:
    await require_admin(request)
    to = request.query.get("to", "").strip()
    messages = await mail.outbox(request.app[DB], to=to, limit=100)
    return await render(
        request, "admin/outbox.html",
        {"page_title": "Outbox", "messages": messages, "to": to, "smtp": bool(request.app[SETTINGS].smtp_url)},
    )


@routes.get("/admin/outbox/{message_id}", name="portal.admin-outbox-message")
async def outbox_message(request: web.Request) -> web.Response:
    admin: PortalUser = await require_admin(request)
    message_id = parse_int(request.match_info["message_id"], 0, lo=0, hi=2**62)
    message = await mail.outbox_message(request.app[DB], message_id)
    if message is None:
        raise web.HTTPNotFound()
    # Messages can hold password reset links: reading one is worth a line in the audit log.
    await audit(request.app[DB], admin.id, "mail.viewed", "mail", message.id, {})
    return await render(request, "admin/outbox_message.html", {"page_title": message.subject, "message": message})
