"""Accounts in the portal: sign-in rules, password resets by mail, CSRF, export and deletion."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from fakes.stripe_fake import checkout_and_pay, fake_stripe  # noqa: F401 (fixture)
from helpers import DEFAULT_PASSWORD, sign_in, sign_up, unique_email
from portal import passwords
from server.auth.service import CurrentUser
from server.appkeys import REDIS
from server.billing import BILLING
from server.credits import service as credits
from server.generation import GENERATION
from server.mail import MAIL
from server.web.logs import JsonFormatter
from test_portal_pages import tiny_wav
from test_portal_support import browser_factory, customer, visitor  # noqa: F401 (fixtures)

NEW_PASSWORD = "a brand new passphrase"
HOLD_ID = uuid.uuid4()


# --- sign in, sign up ----------------------------------------------------------------------------


async def test_sign_up_rejects_a_short_password_with_a_field_message(visitor):
    resp = await visitor.post("/signup", {"email": "short@example.com", "password": "short", "password_confirm": "short"})
    text = await resp.text()
    assert resp.status == 422 and "Use at least 10 characters" in text
    assert 'value="short@example.com"' in text, "the email is kept, the password is not"


async def test_signing_up_with_a_taken_email_looks_exactly_like_a_new_sign_up(visitor, browser_factory, db):
    """An outsider cannot learn who is a customer from the form: both answers are the same
    redirect and the same page; only the address's owner learns which it was, by mail."""
    taken = await visitor.sign_up()
    answers = []
    for email in (taken.email, unique_email("fresh")):
        browser = await browser_factory()
        resp = await browser.post("/signup", {"email": email, "password": DEFAULT_PASSWORD, "password_confirm": DEFAULT_PASSWORD})
        page = await browser.page(resp.headers["Location"])
        answers.append((resp.status, resp.headers["Location"], re.sub(r'name="csrf_token" value="[^"]+"', "CSRF",
                                                                      page.replace(email, "EMAIL"))))
    assert answers[0] == answers[1]
    assert answers[0][:2] == (303, "/signup/check-inbox") and "Check your inbox" in answers[0][2]
    (mail,) = [m for m in await outbox_to(db, taken.email) if m["subject"] != "Confirm your email for SFX Studio"]
    assert mail["subject"] == "You already have an SFX Studio account"


async def test_sign_in_goes_to_the_requested_local_page_but_never_to_another_site(customer, browser_factory):
    _, user = customer
    portal = await browser_factory()
    resp = await portal.post("/signin", {"email": user.email.upper(), "password": user.password, "next": "/devices"})
    assert resp.status == 303 and resp.headers["Location"] == "/devices"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        other = await browser_factory()
        resp = await other.post("/signin", {"email": user.email, "password": user.password, "next": evil})
        assert resp.headers["Location"] == "/dashboard", evil


async def test_sign_in_throttling_is_shared_with_the_api(client, browser_factory, settings):
    account = await sign_up(client)
    for _ in range(settings.login_max_failures):
        resp = await client.post("/v1/auth/login", json={"email": account.email, "password": "wrong password!", "device_name": "x"})
        assert resp.status == 401
    portal = await browser_factory()
    resp = await portal.post("/signin", {"email": account.email, "password": DEFAULT_PASSWORD})
    assert resp.status == 429, "failed API logins count against the portal too, even with the right password"
    assert int(resp.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in await resp.text()


async def test_failed_portal_sign_ins_throttle_the_api_too(client, browser_factory, settings):
    account = await sign_up(client)
    portal = await browser_factory()
    for _ in range(settings.login_max_failures):
        resp = await portal.post("/signin", {"email": account.email, "password": "wrong password!"})
        assert resp.status == 401
    resp = await client.post("/v1/auth/login", json={"email": account.email, "password": DEFAULT_PASSWORD, "device_name": "x"})
    assert resp.status == 429


async def test_a_suspended_account_cannot_sign_in_and_its_open_session_ends(customer, browser_factory, db):
    portal, user = customer
    await db.execute("UPDATE users SET status = 'suspended' WHERE id = $1", user.id)
    resp = await portal.get("/dashboard")
    assert resp.status == 303, "the open session no longer works"
    other = await browser_factory()
    resp = await other.post("/signin", {"email": user.email, "password": user.password})
    assert resp.status == 403 and "suspended" in await resp.text()


async def test_sign_out_ends_the_session_on_the_server_not_only_in_the_browser(customer, browser_factory):
    portal, _ = customer
    stolen = next(c for c in portal.client.cookie_jar if c.key == "sfx_portal").value
    assert (await portal.sign_out()).status == 303
    thief = await browser_factory()
    thief.client.cookie_jar.update_cookies({"sfx_portal": stolen})
    assert (await thief.get("/dashboard")).status == 303, "a copy of the old cookie is worthless after sign-out"


# --- CSRF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/signout", "/account/email", "/account/password", "/account/export",
                                  "/account/delete", "/billing/subscribe", "/billing/manage", "/billing/top-up"])
async def test_state_changing_forms_without_a_csrf_token_get_403(customer, path):
    portal, _ = customer
    resp = await portal.post(path, {"email": "x@example.com", "plan": "pro", "confirm": "DELETE"}, csrf=False)
    assert resp.status == 403
    assert "Form expired" in await resp.text()
    resp = await portal.post(path, {"csrf_token": "not-the-token", "email": "x@example.com"}, csrf=False)
    assert resp.status == 403
    assert (await portal.get("/dashboard")).status == 200, "still signed in, nothing happened"


async def test_sign_in_and_reset_forms_need_the_token_too(visitor, customer):
    _, user = customer
    for path in ("/signin", "/signup", "/forgot-password", "/reset-password"):
        resp = await visitor.post(path, {"email": user.email, "password": user.password}, csrf=False)
        assert resp.status == 403, path


# --- forgotten passwords -------------------------------------------------------------------------


async def outbox_to(db, email: str) -> list:
    """Mail to `email` after its sign-up (the confirmation link every test account got is left out)."""
    return await db.fetch(
        """SELECT subject, body FROM mail_outbox WHERE to_address = $1 AND subject <> 'Confirm your email for SFX Studio'
            ORDER BY id""", email)


async def mail_after(portal, db, email: str) -> list:
    # The reset mail is sent after the answer (so timing does not reveal accounts).
    await portal.settled()
    return await outbox_to(db, email)


def reset_token(body: str) -> str:
    link = re.search(r"(http\S+/reset-password\?token=\S+)", body).group(1)
    return parse_qs(urlsplit(link).query)["token"][0]


async def test_forgot_and_reset_password_round_trip_through_the_outbox(client, db, customer, browser_factory, settings):
    portal, user = customer
    panel = await sign_in(client, user.email)
    requester = await browser_factory()
    resp = await requester.post("/forgot-password", {"email": user.email.upper()})
    assert resp.status == 200 and "Check your inbox" in await resp.text()

    (mail,) = await mail_after(requester, db, user.email)
    assert mail["subject"] == "Reset your SFX Studio password"
    token = reset_token(mail["body"])
    assert mail["body"].count(settings.public_url) == 1
    stored = await db.fetchval("SELECT token_hash FROM password_reset_tokens WHERE user_id = $1", user.id)
    assert bytes(stored) == hashlib.sha256(token.encode()).digest(), "only a hash of the token is kept"

    resp = await requester.get(f"/reset-password?token={token}")
    text = await resp.text()
    assert resp.status == 200 and user.email in text
    assert resp.headers["Referrer-Policy"] == "no-referrer"

    resp = await requester.post("/reset-password", {"token": token, "password": "x", "password_confirm": "x"})
    assert resp.status == 422, "a weak password is refused and the link still works"
    resp = await requester.post("/reset-password", {"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert resp.status == 303 and resp.headers["Location"] == "/signin"

    assert (await portal.get("/dashboard")).status == 303, "browser sessions signed in with the old password end"
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": panel.refresh_token})
    assert refreshed.status == 401, "panel devices are signed out too"
    assert (await requester.sign_in(user.email, DEFAULT_PASSWORD)).status == 401
    assert (await requester.sign_in(user.email, NEW_PASSWORD)).status == 303

    again = await browser_factory()
    resp = await again.post("/reset-password", {"token": token, "password": "another passphrase", "password_confirm": "another passphrase"})
    assert resp.status == 400 and "no longer works" in await resp.text(), "the link works once"


async def test_reset_links_expire_and_only_the_newest_works(db, customer, browser_factory):
    _, user = customer
    requester = await browser_factory()
    await requester.post("/forgot-password", {"email": user.email})
    first = reset_token((await mail_after(requester, db, user.email))[0]["body"])
    await requester.post("/forgot-password", {"email": user.email})
    second = reset_token((await mail_after(requester, db, user.email))[1]["body"])
    assert (await requester.get(f"/reset-password?token={first}")).status == 400
    assert (await requester.get(f"/reset-password?token={second}")).status == 200
    await db.execute("UPDATE password_reset_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1", user.id)
    assert (await requester.get(f"/reset-password?token={second}")).status == 400
    resp = await requester.post("/reset-password", {"token": second, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert resp.status == 400


async def test_forgot_password_answers_the_same_for_unknown_emails_and_sends_nothing(visitor, db):
    resp = await visitor.post("/forgot-password", {"email": "nobody-here@example.com"})
    assert resp.status == 200 and "Check your inbox" in await resp.text()
    await visitor.settled()
    assert await db.fetchval("SELECT count(*) FROM mail_outbox") == 0


async def test_reset_requests_are_capped_per_hour(db, settings, client, customer):
    _, user = customer
    for _ in range(passwords.MAX_RESETS_PER_HOUR + 2):
        await passwords.request_reset(db, settings, client.server.app[MAIL], user.email)
    assert len(await outbox_to(db, user.email)) == passwords.MAX_RESETS_PER_HOUR


# --- account changes -----------------------------------------------------------------------------


async def test_changing_the_email_needs_the_password_and_tells_the_old_address(customer, db):
    portal, user = customer
    new = unique_email("moved")
    resp = await portal.post("/account/email", {"email": new, "current_password": "wrong password"})
    assert resp.status == 422 and "password is incorrect" in await resp.text()
    resp = await portal.post("/account/email", {"email": new.upper(), "current_password": user.password})
    assert resp.status == 303
    assert await db.fetchval("SELECT email::text FROM users WHERE id = $1", user.id) == new
    (notice,) = await outbox_to(db, user.email)
    assert new in notice["body"]
    assert await db.fetchval("SELECT email_verified_at FROM users WHERE id = $1", user.id) is None, \
        "the new address is not proven yet"
    assert "Resend verification" in await portal.page("/dashboard")
    await portal.get(await portal.mailed_link(new, "/verify-email"))
    assert await db.fetchval("SELECT email_verified_at FROM users WHERE id = $1", user.id) is not None
    assert "Resend verification" not in await portal.page("/dashboard")


async def test_changing_the_password_keeps_this_browser_under_a_fresh_session_and_signs_out_the_rest(
        customer, browser_factory, client, settings):
    portal, user = customer
    other = await browser_factory()
    await other.sign_in(user.email, user.password)
    panel = await sign_in(client, user.email)
    redis = client.server.app[REDIS]
    sessions_key = settings.rkey("portal", "user-sessions", user.id)
    before = await redis.smembers(sessions_key)
    cookie_before = portal.client.cookie_jar.filter_cookies(portal.client._base_url)["sfx_portal"].value
    resp = await portal.post("/account/password", {"current_password": user.password, "password": NEW_PASSWORD,
                                                   "password_confirm": NEW_PASSWORD})
    assert resp.status == 303
    assert (await portal.get("/account")).status == 200
    assert (await other.get("/account")).status == 303
    assert (await client.get("/v1/me", headers=panel.headers)).status == 401
    after = await redis.smembers(sessions_key)
    assert len(before) == 2 and len(after) == 1 and not after & before, \
        "a session id known before the change (a stolen cookie) is worth nothing after it"
    assert portal.client.cookie_jar.filter_cookies(portal.client._base_url)["sfx_portal"].value != cookie_before


async def test_signing_in_starts_a_fresh_session_id(customer, browser_factory, client, settings):
    _, user = customer
    browser = await browser_factory()
    await browser.page("/signin")
    redis = client.server.app[REDIS]
    sessions_key = settings.rkey("portal", "user-sessions", user.id)
    before = await redis.smembers(sessions_key)
    assert (await browser.sign_in(user.email, user.password)).status == 303
    assert len(await redis.smembers(sessions_key) - before) == 1


# --- export --------------------------------------------------------------------------------------


async def seed_generation(client, db, user_id, prompt: str, audio: bytes | None = None) -> tuple[uuid.UUID, str | None]:
    key = await client.server.app[GENERATION].storage.put(audio, "wav") if audio is not None else None
    generation_id = await db.fetchval(
        """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged, storage_key,
                                    format, idempotency_key, hold_id)
           VALUES ($1, 'sfx', 'succeeded', '{"prompt": "x"}'::jsonb, $2, 'hash-secret-ish', 1, $3, 'wav', 'idem-key-123', $4)
           RETURNING id""",
        user_id, prompt, key, HOLD_ID,
    )
    return generation_id, key


async def test_export_holds_the_users_data_and_no_secrets(client, db, customer):
    portal, user = customer
    panel = await sign_in(client, user.email, device_name="Cutting Room")
    await seed_generation(client, db, user.id, "creaky attic floorboards", tiny_wav())
    hold = await credits.reserve(db, user.id, 2, "export-test")
    await credits.capture(db, hold.id, 2)

    resp = await portal.post("/account/export")
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="sfx-studio-data-')
    raw = await resp.text()
    data = json.loads(raw)
    assert data["account"]["email"] == user.email and data["account"]["id"] == str(user.id)
    assert data["plan"]["code"] == "free" and data["credits"]["remaining"] == 18
    assert [g["prompt"] for g in data["generations"]] == ["creaky attic floorboards"]
    assert [d["name"] for d in data["devices"]] == ["Cutting Room"]
    assert {e["kind"] for e in data["credit_ledger"]} >= {"grant", "reserve", "capture"}

    password_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    for secret in (password_hash, user.password, panel.refresh_token, panel.access_token, "idem-key-123",
                   "hash-secret-ish", str(HOLD_ID), "$2b$"):
        assert secret not in raw
    assert "storage_key" not in raw and "password" not in raw


# --- deletion ------------------------------------------------------------------------------------


async def test_deleting_the_account_anonymises_it_and_keeps_the_ledger(client, db, customer, browser_factory):
    portal, user = customer
    panel = await sign_in(client, user.email)
    shared_audio, own_audio = tiny_wav(), tiny_wav() + b"\x00\x00"
    _, own_key = await seed_generation(client, db, user.id, "my secret project", own_audio)
    _, shared_key = await seed_generation(client, db, user.id, "common door", shared_audio)
    neighbour = await sign_up(client)
    await seed_generation(client, db, neighbour.user_id, "common door", shared_audio)
    hold = await credits.reserve(db, user.id, 1, "before-delete")
    await credits.capture(db, hold.id, 1)
    ledger_before = await db.fetchval("SELECT count(*) FROM credit_ledger WHERE user_id = $1", user.id)

    resp = await portal.post("/account/delete", {"current_password": user.password, "confirm": "delete"})
    assert resp.status == 303 and resp.headers["Location"] == "/pricing"

    row = await db.fetchrow("SELECT email::text AS email, status, password_hash FROM users WHERE id = $1", user.id)
    assert row["status"] == "deleted" and user.email not in row["email"] and row["email"].endswith("@deleted.invalid")
    assert await db.fetchval("SELECT count(*) FROM generations WHERE user_id = $1", user.id) == 0
    assert await db.fetchval("SELECT count(*) FROM device_sessions WHERE user_id = $1", user.id) == 0
    assert await db.fetchval("SELECT count(*) FROM credit_ledger WHERE user_id = $1", user.id) == ledger_before
    storage = client.server.app[GENERATION].storage
    assert not await storage.exists(own_key), "the user's audio is gone"
    assert await storage.exists(shared_key), "a file another user's generation also points at stays"

    assert (await portal.get("/dashboard")).status == 303
    assert (await client.get("/v1/me", headers=panel.headers)).status == 401
    again = await browser_factory()
    assert (await again.sign_in(user.email, user.password)).status == 401
    assert (await again.post("/forgot-password", {"email": user.email})).status == 200
    actions = await db.fetch("SELECT action FROM audit_log WHERE object_id = $1", str(user.id))
    assert [a["action"] for a in actions] == ["user.deleted"]


async def test_deletion_needs_the_password_and_the_typed_confirmation(customer, db):
    portal, user = customer
    resp = await portal.post("/account/delete", {"current_password": user.password, "confirm": "yes"})
    assert resp.status == 422 and "Type DELETE" in await resp.text()
    resp = await portal.post("/account/delete", {"current_password": "wrong password", "confirm": "DELETE"})
    assert resp.status == 422
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", user.id) == "active"


@pytest.fixture
def settings(settings, fake_stripe):
    return settings.replace(stripe_api_base=fake_stripe.base_url)


async def test_deleting_a_subscribed_account_cancels_the_subscription_at_stripe(client, db, customer, fake_stripe):
    portal, user = customer
    fake_stripe.webhook_url = str(client.make_url("/webhooks/stripe"))
    current = CurrentUser(user.id, user.email, "user", "active", None)
    subscription = await checkout_and_pay(client.server.app[BILLING], fake_stripe, current, "pro")
    assert (await credits.plan_for(db, user.id)).code == "pro"

    resp = await portal.post("/account/delete", {"current_password": user.password, "confirm": "DELETE"})
    assert resp.status == 303
    assert fake_stripe.get("subscription", subscription["id"])["status"] == "canceled"
    assert await client.server.app[BILLING].subscription(user.id) is None


async def test_an_email_change_reaches_the_stripe_customer_so_receipts_follow(client, db, customer, fake_stripe):
    portal, user = customer
    current = CurrentUser(user.id, user.email, "user", "active", None)
    customer_id = await client.server.app[BILLING].ensure_customer(current)
    new = unique_email("receipts")
    resp = await portal.post("/account/email", {"email": new, "current_password": user.password})
    assert resp.status == 303
    assert fake_stripe.get("customer", customer_id)["email"] == new


async def test_an_email_change_stands_when_stripe_cannot_be_reached(client, db, customer, fake_stripe, caplog):
    portal, user = customer
    current = CurrentUser(user.id, user.email, "user", "active", None)
    customer_id = await client.server.app[BILLING].ensure_customer(current)
    fake_stripe.api_key = "sk_test_rotated_elsewhere_0000"  # our key is refused from now on
    new = unique_email("stripe-down")
    resp = await portal.post("/account/email", {"email": new, "current_password": user.password})
    assert resp.status == 303
    assert await db.fetchval("SELECT email::text FROM users WHERE id = $1", user.id) == new
    assert fake_stripe.get("customer", customer_id)["email"] == user.email
    assert "Stripe customer's email could not be updated" in caplog.text


async def test_reset_requests_from_one_address_are_capped_whatever_the_email(visitor, db, browser_factory):
    from portal.handlers.auth import RESETS_PER_IP_PER_HOUR

    accounts = []
    for _ in range(RESETS_PER_IP_PER_HOUR + 2):
        portal = await browser_factory()
        accounts.append(await portal.sign_up())
    for account in accounts:
        resp = await visitor.post("/forgot-password", {"email": account.email})
        assert resp.status == 200 and "Check your inbox" in await resp.text()
    await visitor.settled()
    assert await db.fetchval("SELECT count(*) FROM mail_outbox WHERE subject LIKE 'Reset%'") == RESETS_PER_IP_PER_HOUR


async def test_passwords_reset_tokens_and_session_cookies_never_reach_the_logs_or_pages(db, visitor, browser_factory, caplog):
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    json_handler = logging.StreamHandler(stream)
    json_handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(json_handler)
    pages = []

    async def post(portal, path, form):
        resp = await portal.post(path, form)
        pages.append(await resp.text())
        return resp

    try:
        email, first, second = unique_email("quiet"), "first quiet passphrase", "second quiet passphrase"
        await post(visitor, "/signup", {"email": email, "password": first, "password_confirm": first})
        await post(visitor, "/signup", {"email": unique_email("weak"), "password": "weak!", "password_confirm": "weak!"})
        stranger = await browser_factory()
        await post(stranger, "/signin", {"email": email, "password": "a wrong passphrase"})
        await post(stranger, "/forgot-password", {"email": email})
        await stranger.settled()
        token = reset_token((await outbox_to(db, email))[0]["body"])
        await post(stranger, "/reset-password", {"token": token, "password": "short", "password_confirm": "short"})
        await post(stranger, "/reset-password", {"token": token, "password": second, "password_confirm": second})
        await post(visitor, "/account/password", {"current_password": "not it at all", "password": first, "password_confirm": first})
        cookie = next(c for c in visitor.client.cookie_jar if c.key == "sfx_portal").value
    finally:
        logging.getLogger().removeHandler(json_handler)

    logs = caplog.text + stream.getvalue()
    for secret in (first, second, "a wrong passphrase", token, cookie):
        assert secret not in logs
    # (The reset form carries its own token back, like the link it came from; no page shows a password.)
    for secret in (first, second, "a wrong passphrase"):
        assert all(secret not in page for page in pages)
