"""Email verification: an account generates only once its address is proven by the mailed link.

Sign-up (portal or API) mails a one-time link; following it in the browser that signed up signs
that browser in and goes on to the plan chosen on /pricing. Until then the API answers 403
`email_not_verified` to generation and the portal shows a banner that can send the link again.
"""

from __future__ import annotations

from datetime import timedelta

from fakes.stripe_fake import fake_stripe  # noqa: F401 (fixture)
from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, gen_env, gen_settings, leaks, no_secret_in_logs_or_responses, sim,
)
from generation_support import post
from helpers import DEFAULT_PASSWORD, sign_in, unique_email
from server.app import create_app
from server.auth import verification
from server.credits import service as credits
from test_portal_support import Portal, browser_factory, visitor  # noqa: F401 (fixtures)


async def registered_not_verified(client, db, plan: str = "pro"):
    email = unique_email("unverified")
    resp = await client.post("/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})
    assert resp.status == 202
    user = await sign_in(client, email)
    now = await db.fetchval("SELECT now()")
    await credits.set_plan(db, user.user_id, plan)
    await credits.grant_period(db, user.user_id, now - timedelta(days=1), now + timedelta(days=29), 100,
                               key=f"test-grant:{user.user_id}")
    return user


async def test_generation_waits_for_a_verified_email_and_charges_nothing_meanwhile(api, db, add_key):
    await add_key()
    user = await registered_not_verified(api, db)
    api.leaks.values += [user.access_token, user.refresh_token]
    for path, body in (("/v1/sfx", {"prompt": "door slam", "duration_seconds": 1}),
                       ("/v1/voice", {"text": "Hello there", "voice_id": "any"})):
        resp, data = await post(api, path, user, body)
        assert resp.status == 403, data
        error = (await resp.json())["error"]
        assert error["code"] == "email_not_verified"
        assert "Confirm your email address" in error["message"] and user.email in error["message"]
    assert (await credits.summary(db, user.user_id)).remaining == 100, "nothing was held or charged"
    assert await db.fetchval("SELECT count(*) FROM generations") == 0

    # Reading the account still works, and tells the panel what is missing: only work that costs waits.
    me = await api.get("/v1/me", headers=user.headers)
    assert me.status == 200 and (await me.json())["user"]["email_verified"] is False

    await verification.mark_verified(db, user.user_id)
    resp, data = await post(api, "/v1/sfx", user, {"prompt": "door slam", "duration_seconds": 1})
    assert resp.status == 200, data


async def test_the_mailed_link_verifies_once_and_signs_in_only_the_browser_that_signed_up(visitor, browser_factory, db):
    email = unique_email("linked")
    resp = await visitor.post("/signup", {"email": email, "password": DEFAULT_PASSWORD, "password_confirm": DEFAULT_PASSWORD})
    assert resp.headers["Location"] == "/signup/check-inbox"
    assert email in await visitor.page("/signup/check-inbox")
    assert (await visitor.get("/dashboard")).status == 303, "not signed in before the address is proven"
    link = await visitor.mailed_link(email, "/verify-email")

    # The same link opened in another browser verifies but asks for the password there.
    elsewhere = await browser_factory()
    resp = await elsewhere.get(link)
    assert resp.status == 303 and resp.headers["Location"].startswith("/signin?next=")
    assert await db.fetchval("SELECT email_verified_at IS NOT NULL FROM users WHERE email = $1", email)
    assert (await elsewhere.get("/dashboard")).status == 303

    # Spent: the browser that signed up gets the expired-link page, and a fresh link signs it in.
    assert (await visitor.get(link)).status == 400
    await db.execute("UPDATE users SET email_verified_at = NULL WHERE email = $1", email)
    # Signing up again with an unconfirmed address mails a new link (and says nothing else).
    await visitor.post("/signup", {"email": email, "password": DEFAULT_PASSWORD, "password_confirm": DEFAULT_PASSWORD})
    resp = await visitor.get(await visitor.mailed_link(email, "/verify-email"))
    assert (resp.status, resp.headers["Location"]) == (303, "/dashboard")
    assert (await visitor.get("/dashboard")).status == 200


async def test_an_unverified_user_sees_the_banner_and_can_resend_the_link(browser_factory, client, db):
    portal = await browser_factory()
    email = unique_email("banner")
    await client.post("/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})
    assert (await portal.sign_in(email)).status == 303
    page = await portal.page("/dashboard")
    assert 'data-testid="verify-banner"' in page and "Resend verification" in page
    before = await db.fetchval("SELECT count(*) FROM mail_outbox WHERE to_address = $1", email)
    resp = await portal.post("/verify-email/resend", {"next": "/billing"})
    assert (resp.status, resp.headers["Location"]) == (303, "/billing")
    assert await db.fetchval("SELECT count(*) FROM mail_outbox WHERE to_address = $1", email) == before + 1
    assert "We sent a new confirmation link" in await portal.page("/billing")

    for _ in range(verification.MAX_LINKS_PER_HOUR):
        await portal.post("/verify-email/resend")
    assert await db.fetchval("SELECT count(*) FROM email_verification_tokens") == verification.MAX_LINKS_PER_HOUR, \
        "the inbox is not a target: links per hour are capped"

    resp = await portal.get(await portal.mailed_link(email, "/verify-email"))
    assert resp.status == 303
    assert 'data-testid="verify-banner"' not in await portal.page("/dashboard")


async def test_a_plan_chosen_on_pricing_carries_through_sign_up_straight_into_checkout(
        aiohttp_client, settings, fake_stripe, db):  # noqa: F811
    client = await aiohttp_client(create_app(settings.replace(stripe_api_base=fake_stripe.base_url)))
    portal = Portal(client)
    try:
        signup_form = await portal.page("/signup?plan=pro")
        assert 'name="plan" value="pro"' in signup_form
        email = unique_email("planned")
        resp = await portal.post("/signup", {"email": email, "password": DEFAULT_PASSWORD,
                                             "password_confirm": DEFAULT_PASSWORD, "plan": "pro"})
        assert resp.status == 303
        link = await portal.mailed_link(email, "/verify-email")
        assert "plan=pro" in link
        resp = await portal.get(link)
        assert (resp.status, resp.headers["Location"]) == (303, "/billing/checkout?plan=pro")
        resp = await portal.get("/billing/checkout?plan=pro")
        assert resp.status == 303 and resp.headers["Location"].startswith(fake_stripe.base_url), \
            "straight on Stripe's Checkout page for the chosen plan"
        (session,) = fake_stripe.store("checkout.session").values()
        assert session["mode"] == "subscription"
    finally:
        await portal.client.close()
