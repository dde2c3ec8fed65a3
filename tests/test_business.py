"""The admin business figures, checked against a fixture whose every number is worked out by
hand below: subscriptions that start, renew and end around March 2026, credit packs (one partly
refunded), generations on each plan and on two providers. Only admins see the page and the CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime, timezone

import pytest

from helpers import DEFAULT_PASSWORD, unique_email
from server.auth.service import create_user
from server.business import service as business
from test_portal_support import admin, browser_factory, customer, visitor  # noqa: F401 (fixtures)

PRICES = {"elevenlabs": 0.30, "openai": 0.002, "anthropic": 0.003}  # dollars per 1,000 units
MARCH = date(2026, 3, 1)
AS_OF = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)


async def subscription(db, user_id, sub_id, plan, created, *, status="active", canceled_at=None, ended_at=None):
    customer_id = f"cus_{sub_id}"
    await db.execute("INSERT INTO billing_customers (stripe_customer_id, user_id) VALUES ($1, $2)", customer_id, user_id)
    await db.execute(
        """INSERT INTO billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, price_id, plan_code,
                                              status, canceled_at, ended_at, stripe_created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        sub_id, customer_id, user_id, f"price_{plan}", plan, status, canceled_at, ended_at, at(created),
    )


async def invoice(db, sub_id, cents, day, status="paid"):
    await db.execute(
        """INSERT INTO billing_invoices (stripe_invoice_id, stripe_customer_id, stripe_subscription_id, status,
                                         amount_cents, currency, stripe_created, event_created)
           VALUES ($1, $2, $3, $4, $5, 'usd', $6, $6)""",
        f"in_{uuid.uuid4().hex[:10]}", f"cus_{sub_id}", sub_id, status, cents, at(day),
    )


async def pack(db, user_id, cents, day, refunded=0):
    await db.execute(
        """INSERT INTO billing_top_ups (checkout_session_id, user_id, pack_code, credits, amount_cents, currency,
                                        refunded_cents, created_at)
           VALUES ($1, $2, 'pack_500', 500, $3, 'usd', $4, $5)""",
        f"cs_{uuid.uuid4().hex[:10]}", user_id, cents, refunded, at(day),
    )


async def generation(db, user_id, day, credits, units, *, status="succeeded", key_id=None):
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, request_hash, credits_charged, upstream_cost,
                                    upstream_key_id, created_at)
           VALUES ($1, 'sfx', $2, '{}'::jsonb, 'h', $3, $4, $5, $6)""",
        user_id, status, credits, units, key_id, at(day),
    )


@pytest.fixture
async def march(db, settings):
    """The fixture. Users u1..u7; u7 never subscribed."""
    u = {}
    for n in range(1, 8):
        u[n] = await create_user(db, settings, unique_email(f"biz{n}"), DEFAULT_PASSWORD)

    # S1 basic, running since January. S2 pro since February. S3 pro, ended 10 March.
    # S4 basic, new on 5 March. S5 enterprise, ended in February (no part of March).
    # S6 never completed (ignored). S7 basic, started 15 March and canceled on the 18th
    # without Stripe's ended_at (the cancellation time counts).
    await subscription(db, u[1], "sub_1", "basic", "2026-01-10")
    await subscription(db, u[2], "sub_2", "pro", "2026-02-05")
    await subscription(db, u[3], "sub_3", "pro", "2026-02-20", status="canceled",
                       canceled_at=at("2026-03-01T09:00"), ended_at=at("2026-03-10"))
    await subscription(db, u[4], "sub_4", "basic", "2026-03-05")
    await subscription(db, u[5], "sub_5", "enterprise", "2026-01-01", status="canceled",
                       canceled_at=at("2026-02-15"), ended_at=at("2026-02-15"))
    await subscription(db, u[6], "sub_6", "pro", "2026-03-12", status="incomplete")
    await subscription(db, u[6], "sub_7", "basic", "2026-03-15", status="canceled", canceled_at=at("2026-03-18"))

    # Paid invoices: February 999 (S1) + 1999 (S2) + 1999 (S3); March 999 (S1) + 1999 (S2) + 999 (S4).
    # An open March invoice is not revenue.
    await invoice(db, "sub_1", 999, "2026-02-10")
    await invoice(db, "sub_2", 1999, "2026-02-05")
    await invoice(db, "sub_3", 1999, "2026-02-20")
    await invoice(db, "sub_1", 999, "2026-03-10")
    await invoice(db, "sub_2", 1999, "2026-03-05")
    await invoice(db, "sub_4", 999, "2026-03-05")
    await invoice(db, "sub_2", 500, "2026-03-19", status="open")

    # Packs in March: u2 (pro) 1500; u1 (basic) 1500 less a 500 refund; u7 (free) 1500.
    await pack(db, u[2], 1500, "2026-03-08")
    await pack(db, u[1], 1500, "2026-03-12", refunded=500)
    await pack(db, u[7], 1500, "2026-03-15")

    openai_key = await db.fetchval(
        """INSERT INTO provider_keys (provider, label, ciphertext, nonce, key_version, last4, max_concurrency)
           VALUES ('openai', 'llm', '\\x00', '\\x000000000000000000000000', '1', 'wxyz', 1) RETURNING id""")
    # March generations (ElevenLabs unless a key says otherwise; $0.30 per 1,000 = 0.03 cents a unit):
    await generation(db, u[1], "2026-03-03", 100, 20_000)                  # basic: 600 cents
    await generation(db, u[1], "2026-03-04", 20, 500_000, key_id=openai_key)  # basic, openai $0.002/1k: 100 cents
    await generation(db, u[2], "2026-03-06", 400, 100_000)                 # pro: 3000 cents
    await generation(db, u[2], "2026-03-07", 0, 5_000, status="failed")    # pro: 150 cents, the provider billed it
    await generation(db, u[3], "2026-03-05", 50, 10_000)                   # pro (S3 running): 300 cents
    await generation(db, u[3], "2026-03-15", 5, 1_000)                     # free (S3 ended): 30 cents
    await generation(db, u[7], "2026-03-16", 10, 2_000)                    # free: 60 cents
    await generation(db, u[7], "2026-02-28T23:59:59", 7, 1_000)            # February
    await generation(db, u[7], "2026-04-01T00:00:00", 9, 1_000)            # April: outside every figure here
    return u


async def test_mrr_subscriptions_and_churn_match_the_hand_computed_fixture(db, march):
    report = await business.report(db, MARCH, PRICES, now=AS_OF)
    # Running on 20 March: S1 basic 999, S2 pro 1999, S4 basic 999.
    assert report.mrr_cents == 999 + 1999 + 999
    assert {p.plan: (p.subscriptions, p.mrr_cents) for p in report.plans if p.subscriptions} == {
        "basic": (2, 1998), "pro": (1, 1999)}
    # Running on 1 March: S1, S2, S3. New in March: S4, S7. Ended in March: S3, S7.
    assert (report.at_start, report.new, report.cancelled) == (3, 2, 2)
    assert report.churn == pytest.approx(2 / 3)


async def test_revenue_cost_and_margin_per_plan_match_the_hand_computed_fixture(db, march):
    report = await business.report(db, MARCH, PRICES, now=AS_OF)
    got = {c.plan: (c.subscription_cents, c.pack_cents, c.credits_used, c.total_units, c.cost_cents, c.margin_cents)
           for c in report.by_plan}
    assert got == {
        # 999 + 999 subscriptions, 1000 pack; 600 + 100 cost; margin 2998 - 700
        "basic": (1998, 1000, 120, 520_000, 700, 2298),
        # 1999 subscription, 1500 pack; (100,000 + 5,000 + 10,000) x 0.03 = 3450; margin 3499 - 3450
        "pro": (1999, 1500, 450, 115_000, 3450, 49),
        # 1500 pack; 3,000 x 0.03 = 90; margin 1410
        "free": (0, 1500, 15, 3_000, 90, 1410),
    }
    assert report.pack_revenue_cents == 4000
    march_total, feb_total = report.history[-1], report.history[-2]
    assert (march_total.revenue_cents, march_total.cost_cents, march_total.margin_cents) == (7997, 4240, 3757)
    # February: 999 + 1999 + 1999 of invoices; one generation of 1,000 units = 30 cents.
    assert (feb_total.month, feb_total.revenue_cents, feb_total.cost_cents, feb_total.credits_used) == (
        date(2026, 2, 1), 4997, 30, 7)
    assert [m.month for m in report.history] == [date(2025, 10, 1), date(2025, 11, 1), date(2025, 12, 1),
                                                 date(2026, 1, 1), date(2026, 2, 1), MARCH]


async def test_the_csv_has_a_row_per_month_and_plan_and_the_month_totals(db, march):
    report = await business.report(db, MARCH, PRICES, now=AS_OF)
    rows = list(csv.DictReader(io.StringIO(business.to_csv(report))))
    assert list(rows[0]) == list(business.CSV_COLUMNS)
    by = {(r["month"], r["plan"]): r for r in rows}
    assert by[("2026-03", "pro")] == {
        "month": "2026-03", "plan": "pro", "subscription_revenue_cents": "1999", "pack_revenue_cents": "1500",
        "revenue_cents": "3499", "credits_used": "450", "upstream_units": "115000", "upstream_cost_cents": "3450",
        "gross_margin_cents": "49"}
    assert by[("2026-03", "all")]["gross_margin_cents"] == "3757"
    assert by[("2026-02", "all")]["revenue_cents"] == "4997"
    assert by[("2026-01", "all")]["revenue_cents"] == "0"
    assert ("2026-04", "all") not in by


async def test_the_admin_page_and_csv_show_the_figures_and_refuse_everyone_else(db, march, admin, customer, visitor):
    admin_portal, _ = admin
    text = await admin_portal.page("/admin/business?month=2026-03")
    assert 'data-testid="mrr">$39.97<' in text
    assert 'data-testid="churn">66.7%<' in text
    assert 'data-testid="margin-pro">$0.49' in text
    assert 'data-testid="margin">$37.57<' in text
    assert "<svg" in text
    resp = await admin_portal.post("/admin/business/export", {"month": "2026-03"})
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="business-2026-03.csv"'
    assert "2026-03,pro,1999,1500,3499,450,115000,3450,49" in await resp.text()
    for portal, _ in (customer, (visitor, None)):
        resp = await portal.get("/admin/business?month=2026-03")
        assert resp.status == 403
        assert "3499" not in await resp.text()
        resp = await portal.post("/admin/business/export", {"month": "2026-03"})
        assert resp.status == 403
        assert "3499" not in await resp.text()


def test_months_are_parsed_and_never_run_past_the_current_one():
    today = date(2026, 11, 29)
    assert business.parse_month("2026-03", today) == date(2026, 3, 1)
    assert business.parse_month("2027-01", today) == date(2026, 11, 1)
    assert business.parse_month("garbage", today) == date(2026, 11, 1)
    assert business.parse_month("2026-13", today) == date(2026, 11, 1)
    assert business.add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)
