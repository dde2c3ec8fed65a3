"""Billing: plan changes, credit packs and invoices. Payment itself happens on Stripe's pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web

from portal import domains
from portal.forms import form_data
from portal.handlers.account import as_current_user
from portal.sessions import flash
from portal.web import redirect, render, require_user
from server.appkeys import DB
from server.web.errors import ApiError

log = logging.getLogger("portal.billing")

routes = web.RouteTableDef()

# Subscriptions in these states are live: a plan change goes through Stripe's customer portal
# (a second Checkout would start a second subscription).
LIVE_STATUSES = {"active", "trialing", "past_due", "incomplete", "unpaid"}


def has_live_subscription(subscription) -> bool:
    return subscription is not None and subscription.status in LIVE_STATUSES


@dataclass(frozen=True)
class Receipt:
    """One line of the billing history: a Stripe invoice (subscriptions) or a credit pack purchase."""
    created: datetime
    description: str
    number: str | None
    amount_cents: int
    currency: str
    status: str
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None


async def receipts(billing, user_id) -> list[Receipt]:
    lines = [
        Receipt(i.created, "Subscription", i.number, i.amount_cents, i.currency, i.status, i.hosted_invoice_url, i.invoice_pdf)
        for i in await billing.invoices(user_id)
    ]
    for t in await billing.top_ups(user_id):
        status = "paid" if not t.refunded_cents else "refunded" if t.refunded_cents >= t.amount_cents else "partially refunded"
        lines.append(Receipt(t.created, f"Credit pack: {t.credits:,} credits", None, t.amount_cents, t.currency, status))
    return sorted(lines, key=lambda r: r.created, reverse=True)


@routes.get("/billing", name="portal.billing")
async def billing_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    pool = request.app[DB]
    billing = domains.billing(request.app)
    subscription = await billing.subscription(user.id) if billing else None
    packs = domains.top_up_packs(request.app)
    return await render(
        request,
        "billing.html",
        {
            "page_title": "Billing",
            "summary": await domains.credit_summary(pool, user.id),
            "plans": await domains.plans(pool),
            "subscription": subscription,
            "subscribed": has_live_subscription(subscription),
            "invoices": await receipts(billing, user.id) if billing else [],
            "packs": packs,
            "pack_prices": await billing.pack_prices() if billing and packs else {},
            "billing_available": billing is not None,
            "highlight": request.query.get("plan", ""),
            "checkout": request.query.get("checkout", ""),
            "top_up": request.query.get("top_up", ""),
            "changed": request.query.get("changed") == "1",
        },
    )


async def _billing_or_unavailable(request: web.Request):
    billing = domains.billing(request.app)
    if billing is None:
        await flash(request, "Payments are not available right now. Try again later.", "error")
        raise redirect("/billing")
    return billing


async def _go_to_stripe(request: web.Request, make_url) -> web.Response:
    try:
        url = await make_url()
    except ApiError as err:
        log.warning("could not open a Stripe page", extra={"code": err.code})
        await flash(request, f"We could not open the payment page: {err.message}", "error")
        raise redirect("/billing")
    raise redirect(url)


@routes.post("/billing/subscribe", name="portal.billing-subscribe")
async def subscribe(request: web.Request) -> web.Response:
    """Upgrade or downgrade: billing answers with Checkout for a first subscription, or Stripe's
    confirm-the-change page when one is running."""
    user = await require_user(request)
    form = await form_data(request)
    billing = await _billing_or_unavailable(request)
    return await _go_to_stripe(request, lambda: billing.checkout_subscription(as_current_user(user), form.get("plan", "")))


@routes.get("/billing/checkout", name="portal.billing-checkout")
async def checkout_chosen_plan(request: web.Request) -> web.Response:
    """Where a plan chosen on /pricing lands after sign-up: straight on Stripe's Checkout for it.
    A GET, so the choice survives the confirmation mail and sign-in; it only opens a payment page
    the customer still confirms there. Anything else (free, unknown, already subscribed) shows /billing."""
    user = await require_user(request)
    plan = request.query.get("plan", "")
    billing = domains.billing(request.app)
    paid = {p.code for p in await domains.plans(request.app[DB]) if p.price_cents}
    if billing is None or plan not in paid or has_live_subscription(await billing.subscription(user.id)):
        raise redirect("/billing?" + urlencode({"plan": plan}) if plan.isidentifier() else "/billing")
    return await _go_to_stripe(request, lambda: billing.checkout_subscription(as_current_user(user), plan))


@routes.post("/billing/manage", name="portal.billing-manage")
async def manage(request: web.Request) -> web.Response:
    """Card, cancellation and invoices on Stripe's customer portal."""
    user = await require_user(request)
    billing = await _billing_or_unavailable(request)
    return await _go_to_stripe(request, lambda: billing.customer_portal(as_current_user(user)))


@routes.post("/billing/top-up", name="portal.billing-top-up")
async def top_up(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await form_data(request)
    billing = await _billing_or_unavailable(request)
    return await _go_to_stripe(request, lambda: billing.checkout_top_up(as_current_user(user), form.get("pack", "")))
