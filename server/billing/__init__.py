"""Stripe billing: Checkout and portal sessions, webhooks, invoice mirror, reconciliation.

`BILLING` holds the BillingService the portal calls; it exists once the app has started.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from server.appkeys import DB, SETTINGS
from server.billing.service import BillingService, Invoice, Subscription
from server.billing.stripe_client import StripeGateway
from server.billing.webhooks import WebhookProcessor

BILLING = web.AppKey("billing", BillingService)
WEBHOOKS = web.AppKey("billing_webhooks", WebhookProcessor)

__all__ = ["BILLING", "BillingService", "Invoice", "Subscription", "setup"]


def setup(app: web.Application) -> None:
    from server.billing.handlers import routes

    app.router.add_routes(routes)
    app.cleanup_ctx.append(billing_ctx)


async def billing_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = StripeGateway(app[SETTINGS])
    service = BillingService(app[DB], gateway, app[SETTINGS])
    app[BILLING] = service
    app[WEBHOOKS] = WebhookProcessor(app[DB], service.state)
    yield
    await gateway.close()
