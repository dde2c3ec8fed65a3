"""`python -m server billing reconcile`: Stripe's state re-read through the SDK, drift repaired and reported."""

from __future__ import annotations

import asyncio
import os
import sys


from fakes.stripe_fake import checkout_and_pay, fake_stripe, session_id_of  # noqa: F401 (fixture)
from billing_support import billing, fake, new_user, settings  # noqa: F401 (fixtures)
from server.billing.service import BillingService
from server.billing.stripe_client import StripeGateway
from server.credits import service as credits


async def run_cli(test_env, fake, *args) -> tuple[int, str, str]:
    env = {**os.environ, **test_env, "STRIPE_API_BASE": fake.base_url, "LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "billing", "reconcile", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_reconcile_fixes_a_plan_that_drifted_and_says_what_it_changed(client, fake, db, settings, test_env):
    user = await new_user(db, settings)
    subscription = await checkout_and_pay(billing(client), fake, user, "basic")
    await fake.change_price(subscription["id"], settings.price_ids["pro"], notify=False)  # the webhook never came
    assert (await credits.plan_for(db, user.id)).code == "basic"

    code, out, err = await run_cli(test_env, fake, "--dry-run")
    assert code == 0, err
    assert f"user {user.id}: plan basic -> pro" in out
    assert "dry run" in out
    assert (await credits.plan_for(db, user.id)).code == "basic", "a dry run writes nothing"

    code, out, err = await run_cli(test_env, fake)
    assert code == 0, err
    assert f"subscription {subscription['id']}: plan_code basic -> pro" in out
    assert f"user {user.id}: plan basic -> pro" in out
    assert (await credits.plan_for(db, user.id)).code == "pro"
    assert (await billing(client).subscription(user.id)).plan == "pro"

    code, out, err = await run_cli(test_env, fake)
    assert (code, out.strip()) == (0, "0 change(s)")


async def test_reconcile_reports_stripe_being_unreachable_with_a_clear_error(client, fake, test_env, settings):
    fake.api_key = "sk_test_not_ours_at_all_123"
    code, out, err = await run_cli(test_env, fake)
    assert code == 1
    assert "Stripe could not be reached" in err
    assert settings.stripe_secret_key not in out + err


async def test_reconcile_pages_through_every_subscription_and_repairs_missed_events(client, fake, db, settings):
    users = [await new_user(db, settings) for _ in range(5)]
    for user in users:
        await checkout_and_pay(billing(client), fake, user, "basic")
    subs = list(fake.store("subscription").values())
    await fake.change_price(subs[0]["id"], settings.price_ids["enterprise"], notify=False)
    fake.cancel_subscription_now(subs[1]["id"])  # ended, and the deleted event was lost
    subs[2]["status"] = "past_due"                 # a failed renewal nobody told us about
    fake.requests.clear()

    gateway = StripeGateway(settings, page_size=2)
    try:
        report = await BillingService(db, gateway, settings).reconcile()
    finally:
        await gateway.close()

    list_calls = [r for r in fake.requests if r == ("GET", "/v1/subscriptions")]
    assert len(list_calls) == 3, "5 subscriptions in pages of 2"
    owner = {s["id"]: u for s, u in zip(subs, users)}
    assert (await credits.plan_for(db, owner[subs[0]["id"]].id)).code == "enterprise"
    assert (await credits.plan_for(db, owner[subs[1]["id"]].id)).code == "free"
    assert (await credits.summary(db, owner[subs[2]["id"]].id)).past_due_since is not None
    assert (await credits.plan_for(db, owner[subs[3]["id"]].id)).code == "basic"
    assert any("past due since none ->" in line for line in report)
    assert sum("plan basic -> " in line and line.startswith("user ") for line in report) == 2


async def test_reconcile_grants_a_paid_period_whose_invoice_paid_event_was_lost(client, fake, db, settings):
    user = await new_user(db, settings)
    fake.auto_deliver = False
    url = await billing(client).checkout_subscription(user, "pro")
    await fake.complete_checkout(session_id_of(url))
    await fake.deliver_pending("checkout.session.completed")  # invoice.paid never arrives
    fake.pending.clear()
    assert (await credits.summary(db, user.id)).plan.code == "pro"
    assert (await credits.summary(db, user.id)).allowance == 0

    report = await billing(client).reconcile()
    assert any(line.endswith(f"granted 2000 credits (pro) to user {user.id}") for line in report)
    assert (await credits.summary(db, user.id)).remaining == 2000
    assert [i.status for i in await billing(client).invoices(user.id)] == ["paid"]
    assert await billing(client).reconcile() == []
