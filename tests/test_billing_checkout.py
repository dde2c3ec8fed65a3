"""What the portal calls: Checkout for plans and credit packs, plan changes through Stripe's portal,
top-ups and their refunds, and Stripe's secrets kept out of every response and log line."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from fakes.stripe_fake import checkout_and_pay, fake_stripe, make_event, session_id_of  # noqa: F401 (fixture)
from billing_support import billing, fake, new_user, settings  # noqa: F401 (fixtures)
from server.credits import service as credits
from server.web.errors import ApiError


async def spend(db, user_id, amount):
    hold = await credits.reserve(db, user_id, amount, f"test-spend-{uuid.uuid4()}")
    await credits.capture(db, hold.id, amount)


async def buy_pack(client, fake, user, pack="pack_500") -> dict:
    url = await billing(client).checkout_top_up(user, pack)
    await fake.complete_checkout(session_id_of(url))
    return fake.get("checkout.session", session_id_of(url))


async def consistent(db, user_id) -> bool:
    return await db.fetchval("SELECT consistent FROM credit_consistency WHERE user_id = $1", user_id)


# --- plans --------------------------------------------------------------------------------------

async def test_unknown_plans_and_packs_are_refused_before_calling_stripe(client, fake, db, settings):
    user = await new_user(db, settings)
    with pytest.raises(ApiError) as plan_err:
        await billing(client).checkout_subscription(user, "platinum")
    assert plan_err.value.status == 422 and plan_err.value.code == "unknown_plan"
    with pytest.raises(ApiError) as free_err:
        await billing(client).checkout_subscription(user, "free")
    assert free_err.value.code == "unknown_plan"
    with pytest.raises(ApiError) as pack_err:
        await billing(client).checkout_top_up(user, "pack_9000")
    assert pack_err.value.code == "unknown_pack"
    assert fake.requests == []


async def test_subscribing_again_to_the_same_plan_is_a_conflict(client, fake, db, settings):
    user = await new_user(db, settings)
    await checkout_and_pay(billing(client), fake, user, "basic")
    with pytest.raises(ApiError) as err:
        await billing(client).checkout_subscription(user, "basic")
    assert err.value.status == 409 and err.value.code == "already_subscribed"


async def test_upgrading_goes_through_the_portal_and_grants_the_bigger_allowance_when_paid(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await checkout_and_pay(billing(client), fake, user, "basic")
    assert (await credits.summary(db, user.id)).allowance == 500

    url = await billing(client).checkout_subscription(user, "pro")
    portal = fake.get("billing_portal.session", session_id_of(url))
    assert url == f"{fake.base_url}/portal/{portal['id']}", "no second subscription through Checkout"
    assert portal["flow"]["type"] == "subscription_update_confirm"
    assert portal["flow"]["subscription_update_confirm"]["items"][0]["price"] == settings.price_ids["pro"]
    assert len(fake.store("checkout.session")) == 1

    async with client.session.post(f"{url}/switch", data={"subscription": subscription["id"],
                                                          "price": settings.price_ids["pro"]},
                                   allow_redirects=False) as resp:
        assert resp.status == 303
    summary = await credits.summary(db, user.id)
    assert summary.plan.code == "pro"
    assert summary.allowance == 2000
    assert (await billing(client).subscription(user.id)).plan == "pro"
    assert [i.amount_cents for i in await billing(client).invoices(user.id)] == [1000, 999]


async def test_a_downgrade_takes_effect_as_stripe_reports_it(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await checkout_and_pay(billing(client), fake, user, "pro")
    await fake.change_price(subscription["id"], settings.price_ids["basic"])
    assert (await credits.summary(db, user.id)).plan.code == "basic"
    assert (await billing(client).subscription(user.id)).plan == "basic"


async def test_an_unpaid_subscription_drops_to_free_and_sends_the_user_to_pay_not_to_a_new_checkout(client, fake, db, settings):
    user = await new_user(db, settings)
    subscription = await checkout_and_pay(billing(client), fake, user, "pro")
    subscription["status"] = "unpaid"  # Stripe gave up retrying the renewal
    await fake.emit([fake.event("customer.subscription.updated", subscription, previous_attributes={"status": "past_due"})])

    assert (await credits.plan_for(db, user.id)).code == "free"
    assert (await billing(client).subscription(user.id)).status == "unpaid"
    url = await billing(client).checkout_subscription(user, "pro")
    assert url.startswith(fake.base_url + "/portal/")
    assert len(fake.store("checkout.session")) == 1


async def test_invoices_list_the_users_own_invoices_newest_first(client, fake, db, settings):
    user = await new_user(db, settings)
    other = await new_user(db, settings)
    subscription = await checkout_and_pay(billing(client), fake, user, "pro", days_ago=29)
    await checkout_and_pay(billing(client), fake, other, "basic")
    await fake.renew(subscription["id"])

    invoices = await billing(client).invoices(user.id)
    assert [i.status for i in invoices] == ["paid", "paid"]
    assert invoices[0].created >= invoices[1].created
    assert invoices[0].number != invoices[1].number
    assert {i.amount_cents for i in invoices} == {1999}
    assert await billing(client).invoices(uuid.uuid4()) == []


# --- top-ups -----------------------------------------------------------------------------------------

async def test_a_credit_pack_is_added_once_however_often_checkout_completed_arrives(client, fake, db, settings):
    user = await new_user(db, settings)
    assert (await credits.summary(db, user.id)).remaining == 20  # the free month
    fake.auto_deliver = False
    url = await billing(client).checkout_top_up(user, "pack_500")
    session = fake.get("checkout.session", session_id_of(url))
    assert session["mode"] == "payment" and session["amount_total"] == 500
    assert session["client_reference_id"] == str(user.id)
    await fake.complete_checkout(session["id"])
    completed = fake.take("checkout.session.completed")
    for _ in range(2):
        await fake.deliver(completed)
    await fake.deliver(make_event("checkout.session.completed", completed["data"]["object"]))  # a new event id

    summary = await credits.summary(db, user.id)
    assert summary.remaining == 520 and summary.topup == 500
    assert await consistent(db, user.id)


async def test_refunding_an_unspent_pack_claws_all_its_credits_back(client, fake, db, settings):
    user = await new_user(db, settings)
    session = await buy_pack(client, fake, user)
    assert (await credits.summary(db, user.id)).remaining == 520

    await fake.refund(session["payment_intent"])
    assert (await credits.summary(db, user.id)).remaining == 20
    entry = await db.fetchrow("SELECT amount, reason, actor FROM credit_ledger WHERE user_id = $1 AND kind = 'adjust'", user.id)
    assert entry["amount"] == -500 and entry["actor"] == "stripe" and session["id"] in entry["reason"]
    assert await consistent(db, user.id)


async def test_refunding_a_spent_pack_takes_what_is_left_and_records_the_rest(client, fake, db, settings):
    user = await new_user(db, settings)
    session = await buy_pack(client, fake, user)
    await spend(db, user.id, 510)
    assert (await credits.summary(db, user.id)).remaining == 10

    fake.auto_deliver = False
    await fake.refund(session["payment_intent"])
    refunded = fake.take("charge.refunded")
    for _ in range(2):
        assert (await fake.deliver(refunded)).status == 200
    await fake.deliver(make_event("charge.refunded", refunded["data"]["object"]))

    assert (await credits.summary(db, user.id)).remaining == 0, "never below zero"
    assert await consistent(db, user.id)
    row = await db.fetchrow("SELECT refunded_cents, clawed_back, unrecovered FROM billing_top_ups WHERE checkout_session_id = $1",
                            session["id"])
    assert dict(row) == {"refunded_cents": 500, "clawed_back": 10, "unrecovered": 490}


async def test_partial_refunds_claw_back_in_proportion(client, fake, db, settings):
    user = await new_user(db, settings)
    session = await buy_pack(client, fake, user)
    await fake.refund(session["payment_intent"], amount=200)
    assert (await credits.summary(db, user.id)).remaining == 320
    await fake.refund(session["payment_intent"], amount=100)
    assert (await credits.summary(db, user.id)).remaining == 220
    assert await consistent(db, user.id)


async def test_a_refund_of_a_subscription_payment_is_not_a_top_up_claw_back(client, fake, db, settings):
    user = await new_user(db, settings)
    await checkout_and_pay(billing(client), fake, user, "pro")
    charge = next(iter(fake.store("charge").values()))
    await fake.refund(charge["payment_intent"])
    assert fake.deliveries[-1].event_type == "charge.refunded"
    assert json.loads(fake.deliveries[-1].body)["outcome"] == "ignored"
    assert (await credits.summary(db, user.id)).remaining == 2000


async def test_a_disputed_pack_payment_takes_its_credits_back_at_once(client, fake, db, settings):
    user = await new_user(db, settings)
    session = await buy_pack(client, fake, user)
    await fake.dispute(session["payment_intent"], outcome="won")
    assert [d.event_type for d in fake.deliveries[-2:]] == ["charge.dispute.created", "charge.dispute.closed"]
    # Stripe withdrew the money when the dispute opened; winning it later restores nothing by itself.
    assert (await credits.summary(db, user.id)).remaining == 20
    entry = await db.fetchrow("SELECT amount, reason, actor FROM credit_ledger WHERE user_id = $1 AND kind = 'adjust'", user.id)
    assert entry["amount"] == -500 and entry["actor"] == "stripe" and entry["reason"].startswith("dispute of top-up")
    assert await consistent(db, user.id)


async def test_a_dispute_after_a_partial_refund_takes_only_what_is_left(client, fake, db, settings):
    user = await new_user(db, settings)
    session = await buy_pack(client, fake, user)
    await fake.refund(session["payment_intent"], amount=200)
    assert (await credits.summary(db, user.id)).remaining == 320
    await fake.dispute(session["payment_intent"], amount=300)
    assert (await credits.summary(db, user.id)).remaining == 20
    row = await db.fetchrow("SELECT refunded_cents, clawed_back FROM billing_top_ups WHERE checkout_session_id = $1",
                            session["id"])
    assert dict(row) == {"refunded_cents": 500, "clawed_back": 500}
    assert await consistent(db, user.id)


async def test_a_disputed_subscription_payment_is_left_for_an_operator(client, fake, db, settings):
    user = await new_user(db, settings)
    await checkout_and_pay(billing(client), fake, user, "pro")
    charge = next(iter(fake.store("charge").values()))
    await fake.dispute(charge["payment_intent"])
    assert fake.deliveries[-1].event_type == "charge.dispute.created"
    assert json.loads(fake.deliveries[-1].body)["outcome"] == "ignored"
    assert (await credits.summary(db, user.id)).remaining == 2000


# --- Stripe unavailable and secrets -----------------------------------------------------------------

async def test_a_stripe_failure_during_a_webhook_rolls_back_so_the_retry_applies_it(client, fake, db, settings):
    user = await new_user(db, settings)
    fake.auto_deliver = False
    url = await billing(client).checkout_subscription(user, "pro")
    await fake.complete_checkout(session_id_of(url))
    completed = fake.take("checkout.session.completed")

    real_key, fake.api_key = fake.api_key, "sk_test_rotated_elsewhere_0000"
    failed = await fake.deliver(completed)  # our re-fetch of the subscription is refused
    assert failed.status == 502 and json.loads(failed.body)["error"]["code"] == "billing_unavailable"
    assert await db.fetchval("SELECT count(*) FROM stripe_events") == 0
    assert (await credits.summary(db, user.id)).plan.code == "free"

    fake.api_key = real_key
    retried = await fake.deliver(completed)
    assert retried.status == 200 and json.loads(retried.body)["outcome"] == "processed"
    assert (await credits.summary(db, user.id)).plan.code == "pro"


async def test_the_stripe_key_and_webhook_secret_never_reach_responses_or_logs(client, fake, db, settings, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [settings.stripe_secret_key, settings.stripe_webhook_secret]
    bodies = []

    user = await new_user(db, settings)
    subscription = await checkout_and_pay(billing(client), fake, user, "pro")
    await fake.set_cancel_at_period_end(subscription["id"])
    bodies += [d.body for d in fake.deliveries]
    bodies.append((await fake.deliver(fake.events[-1], secret="whsec_" + "0" * 32)).body)
    bodies.append((await fake.deliver(fake.events[-1], signature=fake.sign("{}"))).body)

    # Stripe refusing our key: its message quotes part of the key; ours quotes nothing.
    fake.api_key = "sk_test_someone_else_entirely"
    with pytest.raises(ApiError) as err:
        await billing(client).customer_portal(user)
    assert err.value.status == 502 and err.value.code == "billing_unavailable"
    bodies.append(json.dumps(err.value.body()))
    bodies.append((await fake.deliver(fake.event("customer.subscription.updated", subscription))).body)
    bodies.append(await (await client.get("/metrics")).text())

    text = "\n".join(bodies) + "\n" + caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    for secret in secrets:
        assert secret not in text
        assert secret[-8:] not in text
    assert "Invalid API Key" not in text
