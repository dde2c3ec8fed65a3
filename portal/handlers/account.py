"""The signed-in customer's pages: dashboard, audio playback, devices and account settings."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta, timezone

from aiohttp import web

from portal import accounts, charts, domains, repo
from portal.forms import field_errors, form_data, parse_uuid
from portal.handlers import alerts
from portal.sessions import PortalUser, end_all_sessions, end_session, flash, start_session
from portal.web import redirect, render, require_user
from server.alerts.usage import forecast as usage_forecast
from server.appkeys import DB, SETTINGS
from server.auth import service as auth
from server.auth import verification
from server.mail import MAIL
from server.storage.http import ObjectGone, serve_object
from server.web.errors import ApiError

log = logging.getLogger("portal.account")

routes = web.RouteTableDef()

RECENT_GENERATIONS = 8
MAX_CHART_DAYS = 31


def as_current_user(user: PortalUser) -> auth.CurrentUser:
    """The shape other domains' services take; a browser session is not a device session."""
    return auth.CurrentUser(user.id, user.email, user.role, user.status, None)


def chart_days(period_start: datetime | None, period_end: datetime | None, today: date) -> tuple[date, date]:
    """Days of the current period up to today (at most a month), so the chart has no empty future."""
    start = period_start.astimezone(timezone.utc).date() if period_start else today - timedelta(days=29)
    end = min(today, period_end.astimezone(timezone.utc).date()) if period_end else today
    if end < start:
        end = start
    if (end - start).days >= MAX_CHART_DAYS:
        start = end - timedelta(days=MAX_CHART_DAYS - 1)
    return start, end


async def usage_chart(pool, user_id, start: date, end: date) -> charts.Chart:
    per_day = await repo.usage_per_day(pool, user_id, start, end)
    days = charts.day_range(start, end)
    return charts.bar_chart(
        "usage", "Credits used per day", [charts.day_label(d) for d in days],
        [per_day.get(d, (0, 0))[1] for d in days], unit="credits",
    )


@routes.get("/dashboard", name="portal.dashboard")
async def dashboard(request: web.Request) -> web.Response:
    user = await require_user(request)
    pool = request.app[DB]
    summary = await domains.credit_summary(pool, user.id)
    start, end = chart_days(summary.period_start, summary.period_end, datetime.now(timezone.utc).date())
    billing = domains.billing(request.app)
    subscription = await billing.subscription(user.id) if billing is not None else None
    generations = await repo.recent_generations(pool, user.id, RECENT_GENERATIONS)
    return await render(
        request,
        "dashboard.html",
        {
            "page_title": "Dashboard",
            "summary": summary,
            "subscription": subscription,
            "chart": await usage_chart(pool, user.id, start, end),
            "forecast": usage_forecast(summary, datetime.now(timezone.utc)),
            "generations": generations,
        },
    )


@routes.get("/audio/{generation_id}", name="portal.audio")
async def audio(request: web.Request) -> web.StreamResponse:
    """The user's own audio, for the <audio> players; another user's id is a 404, like a missing one."""
    user = await require_user(request)
    pool = request.app[DB]
    generation_id = parse_uuid(request.match_info["generation_id"])
    row = await repo.generation_for_user(pool, generation_id, user.id)
    storage = domains.audio_storage(request.app)
    if row is None or not row["storage_key"] or storage is None:
        raise web.HTTPNotFound()
    content_type = "audio/mpeg" if row["format"] == "mp3" else "audio/wav"
    # Range requests are answered too: <audio> uses them to seek.
    try:
        return await serve_object(
            request, storage, row["storage_key"], content_type=content_type,
            headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )
    except ObjectGone:
        raise web.HTTPNotFound() from None


# --- devices -------------------------------------------------------------------------------------


@routes.get("/devices", name="portal.devices")
async def devices(request: web.Request) -> web.Response:
    user = await require_user(request)
    items = await auth.list_devices(request.app[DB], as_current_user(user))
    return await render(request, "devices.html", {"page_title": "Devices", "devices": items})


@routes.post("/devices/{device_id}/revoke", name="portal.devices-revoke")
async def revoke_device(request: web.Request) -> web.Response:
    user = await require_user(request)
    device_id = parse_uuid(request.match_info["device_id"])
    await auth.revoke_device(request.app[DB], as_current_user(user), device_id)
    await flash(request, "The device was signed out. It needs the password to sign in again.")
    raise redirect("/devices")


# --- account -------------------------------------------------------------------------------------


async def account_page(request: web.Request, user: PortalUser, *, errors: dict | None = None, section: str = "", status: int = 200) -> web.Response:
    return await render(
        request, "account.html",
        {"page_title": "Account", "errors": errors or {}, "section": section, "account": await repo.user_row(request.app[DB], user.id),
         **await alerts.usage_mail_context(request, user)},
        status=status,
    )


@routes.get("/account", name="portal.account")
async def account(request: web.Request) -> web.Response:
    user = await require_user(request)
    return await account_page(request, user)


@routes.post("/account/email", name="portal.account-email")
async def change_email(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await form_data(request)
    try:
        old, new = await auth.change_email(request.app[DB], request.app[SETTINGS], user.id, form.get("email", ""), form.get("current_password", ""))
    except auth.WrongPassword:
        return await account_page(request, user, errors={"email_current_password": "The password is incorrect"}, section="email", status=422)
    except ApiError as err:
        errors = {f"email_{k}" if k != "_form" else "email_email": v for k, v in field_errors(err).items()}
        return await account_page(request, user, errors=errors, section="email", status=422)
    # The new address must be proven like the first one; generation waits until it is.
    await verification.send_link(request.app[DB], request.app[SETTINGS], request.app[MAIL], user.id, force=True)
    billing = domains.billing(request.app)
    if billing is not None:
        try:
            await billing.sync_customer_email(user.id, new)
        except Exception:
            # The change stands; Stripe keeps mailing receipts to the old address until support fixes it.
            log.warning("the Stripe customer's email could not be updated", exc_info=True,
                        extra={"user_id": str(user.id)})
    try:
        await request.app[MAIL].send(
            old, "Your SFX Studio email was changed",
            f"The email of your SFX Studio account was changed to {new}.\n\n"
            "If you did not do this, reset your password at once and contact support.\n\n— SFX Studio\n",
        )
    except Exception:
        log.exception("could not tell the old address about an email change")
    await flash(request, f"Your email is now {new}. Follow the link we sent there to confirm it.")
    raise redirect("/account")


@routes.post("/account/password", name="portal.account-password")
async def change_password(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await form_data(request)
    if form.get("password", "") != form.get("password_confirm", ""):
        return await account_page(request, user, errors={"pw_password_confirm": "The two passwords do not match"}, section="password", status=422)
    try:
        await auth.change_password(request.app[DB], request.app[SETTINGS], user.id, form.get("current_password", ""), form.get("password", ""))
    except auth.WrongPassword:
        return await account_page(request, user, errors={"pw_current_password": "The password is incorrect"}, section="password", status=422)
    except ApiError as err:
        return await account_page(request, user, errors={f"pw_{k}": v for k, v in field_errors(err).items()}, section="password", status=422)
    # Every session ends, this one too: whoever knew the old session id (a stolen cookie) is out,
    # and this browser carries on under a fresh id and cookie.
    await end_all_sessions(request.app, user.id)
    await start_session(request, user.id)
    await flash(request, "Password changed. Other browsers and every panel device were signed out.")
    raise redirect("/account")


@routes.post("/account/export", name="portal.account-export")
async def export(request: web.Request) -> web.Response:
    user = await require_user(request)
    data = await accounts.export_data(request.app[DB], domains.billing(request.app), user.id)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    return web.Response(
        text=json.dumps(data, indent=2, default=str),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="sfx-studio-data-{stamp}.json"', "Cache-Control": "no-store"},
    )


@routes.post("/account/delete", name="portal.account-delete")
async def delete(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await form_data(request)
    if form.get("confirm", "").strip().upper() != "DELETE":
        return await account_page(request, user, errors={"del_confirm": "Type DELETE to confirm"}, section="delete", status=422)
    pool = request.app[DB]
    try:
        await auth.check_password(pool, request.app[SETTINGS], user.id, form.get("current_password", ""))
    except auth.WrongPassword:
        return await account_page(request, user, errors={"del_current_password": "The password is incorrect"}, section="delete", status=422)
    try:
        await accounts.delete_account(pool, domains.billing(request.app), domains.generation(request.app), user.id)
    except ApiError as err:
        log.warning("account deletion stopped", extra={"user_id": str(user.id), "code": err.code})
        return await account_page(
            request, user, section="delete", status=503,
            errors={"del_form": "We could not cancel your subscription right now, so nothing was deleted. Try again in a few minutes."},
        )
    await end_all_sessions(request.app, user.id)
    await end_session(request)
    await flash(request, "Your account was deleted. Thank you for using SFX Studio.", "info")
    raise redirect("/pricing")
