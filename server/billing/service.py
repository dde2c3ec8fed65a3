"""Billing domain logic: Checkout and portal sessions for the portal, and how Stripe's objects change
our state (plan, period allowance, payment state, invoice mirror, top-ups).

Stripe is the source of truth for subscriptions. Subscription state is always taken from a
fresh copy of the subscription (fetched while the customer's row is locked), never from an
event's snapshot, so events arriving late, twice or out of order cannot roll it back. Ledger
effects are idempotent on Stripe ids (`stripe-invoice:<id>`, `stripe-checkout:<id>`), so a grant
or top-up happens once however often its event is delivered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from server.billing import repo
from server.billing.stripe_client import StripeGateway
from server.credits import service as credits
from server.settings import Settings
from server.web.errors import ApiError, Conflict, ValidationFailed

log = logging.getLogger("server.billing")

FREE_PLAN = "free"
PACK_PREFIX = "pack_"
# Invoices that start or change a paid period; others (manual, threshold) carry no allowance.
GRANTING_REASONS = ("subscription_create", "subscription_cycle", "subscription_update")
# A subscription in these states is over at Stripe; "unpaid" is still open (it owes money)
# but, like these, entitles to no plan.
CLOSED_STATUSES = ("canceled", "incomplete_expired")
# Pack prices change rarely; the billing page must not wait on Stripe for each view, nor long when it is away.
PACK_PRICE_TTL = 600.0
PACK_PRICE_TIMEOUT = 3.0


# --- values the portal reads ---------------------------------------------------------

@dataclass(frozen=True)
class Invoice:
    number: str | None
    created: datetime
    amount_cents: int
    currency: str
    status: str
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    id: str = ""


@dataclass(frozen=True)
class Subscription:
    plan: str | None
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    past_due_since: datetime | None
    id: str = ""


@dataclass(frozen=True)
class Pack:
    code: str
    price_id: str
    credits: int


@dataclass(frozen=True)
class PackPrice:
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class TopUp:
    """A credit pack bought through Checkout: a receipt line beside the invoices."""
    created: datetime
    pack_code: str
    credits: int
    amount_cents: int
    currency: str
    refunded_cents: int


class Catalog:
    """settings.price_ids read both ways: plan or pack name <-> Stripe price id."""

    def __init__(self, price_ids: dict[str, str]) -> None:
        self.plan_prices = {name: price for name, price in price_ids.items() if not name.startswith(PACK_PREFIX)}
        self.packs = {name: Pack(name, price, _pack_credits(name)) for name, price in price_ids.items()
                      if name.startswith(PACK_PREFIX)}
        self._plan_by_price = {price: name for name, price in self.plan_prices.items()}

    def plan_for_price(self, price_id: str | None) -> str | None:
        return self._plan_by_price.get(price_id or "")

    def price_for_plan(self, plan_code: str) -> str:
        try:
            return self.plan_prices[plan_code]
        except KeyError:
            raise ValidationFailed("No such paid plan", code="unknown_plan",
                                   details={"plan": plan_code, "plans": sorted(self.plan_prices)}) from None

    def pack(self, pack_code: str) -> Pack:
        try:
            return self.packs[pack_code]
        except KeyError:
            raise ValidationFailed("No such credit pack", code="unknown_pack",
                                   details={"pack": pack_code, "packs": sorted(self.packs)}) from None


def _pack_credits(name: str) -> int:
    # Pack names carry their size (pack_500 = 500 credits), so adding a pack is one setting.
    digits = name[len(PACK_PREFIX):]
    if not digits.isdigit() or int(digits) <= 0:
        raise ValueError(f"STRIPE_PRICES pack names must look like pack_<credits>, not {name!r}")
    return int(digits)


# --- reading Stripe objects ----------------------------------------------------------------

def ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None


def ref(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value


def parse_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def subscription_row(sub: dict, catalog: Catalog) -> dict[str, Any]:
    items = (sub.get("items") or {}).get("data") or []
    if not items:
        raise ValueError(f"subscription {sub.get('id')} has no items")
    # A subscription may carry add-on items; the plan is the item whose price is one of ours.
    item = next((i for i in items if catalog.plan_for_price(ref(i.get("price")))), items[0])
    price_id = ref(item.get("price"))
    return {
        "id": sub["id"],
        "customer_id": ref(sub["customer"]),
        "user_id": None,
        "price_id": price_id,
        "plan_code": catalog.plan_for_price(price_id),
        "status": sub["status"],
        # Newer API versions express "cancel at period end" as a cancel_at date as well.
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")) or sub.get("cancel_at") is not None,
        "current_period_start": ts(item.get("current_period_start")),
        "current_period_end": ts(item.get("current_period_end")),
        "canceled_at": ts(sub.get("canceled_at")),
        "ended_at": ts(sub.get("ended_at")),
        "created": ts(sub["created"]),
    }


def invoice_subscription_id(invoice: dict) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return ref(details.get("subscription"))


def invoice_user_hint(invoice: dict) -> uuid.UUID | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return parse_uuid((details.get("metadata") or {}).get("user_id"))


def invoice_row(invoice: dict, user_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "id": invoice["id"],
        "customer_id": ref(invoice["customer"]),
        "subscription_id": invoice_subscription_id(invoice),
        "user_id": user_id,
        "number": invoice.get("number"),
        "status": invoice.get("status") or "draft",
        "billing_reason": invoice.get("billing_reason"),
        "amount_cents": invoice.get("total", invoice.get("amount_due", 0)),
        "currency": invoice.get("currency") or "usd",
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
        "invoice_pdf": invoice.get("invoice_pdf"),
        "created": ts(invoice["created"]),
    }


@dataclass(frozen=True)
class PeriodLine:
    plan_code: str
    start: datetime
    end: datetime


def plan_line(invoice: dict, catalog: Catalog) -> PeriodLine | None:
    """The line that pays for a plan period: its price names the plan, its period the dates.

    A renewal's own `period_start/period_end` describe the period that just ended; the line's
    period is the one being paid for. On a plan change the charge line (positive amount) is the
    new plan; the credit line for unused time on the old plan is skipped.
    """
    best: PeriodLine | None = None
    for line in (invoice.get("lines") or {}).get("data") or []:
        pricing = line.get("pricing") or {}
        price_id = ref((pricing.get("price_details") or {}).get("price"))
        plan = catalog.plan_for_price(price_id)
        period = line.get("period") or {}
        if not plan or line.get("amount", 0) < 0 or "start" not in period or "end" not in period:
            continue
        candidate = PeriodLine(plan, ts(period["start"]), ts(period["end"]))
        if best is None or candidate.end > best.end:
            best = candidate
    return best


# --- effects on our state, used by webhooks and reconciliation ------------------------------

@dataclass
class Changes:
    """What applying Stripe's state changed, in words an operator reads (reconcile prints them)."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def extend(self, other: "Changes") -> None:
        self.lines.extend(other.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)


class BillingState:
    """Applies Stripe objects to our tables and the credit ledger inside the caller's transaction.

    The caller holds the customer's row lock (repo.lock_customer) for the whole transaction.
    """

    def __init__(self, gateway: StripeGateway, catalog: Catalog) -> None:
        self.gateway = gateway
        self.catalog = catalog

    # users ---------------------------------------------------------------------------

    async def resolve_user(self, conn: asyncpg.Connection, customer: asyncpg.Record,
                           hint: uuid.UUID | None = None) -> uuid.UUID | None:
        """The user a customer belongs to: our link, else a hint we put in Stripe metadata ourselves
        (client_reference_id, subscription metadata), else the customer's own metadata."""
        if customer["user_id"] is not None:
            return customer["user_id"]
        if hint is None:
            stripe_customer = await self.gateway.retrieve_customer(customer["stripe_customer_id"])
            hint = parse_uuid((stripe_customer.get("metadata") or {}).get("user_id"))
        if hint is None or not await repo.user_exists(conn, hint):
            return None
        await self.link(conn, customer["stripe_customer_id"], hint)
        return hint

    async def link(self, conn: asyncpg.Connection, customer_id: str, user_id: uuid.UUID) -> Changes:
        """Attach a customer to a user and give the user what arrived before the link was known."""
        changes = Changes()
        await repo.link_customer(conn, customer_id, user_id)
        await repo.set_subscription_user(conn, customer_id, user_id)
        await repo.set_invoice_users(conn, customer_id, user_id)
        changes.extend(await self.refresh_user(conn, user_id))
        for invoice_id in await repo.ungranted_paid_invoices(conn, customer_id, GRANTING_REASONS):
            invoice = await self.gateway.retrieve_invoice(invoice_id)
            changes.extend(await self.grant_invoice(conn, invoice, user_id, only_current=True))
        return changes

    # subscriptions ---------------------------------------------------------------------

    async def sync_subscription(self, conn: asyncpg.Connection, subscription_id: str,
                                user_id: uuid.UUID | None) -> Changes:
        """Store Stripe's current state of a subscription and bring the user's plan in line with it."""
        current = await self.gateway.retrieve_subscription(subscription_id)
        return await self.apply_subscription(conn, current, user_id)

    async def apply_subscription(self, conn: asyncpg.Connection, sub: dict, user_id: uuid.UUID | None) -> Changes:
        changes = Changes()
        row = subscription_row(sub, self.catalog)
        row["user_id"] = user_id
        before = await repo.get_subscription(conn, sub["id"])
        await repo.upsert_subscription(conn, row)
        if before is not None:
            for name in ("plan_code", "status", "cancel_at_period_end", "current_period_end"):
                if before[name] != row[name]:
                    changes.add(f"subscription {sub['id']}: {name} {_fmt(before[name])} -> {_fmt(row[name])}")
        else:
            changes.add(f"subscription {sub['id']}: recorded ({row['status']}, plan {row['plan_code'] or row['price_id']})")
        await self._track_payment_state(conn, sub["id"], row["status"], before)
        owner = user_id or (before["user_id"] if before is not None else None)
        if owner is not None:
            changes.extend(await self.refresh_user(conn, owner))
        return changes

    async def _track_payment_state(self, conn: asyncpg.Connection, subscription_id: str, status: str,
                                   before: asyncpg.Record | None) -> None:
        since = before["past_due_since"] if before is not None else None
        if status == "past_due" and since is None:
            await repo.set_past_due(conn, subscription_id, datetime.now(timezone.utc))
        elif status != "past_due" and since is not None:
            await repo.set_past_due(conn, subscription_id, None)

    async def refresh_user(self, conn: asyncpg.Connection, user_id: uuid.UUID) -> Changes:
        """The user's plan and payment state, derived from their live subscriptions.

        No live subscription means the free plan: a cancelled subscription keeps its plan until
        Stripe ends it at the period end (customer.subscription.deleted), then this runs.
        """
        changes = Changes()
        live = await repo.live_subscriptions(conn, user_id)
        wanted = next((r["plan_code"] for r in live if r["plan_code"]), FREE_PLAN)
        current = (await credits.plan_for(conn, user_id)).code
        if current != wanted:
            await credits.set_plan(conn, user_id, wanted)
            changes.add(f"user {user_id}: plan {current} -> {wanted}")
        overdue = [r["past_due_since"] for r in live if r["past_due_since"] is not None]
        past_due_since = min(overdue) if overdue else None
        summary = await credits.summary(conn, user_id)
        if summary.past_due_since != past_due_since:
            await credits.set_payment_state(conn, user_id, past_due_since)
            changes.add(f"user {user_id}: past due since {_fmt(summary.past_due_since)} -> {_fmt(past_due_since)}")
        return changes

    # invoices ---------------------------------------------------------------------------

    async def mirror_invoice(self, conn: asyncpg.Connection, invoice: dict, user_id: uuid.UUID | None,
                             event_created: datetime) -> Changes:
        changes = Changes()
        before = await repo.get_invoice(conn, invoice["id"])
        row = invoice_row(invoice, user_id)
        if await repo.upsert_invoice(conn, row, event_created):
            if before is None:
                changes.add(f"invoice {invoice['id']}: recorded ({row['status']})")
            elif before["status"] != row["status"]:
                changes.add(f"invoice {invoice['id']}: status {before['status']} -> {row['status']}")
        return changes

    async def grant_invoice(self, conn: asyncpg.Connection, invoice: dict, user_id: uuid.UUID,
                            *, only_current: bool = False) -> Changes:
        """Give the paid period's allowance through the ledger, once per invoice.

        only_current: skip periods that are already over (reconciliation and late links must not
        start a period that has ended).
        """
        changes = Changes()
        if invoice.get("status") != "paid" or invoice.get("billing_reason") not in GRANTING_REASONS:
            return changes
        line = plan_line(invoice, self.catalog)
        if line is None:
            return changes
        if only_current and line.end <= datetime.now(timezone.utc):
            return changes
        existing = await repo.get_invoice(conn, invoice["id"])
        if existing is not None and existing["granted_at"] is not None:
            return changes
        plan = next(p for p in await credits.plans(conn) if p.code == line.plan_code)
        granted = await credits.grant_period(conn, user_id, line.start, line.end, plan.monthly_credits,
                                             f"stripe-invoice:{invoice['id']}")
        # Marked either way: a period older than the current one is never granted later either.
        await repo.mark_invoice_granted(conn, invoice["id"])
        if granted:
            amount = "unlimited" if plan.monthly_credits is None else f"{plan.monthly_credits}"
            changes.add(f"invoice {invoice['id']}: granted {amount} credits ({line.plan_code}) to user {user_id}")
        return changes

    async def settle_invoice_payment(self, conn: asyncpg.Connection, invoice: dict) -> None:
        """A paid subscription invoice ends that subscription's past-due state."""
        subscription_id = invoice_subscription_id(invoice)
        if subscription_id:
            await repo.set_past_due(conn, subscription_id, None)

    async def record_payment_failure(self, conn: asyncpg.Connection, invoice: dict, at: datetime) -> bool:
        """Mark the invoice's subscription past due from `at`, unless the invoice has been paid since."""
        subscription_id = invoice_subscription_id(invoice)
        mirrored = await repo.get_invoice(conn, invoice["id"])
        if not subscription_id or (mirrored is not None and mirrored["status"] == "paid"):
            return False
        row = await repo.get_subscription(conn, subscription_id)
        if row is None:
            return False
        if row["past_due_since"] is None or row["past_due_since"] > at:
            await repo.set_past_due(conn, subscription_id, at)
        return True

    # top-ups ------------------------------------------------------------------------------

    async def credit_top_up(self, conn: asyncpg.Connection, session: dict, user_id: uuid.UUID) -> Changes:
        changes = Changes()
        pack = self.catalog.packs.get((session.get("metadata") or {}).get("pack", ""))
        if pack is None:
            log.warning("paid checkout session without a known pack", extra={"session": session["id"]})
            return changes
        inserted = await repo.insert_top_up(conn, {
            "session_id": session["id"], "user_id": user_id, "customer_id": ref(session.get("customer")),
            "payment_intent_id": ref(session.get("payment_intent")), "pack_code": pack.code, "credits": pack.credits,
            "amount_cents": session.get("amount_total") or 0, "currency": session.get("currency") or "usd",
        })
        if inserted:
            await credits.top_up(conn, user_id, pack.credits, f"stripe-checkout:{session['id']}")
            changes.add(f"checkout {session['id']}: topped up {pack.credits} credits for user {user_id}")
        return changes

    async def claw_back(self, conn: asyncpg.Connection, charge: dict) -> Changes:
        """Take back the credits of a refunded top-up, in proportion to the amount refunded.

        Credits already spent cannot come back: at most the current balance is taken, and the
        shortfall is recorded on the top-up (unrecovered) rather than pushed into a negative balance.
        """
        top_up = await self._top_up_of(conn, charge.get("payment_intent"))
        if top_up is None:
            return Changes()
        # Stripe reports the running total refunded on the charge.
        taken = min(int(charge.get("amount_refunded") or 0), top_up["amount_cents"])
        return await self._take_back(conn, top_up, taken, "refund",
                                     key=f"stripe-refund:{top_up['checkout_session_id']}:{taken}")

    async def claw_back_dispute(self, conn: asyncpg.Connection, dispute: dict) -> Changes:
        """A disputed top-up payment: Stripe withdraws the disputed amount when the dispute opens, so
        its credits go as a refund's would. Winning the dispute later gives nothing back by itself
        (support can adjust); a subscription payment's dispute is for an operator to judge."""
        top_up = await self._top_up_of(conn, dispute.get("payment_intent"))
        if top_up is None:
            return Changes()
        taken = min(top_up["refunded_cents"] + int(dispute.get("amount") or 0), top_up["amount_cents"])
        return await self._take_back(conn, top_up, taken, "dispute", key=f"stripe-dispute:{dispute['id']}")

    async def _top_up_of(self, conn: asyncpg.Connection, payment_intent: Any) -> asyncpg.Record | None:
        top_up = await repo.top_up_for_payment_intent(conn, ref(payment_intent) or "")
        return top_up if top_up is not None and top_up["user_id"] is not None else None

    async def _take_back(self, conn: asyncpg.Connection, top_up: asyncpg.Record, taken: int, what: str, *,
                         key: str) -> Changes:
        """`taken` cents of the pack's price are gone back to the payer (all refunds and disputes
        so far): its share of the pack's credits leaves the account, as far as the balance allows."""
        changes = Changes()
        if taken <= top_up["refunded_cents"]:
            return changes  # an older or repeated event
        owed = math.floor(top_up["credits"] * taken / top_up["amount_cents"]) if top_up["amount_cents"] else top_up["credits"]
        delta = owed - top_up["clawed_back"] - top_up["unrecovered"]
        clawed = 0
        if delta > 0:
            # adjust takes at most what the account holds and returns what it took.
            clawed = -await credits.adjust(conn, top_up["user_id"], -delta,
                                           f"{what} of top-up {top_up['checkout_session_id']}", "stripe", key=key)
            changes.add(f"top-up {top_up['checkout_session_id']}: {what}, clawed back {clawed} credits, "
                        f"{delta - clawed} unrecovered")
        await repo.record_refund(conn, top_up["checkout_session_id"], taken, clawed, max(delta, 0) - clawed)
        return changes


def _fmt(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return "none" if value is None else str(value)


# --- the service the portal uses -------------------------------------------------------------

class BillingService:
    def __init__(self, pool: asyncpg.Pool, gateway: StripeGateway, settings: Settings) -> None:
        self.pool = pool
        self.gateway = gateway
        self.settings = settings
        self.catalog = Catalog(settings.price_ids)
        self.state = BillingState(gateway, self.catalog)
        self._pack_prices: tuple[float, dict[str, PackPrice]] | None = None

    def _url(self, path: str) -> str:
        return self.settings.public_url.rstrip("/") + path

    # checkout and portal -------------------------------------------------------------

    async def checkout_subscription(self, user, plan_code: str) -> str:
        """Where to send the user to start (or change to) a plan: Stripe Checkout for a first
        subscription, the customer portal's confirm-the-change page when one is already running
        (a second Checkout would bill two subscriptions)."""
        price_id = self.catalog.price_for_plan(plan_code)
        latest = await repo.latest_subscription(self.pool, user.id)
        if latest is not None and latest["status"] == "unpaid":
            # Still open at Stripe with a debt: paying it (in the portal) comes before any new plan.
            return await self.customer_portal(user)
        live = await repo.live_subscriptions(self.pool, user.id)
        if live:
            current = live[0]
            if current["plan_code"] == plan_code:
                raise Conflict("You are already on this plan", code="already_subscribed", details={"plan": plan_code})
            return await self._portal_plan_change(current, price_id)
        customer_id = await self.ensure_customer(user)
        session = await self.gateway.create_checkout_session({
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": str(user.id),
            "line_items": [{"price": price_id, "quantity": 1}],
            "subscription_data": {"metadata": {"user_id": str(user.id), "plan": plan_code}},
            "metadata": {"user_id": str(user.id), "plan": plan_code},
            "success_url": self._url("/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}"),
            "cancel_url": self._url("/billing?checkout=cancelled"),
        })
        return session["url"]

    async def _portal_plan_change(self, current: asyncpg.Record, price_id: str) -> str:
        subscription = await self.gateway.retrieve_subscription(current["stripe_subscription_id"])
        items = subscription["items"]["data"]
        item = next((i for i in items if ref(i["price"]) == current["price_id"]), items[0])
        session = await self.gateway.create_portal_session({
            "customer": current["stripe_customer_id"],
            "return_url": self._url("/billing"),
            "flow_data": {
                "type": "subscription_update_confirm",
                "subscription_update_confirm": {
                    "subscription": current["stripe_subscription_id"],
                    "items": [{"id": item["id"], "price": price_id, "quantity": 1}],
                },
                "after_completion": {"type": "redirect", "redirect": {"return_url": self._url("/billing?changed=1")}},
            },
        })
        return session["url"]

    async def checkout_top_up(self, user, pack_code: str) -> str:
        pack = self.catalog.pack(pack_code)
        customer_id = await self.ensure_customer(user)
        metadata = {"user_id": str(user.id), "pack": pack.code, "credits": str(pack.credits)}
        session = await self.gateway.create_checkout_session({
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": str(user.id),
            "line_items": [{"price": pack.price_id, "quantity": 1}],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": self._url("/billing?top_up=success&session_id={CHECKOUT_SESSION_ID}"),
            "cancel_url": self._url("/billing?top_up=cancelled"),
        })
        return session["url"]

    async def customer_portal(self, user) -> str:
        customer_id = await self.ensure_customer(user)
        session = await self.gateway.create_portal_session({"customer": customer_id, "return_url": self._url("/billing")})
        return session["url"]

    async def ensure_customer(self, user) -> str:
        """The user's Stripe customer, created once and reused for every later Checkout."""
        existing = await repo.customer_for_user(self.pool, user.id)
        if existing:
            return existing
        customer = await self.gateway.create_customer(email=user.email, user_id=str(user.id))
        await repo.link_customer(self.pool, customer["id"], user.id)
        return customer["id"]

    async def sync_customer_email(self, user_id: uuid.UUID, email: str) -> bool:
        """After an email change: receipts and invoices go to the new address. False when the
        user never had a Stripe customer (nothing to update)."""
        customer_id = await repo.customer_for_user(self.pool, user_id)
        if customer_id is None:
            return False
        await self.gateway.update_customer_email(customer_id, email)
        return True

    # reading ------------------------------------------------------------------------------

    async def invoices(self, user_id: uuid.UUID) -> list[Invoice]:
        rows = await repo.invoices_for_user(self.pool, user_id)
        return [Invoice(number=r["number"], created=r["stripe_created"], amount_cents=r["amount_cents"],
                        currency=r["currency"], status=r["status"], hosted_invoice_url=r["hosted_invoice_url"],
                        invoice_pdf=r["invoice_pdf"], id=r["stripe_invoice_id"]) for r in rows]

    async def top_ups(self, user_id: uuid.UUID) -> list[TopUp]:
        rows = await repo.top_ups_for_user(self.pool, user_id)
        return [TopUp(created=r["created_at"], pack_code=r["pack_code"], credits=r["credits"], amount_cents=r["amount_cents"],
                      currency=r["currency"], refunded_cents=r["refunded_cents"]) for r in rows]

    async def pack_prices(self) -> dict[str, PackPrice]:
        """Each pack's price as Stripe will charge it (read from Stripe, kept PACK_PRICE_TTL seconds);
        packs whose price cannot be read now are left out, and the page says the price is shown at checkout."""
        now = time.monotonic()
        if self._pack_prices is not None and now - self._pack_prices[0] < PACK_PRICE_TTL:
            return self._pack_prices[1]
        prices: dict[str, PackPrice] = {}
        try:
            async with asyncio.timeout(PACK_PRICE_TIMEOUT):
                for pack in self.catalog.packs.values():
                    price = await self.gateway.retrieve_price(pack.price_id)
                    if price.get("unit_amount") is not None:
                        prices[pack.code] = PackPrice(int(price["unit_amount"]), price.get("currency") or "usd")
        except (ApiError, TimeoutError):
            log.warning("credit pack prices could not be read from Stripe", exc_info=True)
        self._pack_prices = (now, prices)
        return prices

    async def subscription(self, user_id: uuid.UUID) -> Subscription | None:
        """The user's current subscription (a live one first), or None if they never subscribed."""
        row = await repo.latest_subscription(self.pool, user_id)
        if row is None or row["status"] in CLOSED_STATUSES:
            return None
        return Subscription(plan=row["plan_code"], status=row["status"], current_period_end=row["current_period_end"],
                            cancel_at_period_end=row["cancel_at_period_end"], past_due_since=row["past_due_since"],
                            id=row["stripe_subscription_id"])

    # account deletion -----------------------------------------------------------------------

    async def cancel_for_deleted_account(self, user_id: uuid.UUID) -> None:
        """Stop billing a deleted account now: every live subscription is cancelled at Stripe
        immediately (no further invoices) and recorded here, and the plan drops to free."""
        for row in await repo.live_subscriptions(self.pool, user_id):
            cancelled = await self.gateway.cancel_subscription(row["stripe_subscription_id"])
            async with self.pool.acquire() as conn, conn.transaction():
                customer = await repo.lock_customer(conn, row["stripe_customer_id"])
                await self.state.apply_subscription(conn, cancelled, customer["user_id"] or user_id)

    # reconciliation ---------------------------------------------------------------------------

    async def reconcile(self, *, dry_run: bool = False, invoice_days: int = 90) -> list[str]:
        """Re-read subscriptions and recent invoices from Stripe and repair whatever drifted
        (missed or failed webhooks). Returns one line per change; dry_run rolls every change back."""
        report: list[str] = []
        async for sub in self.gateway.all_subscriptions():
            report += await self._in_customer_transaction(ref(sub["customer"]), dry_run,
                                                          lambda conn, user: self.state.apply_subscription(conn, sub, user),
                                                          parse_uuid((sub.get("metadata") or {}).get("user_id")))
        since = int(datetime.now(timezone.utc).timestamp()) - invoice_days * 86400
        async for invoice in self.gateway.all_invoices(created={"gte": since}):
            report += await self._in_customer_transaction(ref(invoice["customer"]), dry_run,
                                                          lambda conn, user: self._reconcile_invoice(conn, invoice, user),
                                                          invoice_user_hint(invoice))
        return report

    async def _reconcile_invoice(self, conn: asyncpg.Connection, invoice: dict, user_id: uuid.UUID | None) -> Changes:
        changes = await self.state.mirror_invoice(conn, invoice, user_id, datetime.now(timezone.utc))
        if user_id is not None:
            changes.extend(await self.state.grant_invoice(conn, invoice, user_id, only_current=True))
        return changes

    async def _in_customer_transaction(self, customer_id: str, dry_run: bool, apply, hint: uuid.UUID | None) -> list[str]:
        async with self.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                customer = await repo.lock_customer(conn, customer_id)
                user_id = await self.state.resolve_user(conn, customer, hint)
                changes = await apply(conn, user_id)
            except BaseException:
                await tx.rollback()
                raise
            if dry_run:
                await tx.rollback()
            else:
                await tx.commit()
        return changes.lines

