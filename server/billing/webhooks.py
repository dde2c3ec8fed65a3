"""Applying verified Stripe events: once each, one customer at a time, in any arrival order.

Each event runs in one transaction that (1) stores the event id, (2) locks the customer's row and
(3) applies the effects. A redelivered event finds its id and does nothing; two events about one
customer wait for each other on the row lock; a failure rolls everything back, id included, so
Stripe's retry applies the event again from scratch.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import asyncpg

from server.billing import repo
from server.billing.service import (
    BillingState,
    Changes,
    invoice_subscription_id,
    invoice_user_hint,
    parse_uuid,
    ref,
    ts,
)

log = logging.getLogger("server.billing.webhooks")

PROCESSED, DUPLICATE, IGNORED, UNLINKED, AWAITING_PAYMENT = "processed", "duplicate", "ignored", "unlinked", "awaiting_payment"

Handler = Callable[[asyncpg.Connection, dict, dict, asyncpg.Record | None], Awaitable[str]]


class WebhookProcessor:
    def __init__(self, pool: asyncpg.Pool, state: BillingState) -> None:
        self.pool = pool
        self.state = state
        self.handlers: dict[str, Handler] = {
            "checkout.session.completed": self.checkout_completed,
            "checkout.session.async_payment_succeeded": self.checkout_completed,
            "customer.subscription.created": self.subscription_changed,
            "customer.subscription.updated": self.subscription_changed,
            "customer.subscription.deleted": self.subscription_changed,
            "customer.subscription.paused": self.subscription_changed,
            "customer.subscription.resumed": self.subscription_changed,
            "invoice.paid": self.invoice_paid,
            "invoice.payment_failed": self.invoice_payment_failed,
            "invoice.finalized": self.invoice_changed,
            "invoice.updated": self.invoice_changed,
            "invoice.voided": self.invoice_changed,
            "invoice.marked_uncollectible": self.invoice_changed,
            "charge.refunded": self.charge_refunded,
            "charge.dispute.created": self.charge_disputed,
        }

    async def process(self, event: dict) -> str:
        """Apply one event; returns its outcome (processed, duplicate, ignored, unlinked, ...)."""
        type_ = event["type"]
        obj = event["data"]["object"]
        customer_id = ref(obj.get("customer")) if isinstance(obj, dict) else None
        handler = self.handlers.get(type_)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await repo.record_event(conn, event["id"], type_, ts(event["created"]), customer_id, "processing"):
                return DUPLICATE
            if handler is None:
                outcome = IGNORED
            else:
                customer = await repo.lock_customer(conn, customer_id) if customer_id else None
                outcome = await handler(conn, event, obj, customer)
            await repo.set_event_outcome(conn, event["id"], outcome)
        return outcome

    async def _user(self, conn: asyncpg.Connection, customer: asyncpg.Record | None, hint=None):
        if customer is None:
            return hint
        return await self.state.resolve_user(conn, customer, hint)

    # --- handlers ---------------------------------------------------------------------

    async def checkout_completed(self, conn, event, session, customer) -> str:
        user_id = await self._user(conn, customer, parse_uuid(session.get("client_reference_id")))
        if user_id is None:
            log.warning("checkout session for an unknown user", extra={"session": session["id"]})
            return UNLINKED
        if session.get("mode") == "subscription" and session.get("subscription"):
            await self.state.sync_subscription(conn, ref(session["subscription"]), user_id)
            return PROCESSED
        if session.get("mode") == "payment":
            if session.get("payment_status") != "paid":
                return AWAITING_PAYMENT  # delayed methods finish with checkout.session.async_payment_succeeded
            await self.state.credit_top_up(conn, session, user_id)
            return PROCESSED
        return IGNORED

    async def subscription_changed(self, conn, event, subscription, customer) -> str:
        user_id = await self._user(conn, customer, parse_uuid((subscription.get("metadata") or {}).get("user_id")))
        # The event's snapshot may be older than what Stripe holds now; the fresh copy decides.
        await self.state.sync_subscription(conn, subscription["id"], user_id)
        return PROCESSED if user_id is not None else UNLINKED

    async def invoice_paid(self, conn, event, invoice, customer) -> str:
        user_id = await self._user(conn, customer, invoice_user_hint(invoice))
        await self.state.mirror_invoice(conn, invoice, user_id, ts(event["created"]))
        subscription_id = invoice_subscription_id(invoice)
        if subscription_id is None:
            return PROCESSED
        await self.state.settle_invoice_payment(conn, invoice)
        await self.state.sync_subscription(conn, subscription_id, user_id)
        if user_id is None:
            return UNLINKED  # granted when the customer is linked (checkout.session.completed)
        await self.state.grant_invoice(conn, invoice, user_id)
        return PROCESSED

    async def invoice_payment_failed(self, conn, event, invoice, customer) -> str:
        user_id = await self._user(conn, customer, invoice_user_hint(invoice))
        await self.state.mirror_invoice(conn, invoice, user_id, ts(event["created"]))
        subscription_id = invoice_subscription_id(invoice)
        if subscription_id is None:
            return PROCESSED
        await self.state.sync_subscription(conn, subscription_id, user_id)
        await self.state.record_payment_failure(conn, invoice, ts(event["created"]))
        if user_id is None:
            return UNLINKED
        await self.state.refresh_user(conn, user_id)
        return PROCESSED

    async def invoice_changed(self, conn, event, invoice, customer) -> str:
        user_id = await self._user(conn, customer, invoice_user_hint(invoice))
        await self.state.mirror_invoice(conn, invoice, user_id, ts(event["created"]))
        return PROCESSED

    async def charge_refunded(self, conn, event, charge, customer) -> str:
        changes: Changes = await self.state.claw_back(conn, charge)
        return PROCESSED if changes else IGNORED

    async def charge_disputed(self, conn, event, dispute, customer) -> str:
        changes: Changes = await self.state.claw_back_dispute(conn, dispute)
        if not changes:
            log.warning("payment disputed; no credit-pack credits to take back, left for an operator",
                        extra={"dispute": dispute.get("id"), "charge": ref(dispute.get("charge"))})
        return PROCESSED if changes else IGNORED

