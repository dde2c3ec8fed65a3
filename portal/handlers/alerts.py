"""The customer's usage-mail setting (on the account page) and the admin business page."""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from portal import charts
from portal.forms import form_data
from portal.sessions import PortalUser, flash
from portal.web import redirect, render, require_admin, require_user
from server.alerts import usage
from server.appkeys import DB, SETTINGS
from server.business import service as business

routes = web.RouteTableDef()


# --- usage mails ---------------------------------------------------------------------------------


async def usage_mail_context(request: web.Request, user: PortalUser) -> dict:
    """What alerts/usage_mails.html needs; the account page merges it into its own context."""
    return {"usage_mails": await usage.mails_enabled(request.app[DB], user.id)}


@routes.post("/account/usage-mails", name="portal.account-usage-mails")
async def set_usage_mails(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await form_data(request)
    choice = form.get("usage_mails")
    if choice not in ("on", "off"):
        raise web.HTTPBadRequest()
    await usage.set_mails_enabled(request.app[DB], user.id, choice == "on")
    await flash(request, "Usage mails are on." if choice == "on" else "Usage mails are off: we will not mail you about your credits.")
    raise redirect("/account#usage-mails")


# --- business ------------------------------------------------------------------------------------


async def _report(request: web.Request, month_text: str | None) -> business.Report:
    now = datetime.now(timezone.utc)
    month = business.parse_month(month_text, now.date())
    return await business.report(request.app[DB], month, request.app[SETTINGS].upstream_price_per_1000, now=now)


@routes.get("/admin/business", name="portal.admin-business")
async def business_page(request: web.Request) -> web.Response:
    await require_admin(request)
    report = await _report(request, request.query.get("month"))
    labels = [f"{m.month:%b %y}" for m in report.history]
    dollars = lambda cents: round(cents / 100, 2)  # noqa: E731
    plan_labels = [c.plan for c in report.by_plan]
    context = {
        "page_title": "Business",
        "report": report,
        "prev_month": business.add_months(report.month, -1),
        "next_month": business.add_months(report.month, 1) if report.month < datetime.now(timezone.utc).date().replace(day=1) else None,
        "revenue_chart": charts.line_chart(
            "revenue", "Revenue and upstream cost per month", labels,
            [charts.Series("Revenue", [dollars(m.revenue_cents) for m in report.history], "series-1"),
             charts.Series("Upstream cost", [dollars(m.cost_cents) for m in report.history], "series-2")],
            unit="US dollars", size="compact",
        ),
        # A plan losing money draws at zero (the axis starts there); the table beside it has the figure.
        "margin_chart": charts.bar_chart(
            "plan-margin", f"Gross margin per plan, {report.month:%B %Y}", plan_labels,
            [dollars(max(0, c.margin_cents)) for c in report.by_plan], unit="US dollars", size="compact",
        ),
        "prices": request.app[SETTINGS].upstream_price_per_1000,
    }
    return await render(request, "alerts/business.html", context)


# A form post, like the account's data export: a download is an action, not a page to visit.
@routes.post("/admin/business/export", name="portal.admin-business-export")
async def business_csv(request: web.Request) -> web.Response:
    await require_admin(request)
    report = await _report(request, (await form_data(request)).get("month"))
    return web.Response(
        text=business.to_csv(report), content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="business-{report.month:%Y-%m}.csv"'},
    )
