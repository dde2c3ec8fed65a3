"""A local Stripe for tests and development: the API endpoints billing calls, hosted pages, signed webhooks.

The real `stripe` SDK talks to it over HTTP (STRIPE_API_BASE points here), so the wire format is
what matters: form-encoded requests with bracketed keys, JSON objects shaped like the API version
stripe 16 pins (billing periods on subscription items, invoices linked to their subscription
through `parent.subscription_details.subscription`, line prices under `pricing.price_details`).

State lives in one `FakeStripe` object. Test code moves the world forward with its coroutines
(`complete_checkout`, `renew`, `fail_renewal`, `refund`, ...), each of which changes the objects and
emits the events Stripe would send; events are signed with the real
`stripe.WebhookSignature.generate_signature_header` and POSTed to `webhook_url` when
`auto_deliver` is on, else kept in `pending` for the test to deliver in any order, any number of times.

A browser can "pay" on the hosted Checkout page (`/checkout/{id}`) and use a small hosted customer
portal (`/portal/{id}`); both deliver the webhooks before redirecting back, so the page the browser
lands on already reflects the payment.
"""

from __future__ import annotations

import copy
import html
import itertools
import json
import re
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable

import aiohttp
import stripe
from aiohttp import web

API_VERSION = stripe._api_version._ApiVersion.CURRENT
DAY = 86400
PERIOD = 30 * DAY

# Monthly prices in cents of the plans; packs are priced at one cent per credit (pack_500: $5.00).
PLAN_AMOUNTS = {"basic": 999, "pro": 1999, "enterprise": 4999}


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> web.Response:
        error = {"type": self.type, "message": self.message}
        if self.param:
            error["param"] = self.param
        if self.code:
            error["code"] = self.code
        return web.json_response({"error": error}, status=self.status)


@dataclass
class Delivery:
    event_id: str
    event_type: str
    status: int
    body: str


@dataclass
class FakeStripe:
    api_key: str
    webhook_secret: str
    price_ids: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    base_url: str = ""
    auto_deliver: bool = True

    def __post_init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {}
        self.events: list[dict] = []
        self.pending: list[dict] = []
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, str]] = []
        self.clock_offset = 0
        self._idempotent: dict[str, tuple[int, str]] = {}
        self._counter = itertools.count(1)
        self._invoice_numbers = itertools.count(1)
        for name, price_id in self.price_ids.items():
            self.add_price(name, price_id)

    # --- clock, ids, storage ---------------------------------------------

    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def new_id(self, prefix: str) -> str:
        # Stripe ids sort roughly by creation; the counter keeps ours strictly ordered.
        return f"{prefix}_{next(self._counter):06d}{secrets.token_hex(6)}"

    def store(self, kind: str) -> dict[str, dict]:
        return self.objects.setdefault(kind, {})

    def get(self, kind: str, object_id: str) -> dict:
        try:
            return self.store(kind)[object_id]
        except KeyError:
            raise StripeApiError(404, f"No such {kind}: '{object_id}'", param="id", code="resource_missing") from None

    def add_price(self, name: str, price_id: str, *, unit_amount: int | None = None) -> dict:
        recurring = not name.startswith("pack_")
        if unit_amount is None:
            unit_amount = PLAN_AMOUNTS.get(name, 1000) if recurring else int(name.split("_", 1)[1])
        price = {
            "id": price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": self.now(),
            "currency": "usd",
            "livemode": False,
            "lookup_key": name,
            "metadata": {},
            "nickname": name.replace("_", " ").title(),
            "product": f"prod_{name}",
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed", "meter": None,
                          "trial_period_days": None} if recurring else None,
            "tax_behavior": "unspecified",
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        self.store("price")[price_id] = price
        return price

    # --- events and delivery -----------------------------------------------

    def event(self, type_: str, obj: dict, *, previous_attributes: dict | None = None, created: int | None = None) -> dict:
        """An event exactly as Stripe sends it: a snapshot of the object at this moment."""
        evt = make_event(type_, obj, previous_attributes=previous_attributes, created=self.now() if created is None else created,
                         event_id=self.new_id("evt"))
        self.events.append(evt)
        return evt

    def sign(self, payload: str, *, timestamp: int | None = None, secret: str | None = None) -> str:
        return sign_payload(payload, secret or self.webhook_secret, timestamp=timestamp)

    async def deliver(self, event: dict, *, timestamp: int | None = None, secret: str | None = None,
                      signature: str | None = None, url: str | None = None) -> Delivery:
        """POST one event, signed (or with the signature given), to the webhook endpoint."""
        target = url or self.webhook_url
        if not target:
            raise RuntimeError("FakeStripe.webhook_url is not set")
        payload = json.dumps(event, indent=2)
        header = signature if signature is not None else self.sign(payload, timestamp=timestamp, secret=secret)
        async with aiohttp.ClientSession() as session:
            async with session.post(target, data=payload.encode(), headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": header,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }) as resp:
                delivery = Delivery(event["id"], event["type"], resp.status, await resp.text())
        self.deliveries.append(delivery)
        return delivery

    async def emit(self, events: Iterable[dict]) -> list[dict]:
        events = list(events)
        if self.auto_deliver:
            for evt in events:
                await self.deliver(evt)
        else:
            self.pending.extend(events)
        return events

    async def deliver_pending(self, *types: str) -> list[Delivery]:
        """Deliver the queued events (only those of the given types, when any are named)."""
        chosen = [e for e in self.pending if not types or e["type"] in types]
        self.pending = [e for e in self.pending if e not in chosen]
        return [await self.deliver(e) for e in chosen]

    def take(self, type_: str) -> dict:
        """Remove and return the first queued event of a type."""
        for evt in self.pending:
            if evt["type"] == type_:
                self.pending.remove(evt)
                return evt
        raise LookupError(f"no pending {type_} event; pending: {[e['type'] for e in self.pending]}")

    # --- API object builders ----------------------------------------------

    def create_customer(self, params: dict) -> dict:
        customer = {
            "id": self.new_id("cus"),
            "object": "customer",
            "created": self.now(),
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": dict(params.get("metadata") or {}),
            "livemode": False,
        }
        self.store("customer")[customer["id"]] = customer
        return customer

    def create_checkout_session(self, params: dict) -> dict:
        mode = params.get("mode")
        if mode not in ("payment", "subscription"):
            raise StripeApiError(400, "mode must be payment or subscription", param="mode")
        items = params.get("line_items") or []
        if len(items) != 1 or "price" not in items[0]:
            raise StripeApiError(400, "line_items must hold one price", param="line_items")
        price = self.get("price", items[0]["price"])
        if (price["type"] == "recurring") != (mode == "subscription"):
            raise StripeApiError(400, f"price {price['id']} cannot be used in {mode} mode", param="line_items[0][price]")
        for url_param in ("success_url", "cancel_url"):
            if not params.get(url_param):
                raise StripeApiError(400, f"Missing required param: {url_param}.", param=url_param)
        customer = params.get("customer")
        if customer:
            self.get("customer", customer)
        session_id = self.new_id("cs_test")
        quantity = int(items[0].get("quantity", 1))
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": price["unit_amount"] * quantity,
            "amount_total": price["unit_amount"] * quantity,
            "cancel_url": params["cancel_url"],
            "client_reference_id": params.get("client_reference_id"),
            "created": self.now(),
            "currency": price["currency"],
            "customer": customer,
            "customer_email": params.get("customer_email"),
            "customer_details": None,
            "expires_at": self.now() + DAY,
            "invoice": None,
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "mode": mode,
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params["success_url"],
            "url": f"{self.base_url}/checkout/{session_id}",
            # Not part of the API object; kept to build what payment creates.
            "_price": price["id"],
            "_quantity": quantity,
            "_subscription_metadata": dict((params.get("subscription_data") or {}).get("metadata") or {}),
            "_payment_intent_metadata": dict((params.get("payment_intent_data") or {}).get("metadata") or {}),
        }
        self.store("checkout.session")[session_id] = session
        return session

    def create_portal_session(self, params: dict) -> dict:
        customer = params.get("customer")
        if not customer:
            raise StripeApiError(400, "Missing required param: customer.", param="customer")
        self.get("customer", customer)
        session_id = self.new_id("bps")
        portal = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": "bpc_default",
            "created": self.now(),
            "customer": customer,
            "flow": params.get("flow_data"),
            "livemode": False,
            "locale": None,
            "on_behalf_of": None,
            "return_url": params.get("return_url"),
            "url": f"{self.base_url}/portal/{session_id}",
        }
        self.store("billing_portal.session")[session_id] = portal
        return portal

    def _new_subscription(self, customer: str, price_id: str, metadata: dict, quantity: int = 1) -> dict:
        now = self.now()
        sub_id = self.new_id("sub")
        subscription = {
            "id": sub_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": "usd",
            "customer": customer,
            "ended_at": None,
            "items": {
                "object": "list",
                "data": [self._subscription_item(sub_id, price_id, now, now + PERIOD, quantity)],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(metadata),
            "start_date": now,
            "status": "active",
        }
        self.store("subscription")[sub_id] = subscription
        return subscription

    def _subscription_item(self, sub_id: str, price_id: str, start: int, end: int, quantity: int = 1) -> dict:
        return {
            "id": self.new_id("si"),
            "object": "subscription_item",
            "created": start,
            "current_period_end": end,
            "current_period_start": start,
            "metadata": {},
            "price": copy.deepcopy(self.get("price", price_id)),
            "quantity": quantity,
            "subscription": sub_id,
        }

    def _new_invoice(self, subscription: dict, billing_reason: str, *, paid: bool, amount: int | None = None,
                     proration: bool = False, line_start: int | None = None) -> dict:
        item = subscription["items"]["data"][0]
        price = item["price"]
        now = self.now()
        invoice_id = self.new_id("in")
        total = price["unit_amount"] * item["quantity"] if amount is None else amount
        start = item["current_period_start"] if line_start is None else line_start
        line = {
            "id": self.new_id("il"),
            "object": "line_item",
            "amount": total,
            "currency": "usd",
            "description": f"{item['quantity']} × {price['nickname']}",
            "invoice": invoice_id,
            "livemode": False,
            "metadata": {},
            "parent": {
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription["id"],
                    "subscription_item": item["id"],
                },
            },
            "period": {"start": start, "end": item["current_period_end"]},
            "pricing": {
                "type": "price_details",
                "price_details": {"price": price["id"], "product": price["product"]},
                "unit_amount_decimal": str(price["unit_amount"]),
            },
            "quantity": item["quantity"],
        }
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "amount_due": total,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": "usd",
            "customer": subscription["customer"],
            "hosted_invoice_url": f"{self.base_url}/invoice/{invoice_id}",
            "invoice_pdf": f"{self.base_url}/invoice/{invoice_id}/pdf",
            "lines": {"object": "list", "data": [line], "has_more": False, "total_count": 1,
                      "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None if paid else now + 3 * DAY,
            "number": f"FAKE-{next(self._invoice_numbers):04d}",
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": dict(subscription["metadata"]), "subscription": subscription["id"],
                                         "subscription_proration_date": None},
            },
            # Stripe's quirk, kept on purpose: a renewal invoice's own period is the one that just ended.
            "period_end": start,
            "period_start": start if billing_reason == "subscription_create" else start - PERIOD,
            "status": "paid" if paid else "open",
            "status_transitions": {"finalized_at": now, "paid_at": now if paid else None, "marked_uncollectible_at": None,
                                   "voided_at": None},
            "subtotal": total,
            "total": total,
        }
        self.store("invoice")[invoice_id] = invoice
        subscription["latest_invoice"] = invoice_id
        return invoice

    def _new_charge(self, customer: str | None, amount: int, metadata: dict) -> tuple[dict, dict]:
        now = self.now()
        intent_id = self.new_id("pi")
        charge = {
            "id": self.new_id("ch"),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "captured": True,
            "created": now,
            "currency": "usd",
            "customer": customer,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": intent_id,
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""},
            "status": "succeeded",
        }
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "created": now,
            "currency": "usd",
            "customer": customer,
            "latest_charge": charge["id"],
            "livemode": False,
            "metadata": dict(metadata),
            "status": "succeeded",
        }
        charge["refunds"]["url"] = f"/v1/charges/{charge['id']}/refunds"
        self.store("charge")[charge["id"]] = charge
        self.store("payment_intent")[intent_id] = intent
        return intent, charge

    def _ensure_checkout_customer(self, session: dict) -> str:
        if session["customer"]:
            return session["customer"]
        customer = self.create_customer({"email": session.get("customer_email") or "buyer@example.com"})
        session["customer"] = customer["id"]
        return customer["id"]

    # --- world changes (each returns the events Stripe would send) ----------

    async def complete_checkout(self, session_id: str) -> list[dict]:
        """The customer pays on the Checkout page."""
        session = self.get("checkout.session", session_id)
        if session["status"] != "open":
            raise StripeApiError(400, "This Checkout Session is no longer open")
        customer_id = self._ensure_checkout_customer(session)
        customer = self.get("customer", customer_id)
        session["customer_details"] = {"email": customer.get("email"), "name": customer.get("name")}
        events = []
        if session["mode"] == "subscription":
            subscription = self._new_subscription(customer_id, session["_price"], session["_subscription_metadata"],
                                                  session["_quantity"])
            invoice = self._new_invoice(subscription, "subscription_create", paid=True)
            self._new_charge(customer_id, invoice["total"], {})
            session["subscription"] = subscription["id"]
            session["invoice"] = invoice["id"]
            events += [
                self.event("customer.subscription.created", subscription),
                self.event("invoice.finalized", {**invoice, "status": "open", "amount_paid": 0,
                                                 "amount_remaining": invoice["total"]}),
                self.event("invoice.paid", invoice),
            ]
        else:
            intent, _ = self._new_charge(customer_id, session["amount_total"], session["_payment_intent_metadata"])
            session["payment_intent"] = intent["id"]
        session["status"] = "complete"
        session["payment_status"] = "paid"
        session["url"] = None
        events.append(self.event("checkout.session.completed", session))
        return await self.emit(events)

    def subscription_of(self, customer_id: str) -> dict:
        subs = [s for s in self.store("subscription").values() if s["customer"] == customer_id and s["status"] != "canceled"]
        if not subs:
            raise LookupError(f"customer {customer_id} has no live subscription")
        return subs[-1]

    def _advance_period(self, subscription: dict) -> dict:
        item = subscription["items"]["data"][0]
        previous = {"items": copy.deepcopy(subscription["items"])}
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] = item["current_period_start"] + PERIOD
        return previous

    async def renew(self, sub_id: str) -> list[dict]:
        """A billing cycle passes and the renewal payment succeeds."""
        subscription = self.get("subscription", sub_id)
        previous = self._advance_period(subscription)
        previous["latest_invoice"] = subscription["latest_invoice"]
        invoice = self._new_invoice(subscription, "subscription_cycle", paid=True)
        self._new_charge(subscription["customer"], invoice["total"], {})
        return await self.emit([
            self.event("customer.subscription.updated", subscription, previous_attributes=previous),
            self.event("invoice.finalized", {**invoice, "status": "open", "amount_paid": 0, "amount_remaining": invoice["total"]}),
            self.event("invoice.paid", invoice),
        ])

    async def fail_renewal(self, sub_id: str) -> list[dict]:
        """A billing cycle passes and the card is declined: the invoice stays open, the subscription is past due."""
        subscription = self.get("subscription", sub_id)
        previous = self._advance_period(subscription)
        previous["status"] = subscription["status"]
        subscription["status"] = "past_due"
        invoice = self._new_invoice(subscription, "subscription_cycle", paid=False)
        return await self.emit([
            self.event("invoice.finalized", invoice),
            self.event("invoice.payment_failed", invoice),
            self.event("customer.subscription.updated", subscription, previous_attributes=previous),
        ])

    async def pay_invoice(self, invoice_id: str) -> list[dict]:
        """A retry of an open invoice succeeds."""
        invoice = self.get("invoice", invoice_id)
        invoice.update(status="paid", amount_paid=invoice["total"], amount_remaining=0, next_payment_attempt=None)
        invoice["status_transitions"]["paid_at"] = self.now()
        invoice["attempt_count"] += 1
        events = [self.event("invoice.paid", invoice)]
        sub_id = invoice["parent"]["subscription_details"]["subscription"]
        subscription = self.get("subscription", sub_id)
        if subscription["status"] == "past_due":
            subscription["status"] = "active"
            events.append(self.event("customer.subscription.updated", subscription, previous_attributes={"status": "past_due"}))
        return await self.emit(events)

    async def set_cancel_at_period_end(self, sub_id: str, cancel: bool = True) -> list[dict]:
        subscription = self.get("subscription", sub_id)
        previous = {"cancel_at_period_end": subscription["cancel_at_period_end"], "cancel_at": subscription["cancel_at"],
                    "canceled_at": subscription["canceled_at"]}
        subscription["cancel_at_period_end"] = cancel
        subscription["cancel_at"] = subscription["items"]["data"][0]["current_period_end"] if cancel else None
        subscription["canceled_at"] = self.now() if cancel else None
        return await self.emit([self.event("customer.subscription.updated", subscription, previous_attributes=previous)])

    async def end_subscription(self, sub_id: str) -> list[dict]:
        """The subscription ends (its period ran out after a cancellation, or it was cancelled now)."""
        subscription = self.get("subscription", sub_id)
        subscription["status"] = "canceled"
        subscription["ended_at"] = self.now()
        subscription["canceled_at"] = subscription["canceled_at"] or self.now()
        return await self.emit([self.event("customer.subscription.deleted", subscription)])

    async def change_price(self, sub_id: str, price_id: str, *, notify: bool = True, invoice_now: bool = True) -> list[dict]:
        """Switch the subscription's item to another price (an upgrade or downgrade in the portal).

        notify=False changes Stripe's state without any webhook: the drift reconciliation repairs.
        """
        subscription = self.get("subscription", sub_id)
        item = subscription["items"]["data"][0]
        old_amount = item["price"]["unit_amount"]
        previous = {"items": copy.deepcopy(subscription["items"])}
        item["price"] = copy.deepcopy(self.get("price", price_id))
        if not notify:
            return []
        events = [self.event("customer.subscription.updated", subscription, previous_attributes=previous)]
        difference = item["price"]["unit_amount"] - old_amount
        if invoice_now and difference > 0:
            invoice = self._new_invoice(subscription, "subscription_update", paid=True, amount=difference, proration=True,
                                        line_start=self.now())
            self._new_charge(subscription["customer"], difference, {})
            events += [self.event("invoice.finalized", {**invoice, "status": "open"}), self.event("invoice.paid", invoice)]
        return await self.emit(events)

    async def refund(self, payment_intent_id: str, amount: int | None = None) -> list[dict]:
        self.create_refund({"payment_intent": payment_intent_id, **({"amount": amount} if amount is not None else {})})
        charge = self.get("charge", self.get("payment_intent", payment_intent_id)["latest_charge"])
        return await self.emit([self.event("charge.refunded", charge,
                                           previous_attributes={"amount_refunded": charge["_previous_refunded"]})])

    async def dispute(self, payment_intent_id: str, amount: int | None = None, *, outcome: str | None = None) -> list[dict]:
        """The cardholder disputes the payment: `charge.dispute.created` (Stripe takes the disputed
        amount back at once); with `outcome` ("won" or "lost"), also `charge.dispute.closed`."""
        charge = self.get("charge", self.get("payment_intent", payment_intent_id)["latest_charge"])
        dispute = {"id": self.new_id("dp"), "object": "dispute", "amount": charge["amount"] if amount is None else amount,
                   "charge": charge["id"], "payment_intent": payment_intent_id, "currency": charge["currency"],
                   "reason": "fraudulent", "status": "needs_response", "created": self.now(), "metadata": {}}
        self.store("dispute")[dispute["id"]] = dispute
        charge["disputed"] = True
        events = [self.event("charge.dispute.created", dict(dispute))]
        if outcome is not None:
            dispute["status"] = outcome
            events.append(self.event("charge.dispute.closed", dict(dispute), previous_attributes={"status": "needs_response"}))
        return await self.emit(events)

    def create_refund(self, params: dict) -> dict:
        if params.get("payment_intent"):
            charge = self.get("charge", self.get("payment_intent", params["payment_intent"])["latest_charge"])
        elif params.get("charge"):
            charge = self.get("charge", params["charge"])
        else:
            raise StripeApiError(400, "One of charge or payment_intent is required")
        left = charge["amount"] - charge["amount_refunded"]
        amount = int(params.get("amount", left))
        if amount <= 0 or amount > left:
            raise StripeApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                                 param="amount")
        refund = {"id": self.new_id("re"), "object": "refund", "amount": amount, "charge": charge["id"],
                  "created": self.now(), "currency": charge["currency"], "payment_intent": charge["payment_intent"],
                  "status": "succeeded", "metadata": {}}
        self.store("refund")[refund["id"]] = refund
        charge["_previous_refunded"] = charge["amount_refunded"]
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        return refund

    def cancel_subscription_now(self, sub_id: str) -> dict:
        subscription = self.get("subscription", sub_id)
        if subscription["status"] == "canceled":
            raise StripeApiError(400, "A canceled subscription can only update its cancellation_details and metadata.")
        subscription["status"] = "canceled"
        subscription["ended_at"] = subscription["canceled_at"] = self.now()
        return subscription

    # --- lists ------------------------------------------------------------

    def list_objects(self, kind: str, query: dict, url: str, match) -> dict:
        items = [o for o in reversed(list(self.store(kind).values())) if match(o)]  # newest first, like Stripe
        limit = max(1, min(100, int(query.get("limit", 10))))
        if query.get("starting_after"):
            ids = [o["id"] for o in items]
            if query["starting_after"] not in ids:
                raise StripeApiError(400, "starting_after must be an id in this list", param="starting_after")
            items = items[ids.index(query["starting_after"]) + 1:]
        page = items[:limit]
        return {"object": "list", "data": page, "has_more": len(items) > limit, "url": url}


# --- module helpers ----------------------------------------------------------

def make_event(type_: str, obj: dict, *, previous_attributes: dict | None = None, created: int | None = None,
               event_id: str | None = None) -> dict:
    """A correctly shaped Stripe event around a snapshot of `obj` (private `_` keys dropped)."""
    data: dict[str, Any] = {"object": public(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = public(previous_attributes)
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{secrets.token_hex(7)}", "idempotency_key": None},
        "type": type_,
    }


def sign_payload(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def public(value: Any) -> Any:
    """A deep copy without the fake's private `_` keys."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


_BRACKETS = re.compile(r"\[([^\]]*)\]")


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict:
    """Stripe's form encoding (`line_items[0][price]=x`, `expand[0]=y`) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        path = [head] + _BRACKETS.findall(key[len(head):])
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


# --- the HTTP application ----------------------------------------------------

FAKE = web.AppKey("fake_stripe", FakeStripe)


def create_fake_stripe_app(fake: FakeStripe) -> web.Application:
    app = web.Application(middlewares=[_api_errors])
    app[FAKE] = fake
    app.router.add_routes(_api_routes)
    app.router.add_routes(_page_routes)
    return app


@web.middleware
async def _api_errors(request: web.Request, handler):
    fake = request.app[FAKE]
    fake.requests.append((request.method, request.path))
    if request.path.startswith("/v1/"):
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if key != fake.api_key:
            masked = (key[:8] + "*" * 4 + key[-4:]) if len(key) > 12 else "****"
            return StripeApiError(401, f"Invalid API Key provided: {masked}", code="api_key_invalid").response()
        idem = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if idem and idem in fake._idempotent:
            status, body = fake._idempotent[idem]
            return web.Response(status=status, text=body, content_type="application/json")
    try:
        response = await handler(request)
    except StripeApiError as err:
        return err.response()
    if request.path.startswith("/v1/") and request.method == "POST" and idem and isinstance(response, web.Response):
        fake._idempotent[idem] = (response.status, response.text)
    return response


async def _params(request: web.Request) -> dict:
    pairs = list(request.query.items())
    if request.method in ("POST", "DELETE") and request.can_read_body:
        pairs += list((await request.post()).items())
    return parse_form(pairs)


def _ok(obj: dict) -> web.Response:
    return web.json_response(public(obj))


_api_routes = web.RouteTableDef()


@_api_routes.post("/v1/customers")
async def _customers_create(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].create_customer(await _params(request)))


@_api_routes.get("/v1/customers/{id}")
async def _customers_retrieve(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].get("customer", request.match_info["id"]))


@_api_routes.post("/v1/customers/{id}")
async def _customers_update(request: web.Request) -> web.Response:
    customer = request.app[FAKE].get("customer", request.match_info["id"])
    params = await _params(request)
    customer.update({k: v for k, v in params.items() if k in ("email", "name")})
    if "metadata" in params:
        customer["metadata"].update(params["metadata"] or {})
    return _ok(customer)


@_api_routes.post("/v1/checkout/sessions")
async def _checkout_create(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].create_checkout_session(await _params(request)))


@_api_routes.get("/v1/checkout/sessions/{id}")
async def _checkout_retrieve(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].get("checkout.session", request.match_info["id"]))


@_api_routes.post("/v1/billing_portal/sessions")
async def _portal_create(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].create_portal_session(await _params(request)))


@_api_routes.get("/v1/subscriptions")
async def _subscriptions_list(request: web.Request) -> web.Response:
    fake, query = request.app[FAKE], await _params(request)
    status = query.get("status")

    def match(sub: dict) -> bool:
        if query.get("customer") and sub["customer"] != query["customer"]:
            return False
        if query.get("price") and sub["items"]["data"][0]["price"]["id"] != query["price"]:
            return False
        if status == "all":
            return True
        if status:
            return sub["status"] == status
        return sub["status"] != "canceled"  # Stripe's default hides cancelled subscriptions

    return _ok(fake.list_objects("subscription", query, "/v1/subscriptions", match))


@_api_routes.get("/v1/subscriptions/{id}")
async def _subscriptions_retrieve(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].get("subscription", request.match_info["id"]))


@_api_routes.post("/v1/subscriptions/{id}")
async def _subscriptions_update(request: web.Request) -> web.Response:
    fake, params = request.app[FAKE], await _params(request)
    sub_id = request.match_info["id"]
    if "cancel_at_period_end" in params:
        await fake.set_cancel_at_period_end(sub_id, _bool(params["cancel_at_period_end"]))
    for item in params.get("items") or []:
        if item.get("price"):
            await fake.change_price(sub_id, item["price"],
                                    invoice_now=params.get("proration_behavior") == "always_invoice")
    return _ok(fake.get("subscription", sub_id))


@_api_routes.delete("/v1/subscriptions/{id}")
async def _subscriptions_cancel(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    subscription = fake.cancel_subscription_now(request.match_info["id"])
    await fake.emit([fake.event("customer.subscription.deleted", subscription)])
    return _ok(subscription)


@_api_routes.get("/v1/invoices")
async def _invoices_list(request: web.Request) -> web.Response:
    fake, query = request.app[FAKE], await _params(request)

    def match(inv: dict) -> bool:
        if query.get("customer") and inv["customer"] != query["customer"]:
            return False
        if query.get("status") and inv["status"] != query["status"]:
            return False
        created = query.get("created")
        if isinstance(created, dict) and "gte" in created and inv["created"] < int(created["gte"]):
            return False
        sub = (inv.get("parent") or {}).get("subscription_details") or {}
        return not query.get("subscription") or sub.get("subscription") == query["subscription"]

    return _ok(fake.list_objects("invoice", query, "/v1/invoices", match))


@_api_routes.get("/v1/invoices/{id}")
async def _invoices_retrieve(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].get("invoice", request.match_info["id"]))


@_api_routes.get("/v1/prices")
async def _prices_list(request: web.Request) -> web.Response:
    fake, query = request.app[FAKE], await _params(request)
    return _ok(fake.list_objects("price", query, "/v1/prices", lambda p: True))


@_api_routes.get("/v1/prices/{id}")
async def _prices_retrieve(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].get("price", request.match_info["id"]))


@_api_routes.get("/v1/charges/{id}")
async def _charges_retrieve(request: web.Request) -> web.Response:
    return _ok(request.app[FAKE].get("charge", request.match_info["id"]))


@_api_routes.post("/v1/refunds")
async def _refunds_create(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    refund = fake.create_refund(await _params(request))
    charge = fake.get("charge", refund["charge"])
    await fake.emit([fake.event("charge.refunded", charge, previous_attributes={"amount_refunded": charge["_previous_refunded"]})])
    return _ok(refund)


# --- hosted pages --------------------------------------------------------------

_page_routes = web.RouteTableDef()

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""


def _page(title: str, body: str) -> web.Response:
    return web.Response(text=_PAGE.format(title=html.escape(title), body=body), content_type="text/html")


@_page_routes.get("/checkout/{id}")
async def _checkout_page(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    session = fake.get("checkout.session", request.match_info["id"])
    price = fake.get("price", session["_price"])
    if session["status"] != "open":
        return _page("Checkout complete", "<p>This checkout session is no longer open.</p>")
    amount = f"${session['amount_total'] / 100:.2f}"
    per = " per month" if session["mode"] == "subscription" else ""
    body = (
        f"<p class=\"product\">{html.escape(price['nickname'])}</p><p class=\"amount\">{amount}{per}</p>"
        f"<form method=\"post\" action=\"/checkout/{session['id']}/pay\">"
        "<label>Card number <input name=\"card\" value=\"4242 4242 4242 4242\"></label>"
        f"<button type=\"submit\" id=\"pay\">{'Subscribe' if per else 'Pay'}</button></form>"
        f"<p><a id=\"cancel\" href=\"{html.escape(session['cancel_url'])}\">Back</a></p>"
    )
    return _page("Fake Stripe Checkout", body)


@_page_routes.post("/checkout/{id}/pay")
async def _checkout_pay(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    session = fake.get("checkout.session", request.match_info["id"])
    await fake.complete_checkout(session["id"])
    raise web.HTTPSeeOther(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]))


@_page_routes.get("/portal/{id}")
async def _portal_page(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    portal = fake.get("billing_portal.session", request.match_info["id"])
    subs = [s for s in fake.store("subscription").values() if s["customer"] == portal["customer"] and s["status"] != "canceled"]
    parts = []
    for sub in subs:
        item = sub["items"]["data"][0]
        note = " (cancels at period end)" if sub["cancel_at_period_end"] else ""
        parts.append(f"<section class=\"subscription\"><p>{html.escape(item['price']['nickname'])}{note}</p>")
        action = "resume" if sub["cancel_at_period_end"] else "cancel"
        parts.append(f"<form method=\"post\" action=\"/portal/{portal['id']}/{action}\"><input type=\"hidden\" name=\"subscription\" "
                     f"value=\"{sub['id']}\"><button id=\"{action}\">{action.title()} plan</button></form>")
        for price in fake.store("price").values():
            if price["type"] == "recurring" and price["id"] != item["price"]["id"]:
                parts.append(f"<form method=\"post\" action=\"/portal/{portal['id']}/switch\"><input type=\"hidden\" "
                             f"name=\"subscription\" value=\"{sub['id']}\"><input type=\"hidden\" name=\"price\" value=\"{price['id']}\">"
                             f"<button id=\"switch-{price['lookup_key']}\">Switch to {html.escape(price['nickname'])}</button></form>")
        parts.append("</section>")
    invoices = [i for i in fake.store("invoice").values() if i["customer"] == portal["customer"]]
    parts.append("<ul class=\"invoices\">" + "".join(
        f"<li>{html.escape(i['number'] or '')} ${i['total'] / 100:.2f} {i['status']}</li>" for i in invoices) + "</ul>")
    parts.append(f"<p><a id=\"return\" href=\"{html.escape(portal['return_url'] or '/')}\">Return</a></p>")
    return _page("Fake Stripe customer portal", "".join(parts))


async def _portal_form(request: web.Request) -> tuple[FakeStripe, dict, dict]:
    fake = request.app[FAKE]
    portal = fake.get("billing_portal.session", request.match_info["id"])
    form = await request.post()
    subscription = fake.get("subscription", str(form.get("subscription", "")))
    if subscription["customer"] != portal["customer"]:
        raise web.HTTPForbidden()
    return fake, portal, {"subscription": subscription["id"], "price": form.get("price")}


@_page_routes.post("/portal/{id}/cancel")
async def _portal_cancel(request: web.Request) -> web.Response:
    fake, portal, form = await _portal_form(request)
    await fake.set_cancel_at_period_end(form["subscription"], True)
    raise web.HTTPSeeOther(f"/portal/{portal['id']}")


@_page_routes.post("/portal/{id}/resume")
async def _portal_resume(request: web.Request) -> web.Response:
    fake, portal, form = await _portal_form(request)
    await fake.set_cancel_at_period_end(form["subscription"], False)
    raise web.HTTPSeeOther(f"/portal/{portal['id']}")


@_page_routes.post("/portal/{id}/switch")
async def _portal_switch(request: web.Request) -> web.Response:
    fake, portal, form = await _portal_form(request)
    await fake.change_price(form["subscription"], str(fake.get("price", str(form["price"]))["id"]))
    raise web.HTTPSeeOther(f"/portal/{portal['id']}")


@_page_routes.get("/invoice/{id}")
async def _invoice_page(request: web.Request) -> web.Response:
    invoice = request.app[FAKE].get("invoice", request.match_info["id"])
    return _page(f"Invoice {invoice['number']}", f"<p>${invoice['total'] / 100:.2f} {invoice['status']}</p>")


@_page_routes.get("/invoice/{id}/pdf")
async def _invoice_pdf(request: web.Request) -> web.Response:
    invoice = request.app[FAKE].get("invoice", request.match_info["id"])
    return web.Response(body=b"%PDF-1.4\n% fake invoice " + invoice["id"].encode() + b"\n%%EOF\n",
                        content_type="application/pdf")


# --- running it -----------------------------------------------------------------

@asynccontextmanager
async def running_fake_stripe(*, api_key: str, webhook_secret: str, price_ids: dict[str, str],
                              webhook_url: str | None = None, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[FakeStripe]:
    """Serve a FakeStripe on a free local port for the duration of the block; `fake.base_url` is its root."""
    fake = FakeStripe(api_key=api_key, webhook_secret=webhook_secret, price_ids=dict(price_ids), webhook_url=webhook_url)
    runner = web.AppRunner(create_fake_stripe_app(fake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    fake.base_url = f"http://{host}:{bound}"
    try:
        yield fake
    finally:
        await runner.cleanup()
