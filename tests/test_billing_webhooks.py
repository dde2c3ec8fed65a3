"""Stripe webhooks: verified on the raw body, applied once, per customer, in any order.

The real stripe SDK talks to a local fake Stripe (server/simulator/stripe.py); events are the
fake's snapshots, signed with stripe.WebhookSignature.generate_signature_header and POSTed to
/webhooks/stripe on the app under test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import pytest

from fakes.stripe_fake import checkout_and_pay, fake_stripe, make_event, session_id_of  # noqa: F401 (fixture)
from server.auth.service import CurrentUser
from server.credits import service as credits
from server.credits.models import PaymentPastDue
from billing_support import billing, fake, new_user, settings  # noqa: F401 (fixtures)
from helpers import sign_up, unique_email


async def subscribe(client, fake, user, plan="pro", *, days_ago=0) -> dict:
    return await checkout_and_pay(billing(client), fake, user, plan, days_ago=days_ago)


async def spend(db, user_id, amount):
    hold = await credits.reserve(db, user_id, amount, f"test-spend-{uuid.uuid4()}")
    await credits.capture(db, hold.id, amount)


async def grants(db, user_id):
    return await db.fetch(
        "SELECT idempotency_key, amount FROM credit_ledger WHERE user_id = $1 AND kind = 'grant' "
        "AND idempotency_key LIKE 'stripe-invoice:%' ORDER BY id", user_id)


async def deliver_ok(fake, event):
    delivery = await fake.deliver(event)
    assert delivery.status == 200, delivery.body
    return json.loads(delivery.body)["outcome"]


# --- subscribing ------------------------------------------------------------------------------

async def test_subscribing_through_checkout_makes_the_user_pro_with_2000_credits(client, fake, db, settings):
    fake.auto_deliver = False
    user = await new_user(db, settings)
    url = await billing(client).checkout_subscription(user, "pro")
    session = fake.get("checkout.session", session_id_of(url))
    assert url == f"{fake.base_url}/checkout/{session['id']}"
    assert session["mode"] == "subscription"
    assert session["client_reference_id"] == str(user.id)
    assert session["customer"], "a customer is created up front so every later Checkout reuses it"

    await fake.complete_checkout(session["id"])
    # Only the two events the flow depends on, and in the order Stripe does not promise.
    assert await deliver_ok(fake, fake.take("invoice.paid")) == "processed"
    assert await deliver_ok(fake, fake.take("checkout.session.completed")) == "processed"

    summary = await credits.summary(db, user.id)
    assert summary.plan.code == "pro"
    assert summary.allowance == 2000
    assert summary.remaining == 2000
    subscription = await billing(client).subscription(user.id)
    assert subscription.plan == "pro" and subscription.status == "active"
    assert not subscription.cancel_at_period_end
    item = fake.get("subscription", session["subscription"])["items"]["data"][0]
    assert int(subscription.current_period_end.timestamp()) == item["current_period_end"]
    assert summary.period_end == subscription.current_period_end


async def test_a_second_checkout_reuses_the_stripe_customer(client, fake, db, settings):
    user = await new_user(db, settings)
    first = fake.get("checkout.session", session_id_of(await billing(client).checkout_subscription(user, "basic")))
    second = fake.get("checkout.session", session_id_of(await billing(client).checkout_top_up(user, "pack_500")))
    assert first["customer"] == second["customer"]
    assert len(fake.store("customer")) == 1
    assert fake.get("customer", first["customer"])["metadata"] == {"user_id": str(user.id)}


async def test_the_panel_sees_the_new_plan_after_paying_on_the_hosted_checkout_page(client, fake, db, settings):
    panel = await sign_up(client, email=unique_email("panel"))
    headers = panel.headers
    user = CurrentUser(id=panel.user_id, email=panel.email, role="user", status="active", session_id=None)
    url = await billing(client).checkout_subscription(user, "pro")

    async with client.session.get(url) as page:  # what the browser shows
        assert page.status == 200
        assert "$19.99" in await page.text()
    async with client.session.post(url + "/pay", allow_redirects=False) as paid:
        assert paid.status == 303
        assert paid.headers["Location"].startswith(settings.public_url + "/billing?checkout=success&session_id=cs_test_")

    me = await (await client.get("/v1/me", headers=headers)).json()
    assert me["plan"]["code"] == "pro"
    assert me["credits"]["remaining"] == 2000
    assert all(d.status == 200 for d in fake.deliveries)


# --- renewals ---------------------------------------------------------------------------------

async def test_a_renewal_grants_the_new_period_once_even_when_invoice_paid_arrives_three_times(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await subscribe(client, fake, user, "pro", days_ago=29)
    await spend(db, user.id, 150)
    assert (await credits.summary(db, user.id)).remaining == 1850

    fake.auto_deliver = False
    await fake.renew(subscription["id"])
    paid = fake.take("invoice.paid")
    await fake.deliver_pending()
    outcomes = [await deliver_ok(fake, paid) for _ in range(3)]
    assert outcomes == ["processed", "duplicate", "duplicate"]
    # Stripe may also send a new event (new id) about the same invoice: still one grant.
    again = make_event("invoice.paid", paid["data"]["object"])
    assert await deliver_ok(fake, again) == "processed"

    summary = await credits.summary(db, user.id)
    assert summary.remaining == 2000, "the unspent 1850 of the old period expired; the new period has 2000"
    invoice_id = paid["data"]["object"]["id"]
    assert [r["idempotency_key"] for r in await grants(db, user.id)][-1] == f"stripe-invoice:{invoice_id}"
    assert len(await grants(db, user.id)) == 2  # the first period and this renewal
    line = paid["data"]["object"]["lines"]["data"][0]
    assert int(summary.period_start.timestamp()) == line["period"]["start"]
    assert int(summary.period_end.timestamp()) == line["period"]["end"]


async def test_the_same_event_delivered_concurrently_is_applied_once(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await subscribe(client, fake, user, "basic", days_ago=29)
    fake.auto_deliver = False
    await fake.renew(subscription["id"])
    paid = fake.take("invoice.paid")
    others = list(fake.pending)
    fake.pending.clear()
    # The same invoice.paid three times at once, racing the renewal's other events for the same customer.
    results = await asyncio.gather(*(fake.deliver(e) for e in [paid, paid, paid, *others]))
    assert all(r.status == 200 for r in results), [r.body for r in results]
    outcomes = sorted(json.loads(r.body)["outcome"] for r in results[:3])
    assert outcomes == ["duplicate", "duplicate", "processed"]
    assert len(await grants(db, user.id)) == 2
    assert (await credits.summary(db, user.id)).remaining == 500


async def test_events_for_a_customer_not_yet_linked_are_applied_once_checkout_names_the_user(client, fake, db, settings):
    user = await new_user(db, settings)
    fake.auto_deliver = False
    # A Checkout Session made outside our service: Stripe's own customer, no metadata of ours.
    customer = fake.create_customer({"email": user.email})
    session = fake.create_checkout_session({
        "mode": "subscription", "customer": customer["id"], "client_reference_id": str(user.id),
        "line_items": [{"price": settings.price_ids["pro"], "quantity": "1"}],
        "success_url": "http://example.test/ok", "cancel_url": "http://example.test/no",
    })
    await fake.complete_checkout(session["id"])
    completed = fake.take("checkout.session.completed")
    early = [json.loads(d.body)["outcome"] for d in await fake.deliver_pending()]
    assert early == ["unlinked", "processed", "unlinked"]  # subscription.created, invoice.finalized, invoice.paid
    assert (await credits.summary(db, user.id)).plan.code == "free"

    assert await deliver_ok(fake, completed) == "processed"
    summary = await credits.summary(db, user.id)
    assert summary.plan.code == "pro" and summary.remaining == 2000
    assert [i.status for i in await billing(client).invoices(user.id)] == ["paid"]


# --- ordering ---------------------------------------------------------------------------------

async def test_subscription_updated_delivered_before_created_ends_in_the_right_state(client, fake, db, settings):
    fake.auto_deliver = False
    user = await new_user(db, settings)
    url = await billing(client).checkout_subscription(user, "pro")
    await fake.complete_checkout(session_id_of(url))
    created = fake.take("customer.subscription.created")
    sub_id = created["data"]["object"]["id"]
    await fake.set_cancel_at_period_end(sub_id, True)
    updated = fake.take("customer.subscription.updated")

    assert await deliver_ok(fake, updated) == "processed"
    assert await deliver_ok(fake, created) == "processed"  # older snapshot: cancel_at_period_end false
    await fake.deliver_pending()

    subscription = await billing(client).subscription(user.id)
    assert subscription.plan == "pro"
    assert subscription.status == "active"
    assert subscription.cancel_at_period_end is True
    assert (await credits.summary(db, user.id)).plan.code == "pro"


async def test_an_old_invoice_event_never_rolls_the_invoice_mirror_back(client, fake, db, settings):
    fake.auto_deliver = False
    user = await new_user(db, settings)
    url = await billing(client).checkout_subscription(user, "pro")
    await fake.complete_checkout(session_id_of(url))
    finalized = fake.take("invoice.finalized")
    await fake.deliver_pending()  # invoice.paid first
    assert await deliver_ok(fake, finalized) == "processed"

    [invoice] = await billing(client).invoices(user.id)
    assert invoice.status == "paid"
    assert invoice.amount_cents == 1999 and invoice.currency == "usd"
    assert invoice.number.startswith("FAKE-")
    assert invoice.hosted_invoice_url.startswith(fake.base_url + "/invoice/")
    assert invoice.invoice_pdf.endswith("/pdf")


# --- signatures ---------------------------------------------------------------------------------

async def state_snapshot(db):
    return {
        "events": await db.fetchval("SELECT count(*) FROM stripe_events"),
        "subscriptions": await db.fetchval("SELECT count(*) FROM billing_subscriptions"),
        "invoices": await db.fetchval("SELECT count(*) FROM billing_invoices"),
        "ledger": await db.fetchval("SELECT count(*) FROM credit_ledger WHERE idempotency_key LIKE 'stripe-%'"),
        "plans": [r["plan_code"] for r in await db.fetch("SELECT plan_code FROM credit_accounts ORDER BY user_id")],
    }


async def test_a_bad_signature_or_a_stale_timestamp_gets_400_and_changes_nothing(client, fake, db, settings):
    fake.auto_deliver = False
    user = await new_user(db, settings)
    url = await billing(client).checkout_subscription(user, "pro")
    await fake.complete_checkout(session_id_of(url))
    paid = fake.take("invoice.paid")
    payload = json.dumps(paid)
    before = await state_snapshot(db)

    attempts = {
        "invalid_signature": [
            dict(secret="whsec_not_the_right_secret_at_all"),
            dict(signature=fake.sign(payload.replace("pro", "enterprise"))),  # signed another body
            dict(signature="t=123,v0=abc"),
            dict(signature=""),
        ],
        "signature_expired": [dict(timestamp=int(time.time()) - 301)],  # correctly signed, but replayed
    }
    for code, variants in attempts.items():
        for kwargs in variants:
            delivery = await fake.deliver(paid, **kwargs)
            assert delivery.status == 400, (kwargs, delivery.body)
            body = json.loads(delivery.body)
            assert body["error"]["code"] == code
            assert settings.stripe_webhook_secret not in delivery.body
    assert await state_snapshot(db) == before

    # The same event, correctly signed, is applied: only the signature was wrong.
    assert await deliver_ok(fake, paid) == "processed"
    assert (await state_snapshot(db))["events"] == before["events"] + 1


async def test_a_signed_body_that_is_not_an_event_gets_400(client, fake):
    for body in ("not json", json.dumps(["a", "list"])):
        resp = await client.post("/webhooks/stripe", data=body.encode(),
                                 headers={"Stripe-Signature": fake.sign(body), "Content-Type": "application/json"})
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_payload"


async def test_unknown_events_get_200_are_ignored_and_counted(client, fake, db):
    event = make_event("customer.created", {"id": "cus_x", "object": "customer", "customer": None})
    assert await deliver_ok(fake, event) == "ignored"
    assert await deliver_ok(fake, event) == "duplicate"
    metrics = await (await client.get("/metrics")).text()
    assert 'webhooks_total{outcome="ignored",type="customer.created"} 1.0' in metrics
    assert 'webhooks_total{outcome="duplicate",type="customer.created"} 1.0' in metrics
    await fake.deliver(event, secret="whsec_wrong_wrong_wrong")
    metrics = await (await client.get("/metrics")).text()
    assert 'webhooks_total{outcome="invalid_signature",type="unverified"} 1.0' in metrics


# --- payment failures -------------------------------------------------------------------------

async def test_a_failed_renewal_keeps_generation_going_through_the_grace_period_then_402(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await subscribe(client, fake, user, "pro", days_ago=29)
    await fake.fail_renewal(subscription["id"])

    status = await billing(client).subscription(user.id)
    assert status.status == "past_due" and status.plan == "pro"
    assert status.past_due_since is not None
    summary = await credits.summary(db, user.id)
    assert summary.past_due_since is not None
    assert summary.remaining == 2000, "a failed payment does not wipe the credits"

    # Within the grace period generation goes on.
    hold = await credits.reserve(db, user.id, 3, "during-grace", settings=settings)
    await credits.capture(db, hold.id, 3)

    # Past the grace period it stops with a clear code.
    await db.execute("UPDATE credit_accounts SET past_due_since = now() - $2::interval WHERE user_id = $1",
                     user.id, timedelta(days=settings.payment_grace_days, hours=1))
    with pytest.raises(PaymentPastDue) as err:
        await credits.reserve(db, user.id, 3, "after-grace", settings=settings)
    assert err.value.status == 402 and err.value.code == "payment_past_due"

    # The retry succeeds: past due is cleared, the period is granted, generation works again.
    invoice_id = fake.get("subscription", subscription["id"])["latest_invoice"]
    await fake.pay_invoice(invoice_id)
    assert (await credits.summary(db, user.id)).past_due_since is None
    assert (await billing(client).subscription(user.id)).past_due_since is None
    assert (await credits.reserve(db, user.id, 3, "after-paying", settings=settings)).amount == 3
    assert (await credits.summary(db, user.id)).allowance == 2000


async def test_a_late_payment_failed_event_for_a_paid_invoice_changes_nothing(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await subscribe(client, fake, user, "basic", days_ago=29)
    fake.auto_deliver = False
    await fake.fail_renewal(subscription["id"])
    failed = fake.take("invoice.payment_failed")
    await fake.deliver_pending()
    invoice_id = failed["data"]["object"]["id"]
    await fake.pay_invoice(invoice_id)
    await fake.deliver_pending()
    assert await deliver_ok(fake, failed) == "processed"
    assert (await credits.summary(db, user.id)).past_due_since is None
    assert (await billing(client).subscription(user.id)).status == "active"


# --- cancellation -------------------------------------------------------------------------------

async def test_cancelling_keeps_the_plan_to_the_period_end_then_drops_to_free(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await subscribe(client, fake, user, "pro")
    portal_url = await billing(client).customer_portal(user)
    assert portal_url.startswith(fake.base_url + "/portal/")
    async with client.session.post(portal_url + "/cancel", data={"subscription": subscription["id"]},
                                   allow_redirects=False) as resp:
        assert resp.status == 303

    status = await billing(client).subscription(user.id)
    assert status.cancel_at_period_end is True and status.plan == "pro"
    assert (await credits.summary(db, user.id)).plan.code == "pro"
    assert (await credits.summary(db, user.id)).remaining == 2000

    await fake.end_subscription(subscription["id"])  # Stripe ends it when the period runs out
    assert (await credits.summary(db, user.id)).plan.code == "free"
    assert await billing(client).subscription(user.id) is None


async def test_deleting_an_account_cancels_its_subscription_at_stripe_now(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await subscribe(client, fake, user, "basic")
    await billing(client).cancel_for_deleted_account(user.id)
    assert fake.get("subscription", subscription["id"])["status"] == "canceled"
    assert await billing(client).subscription(user.id) is None
    assert (await credits.plan_for(db, user.id)).code == "free"
    await billing(client).cancel_for_deleted_account(user.id)  # nothing left to cancel: no error
