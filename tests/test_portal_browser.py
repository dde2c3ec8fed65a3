"""The portal in a real headless Chromium against the real app on a local port.

Payments go through the local fake Stripe (server/simulator/stripe.py): its hosted Checkout
page sends signed webhooks to the app before redirecting back, like Stripe does. Every page
visited must load without a console error (a CSP violation counts as one), and screenshots
of the main pages are written to test-artifacts/portal/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import re
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from fakes.stripe_fake import FakeStripe, fake_stripe  # noqa: F401 (fixture)
from helpers import DEFAULT_PASSWORD, make_admin, unique_email
from server.app import create_app
from server.appkeys import DB
from server.auth.service import create_user
from server.credits import service as credits
from server.generation import GENERATION
from server.simulator import SimulatorState, create_simulator_app
from test_portal_pages import tiny_wav

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "portal"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
ADMIN_PAGES = ["/admin", "/admin/users", "/admin/usage", "/admin/keys", "/admin/audit", "/admin/outbox"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    base: str
    app: object
    stripe: FakeStripe
    elevenlabs: SimulatorState


@pytest.fixture
async def live(aiohttp_server, settings, fake_stripe) -> Live:
    # The public URL must be known before the app exists (Checkout return addresses), so the port is picked first.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    simulator = SimulatorState()
    elevenlabs = await aiohttp_server(create_simulator_app(simulator))
    app = create_app(settings.replace(stripe_api_base=fake_stripe.base_url, public_url=base,
                                      elevenlabs_base_url=str(elevenlabs.make_url("")).rstrip("/")))
    await aiohttp_server(app, port=port)
    fake_stripe.webhook_url = base + "/webhooks/stripe"
    return Live(base, app, fake_stripe, simulator)


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser, live: Live):
    context = await browser.new_context(base_url=live.base, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    # Pages answered 401/403/422 on purpose log "Failed to load resource"; a failing sub-resource
    # (stylesheet, script, audio) is caught by the response hook instead.
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("response", lambda resp: problems.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 and resp.request.resource_type != "document" else None)
    yield page
    await context.close()
    assert problems == [], "the browser reported errors (CSP violations show up here)"


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def sign_up_in_browser(page: Page, live: Live, email: str | None = None) -> str:
    """Signs up and opens the mailed confirmation link in the same browser, which signs it in."""
    email = email or unique_email("browser")
    await page.goto("/signup")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    await page.get_by_label("Repeat the password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url("**/signup/check-inbox")
    await page.goto(await mailed_link(live, email))
    await page.wait_for_url("**/dashboard")
    return email


async def mailed_link(live: Live, email: str) -> str:
    """The confirmation link in the dev outbox (what the editor would click in their mail)."""
    body = await live.app[DB].fetchval("SELECT body FROM mail_outbox WHERE to_address = $1 ORDER BY id DESC LIMIT 1", email)
    return re.search(r"http\S+/verify-email\?\S+", body).group(0)


async def user_id_of(db, email: str) -> uuid.UUID:
    return await db.fetchval("SELECT id FROM users WHERE email = $1", email)


async def test_a_visitor_signs_up_and_the_dashboard_shows_credits_and_the_usage_chart(page: Page, live: Live, db):
    await page.goto("/pricing")
    await expect(page.get_by_role("heading", name="Pro")).to_be_visible()
    await shot(page, "pricing")
    await page.get_by_role("link", name="Get started").click()
    await page.wait_for_url("**/signup")
    await shot(page, "signup")

    email = await sign_up_in_browser(page, live)
    await expect(page.get_by_text("Your email is confirmed. Welcome to SFX Studio!")).to_be_visible()
    await expect(page.get_by_test_id("plan-name")).to_have_text("Free")
    await expect(page.get_by_test_id("credits-remaining")).to_contain_text("20")
    await expect(page.locator("svg.chart")).to_be_visible()

    # Some usage: two generations today, one with audio to play.
    user_id = await user_id_of(db, email)
    hold = await credits.reserve(db, user_id, 3, "browser-usage")
    await credits.capture(db, hold.id, 3)
    key = await live.app[GENERATION].storage.put(tiny_wav(), "wav")
    for prompt, charged, storage_key in (("glass shatters on concrete", 2, key), ("distant thunder roll", 1, None)):
        await db.execute(
            """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged, storage_key,
                                        format, duration_seconds)
               VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, $2, 'h', $3, $4, 'wav', 0.1)""",
            user_id, prompt, charged, storage_key,
        )
    await page.reload()
    await expect(page.get_by_test_id("credits-remaining")).to_contain_text("17")
    bars = page.locator("svg.chart rect.chart-bar")
    assert await bars.count() >= 1
    heights = [float(await bars.nth(i).get_attribute("height")) for i in range(await bars.count())]
    assert max(heights) > 0, "today's bar is drawn"
    table = page.locator("table", has=page.locator("caption", has_text="Credits used per day"))
    assert await table.count() == 1
    await expect(table.locator("td.num").last).to_have_text("3")
    duration = await page.locator("audio").first.evaluate(
        """a => new Promise((resolve, reject) => {
               a.addEventListener('loadedmetadata', () => resolve(a.duration));
               a.addEventListener('error', () => reject(new Error('audio failed')));
               a.preload = 'auto'; a.load(); })"""
    )
    assert 0.05 < duration < 0.2, "the player loads the user's own audio through the portal"
    await shot(page, "dashboard")
    await page.set_viewport_size({"width": 390, "height": 844})
    await shot(page, "dashboard-phone")


async def test_a_customer_signs_in_with_the_right_password_only_and_signs_out(page: Page, live: Live, db, settings):
    email = unique_email("returning")
    await create_user(db, settings, email, DEFAULT_PASSWORD)
    await page.goto("/dashboard")
    await page.wait_for_url(re.compile(r".*/signin\?next=/dashboard$"))
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("The email or password is incorrect.")
    await shot(page, "signin-error")

    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard")
    await expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/signin")
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await page.goto("/dashboard")
    await page.wait_for_url(re.compile(r".*/signin\?next=/dashboard$"))


async def test_upgrading_through_checkout_shows_the_new_plan_and_the_invoice(page: Page, live: Live, db):
    await sign_up_in_browser(page, live)
    await page.goto("/billing")
    await shot(page, "billing-free")
    await page.get_by_role("button", name="Upgrade to Pro").click()
    await page.wait_for_url(f"{live.stripe.base_url}/checkout/**")
    await expect(page.get_by_role("heading", name="Fake Stripe Checkout")).to_be_visible()
    await page.locator("#pay").click()

    await page.wait_for_url(re.compile(r".*/billing\?checkout=success.*"))
    await expect(page.get_by_text("Your subscription is active")).to_be_visible()
    await expect(page.get_by_test_id("billing-plan")).to_contain_text("Pro")
    invoices = page.get_by_test_id("invoices")
    await expect(invoices.locator("tbody tr")).to_have_count(1)
    row = invoices.locator("tbody tr").first
    await expect(row).to_contain_text("$19.99")
    await expect(row).to_contain_text("paid")
    number = (await row.locator("th").inner_text()).strip()
    assert number and number != "—"
    assert (await row.get_by_role("link", name=re.compile("^View")).get_attribute("href")).startswith(live.stripe.base_url)
    assert (await row.get_by_role("link", name=re.compile("^PDF")).get_attribute("href")).startswith(live.stripe.base_url)
    await shot(page, "billing")

    await page.goto("/dashboard")
    await expect(page.get_by_test_id("plan-name")).to_have_text("Pro")
    await expect(page.get_by_test_id("credits-remaining")).to_contain_text("2,000")
    await shot(page, "dashboard-pro")


async def test_a_customer_gets_403_on_every_admin_page(page: Page, live: Live):
    await sign_up_in_browser(page, live)
    await expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ADMIN_PAGES:
        response = await page.goto(path)
        assert response.status == 403, path
        await expect(page.get_by_role("heading", name="Access denied")).to_be_visible()
    await shot(page, "admin-403")


async def test_an_admin_adjusts_credits_and_finds_it_in_the_audit_log(page: Page, live: Live, db, settings):
    target = unique_email("target")
    target_id = await create_user(db, settings, target, DEFAULT_PASSWORD)
    admin_email = await sign_up_in_browser(page, live, unique_email("admin"))
    await make_admin(db, await user_id_of(db, admin_email))

    await page.goto("/dashboard")
    await page.get_by_role("link", name="Admin").click()
    await page.wait_for_url("**/admin/users")
    await page.get_by_label("Email or id").fill(target.split("@")[0])
    await page.get_by_role("button", name="Search").click()
    await shot(page, "admin-users")
    await page.get_by_role("link", name=target).click()
    await page.wait_for_url(f"**/admin/users/{target_id}")
    await expect(page.get_by_test_id("admin-credits")).to_have_text("20")

    await page.get_by_label("Adjust by").fill("50")
    await page.get_by_label("Reason", exact=True).fill("Goodwill for the outage")
    await page.get_by_role("button", name="Adjust credits").click()
    await expect(page.get_by_text(f"Added 50 credits to {target}.")).to_be_visible()
    await expect(page.get_by_test_id("admin-credits")).to_have_text("70")
    await expect(page.get_by_test_id("ledger")).to_contain_text("Goodwill for the outage")
    await shot(page, "admin-user")

    await page.get_by_role("link", name="Audit log", exact=True).click()
    await page.wait_for_url("**/admin/audit")
    row = page.get_by_test_id("audit").locator("tbody tr").first
    await expect(row).to_contain_text("credits.adjusted")
    await expect(row).to_contain_text(admin_email)
    await expect(row).to_contain_text("Goodwill for the outage")
    await shot(page, "admin-audit")

    await seed_usage(db, target_id)
    await page.get_by_role("link", name="Usage").click()
    await expect(page.locator("svg.chart")).to_have_count(4)
    await expect(page.get_by_role("row", name=re.compile("upstream_unavailable"))).to_be_visible()
    await shot(page, "admin-usage")

    secret = "sk_" + secrets.token_hex(24)
    live.elevenlabs.add_key(secret, character_limit=100_000, max_concurrency=4)
    await page.get_by_role("link", name="Key bank").click()
    await page.get_by_label("Label").fill("Primary pool key")
    await page.get_by_label("Max concurrency").fill("4")
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Validate and add").click()
    await expect(page.get_by_text("was validated and added")).to_be_visible()
    await expect(page.get_by_role("rowheader", name=re.compile("Primary pool key"))).to_contain_text(secret[-4:])
    assert secret not in await page.content(), "the secret is never shown again"
    await shot(page, "admin-keys")

    response = await page.goto("/admin/outbox")
    assert response.status == 200
    await shot(page, "admin-outbox")


async def seed_usage(db, user_id: uuid.UUID) -> None:
    """Two weeks of generations, some failed, for the usage page's charts."""
    rows = []
    for day in range(14):
        for n in range(1 + (day * 7) % 5):
            failed = (day + n) % 6 == 0
            rows.append((user_id, "failed" if failed else "succeeded", 0 if failed else 1 + n % 3,
                         None if failed else 180 + 40 * n, "upstream_unavailable" if failed else None,
                         900 + 350 * n + 60 * day, timedelta(days=day, hours=n)))
    await db.executemany(
        """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged, upstream_cost,
                                    failure_reason, latency_ms, created_at)
           VALUES ($1, 'sfx', $2, '{}'::jsonb, 'seeded', 'h', $3, $4, $5, $6, now() - $7::interval)""",
        rows,
    )


async def test_a_form_posted_without_its_csrf_token_is_rejected(page: Page, live: Live, db):
    email = await sign_up_in_browser(page, live)
    await page.goto("/account")
    form = page.locator("form[action='/account/email']")
    await form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    await form.get_by_label("New email").fill("changed@example.com")
    await form.get_by_label("Current password").fill(DEFAULT_PASSWORD)
    async with page.expect_navigation() as navigation:
        await form.get_by_role("button", name="Change email").click()
    assert (await navigation.value).status == 403
    await expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    assert await user_id_of(db, email), "the email did not change"
    assert await user_id_of(db, "changed@example.com") is None

    # The same form with its token goes through.
    await page.goto("/account")
    await form.get_by_label("New email").fill("changed@example.com")
    await form.get_by_label("Current password").fill(DEFAULT_PASSWORD)
    await form.get_by_role("button", name="Change email").click()
    await expect(page.get_by_text("Your email is now changed@example.com.")).to_be_visible()


async def test_devices_account_and_downloads_pages(page: Page, live: Live):
    email = await sign_up_in_browser(page, live)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{live.base}/v1/auth/login",
                             json={"email": email, "password": DEFAULT_PASSWORD, "device_name": "Edit Suite A"}) as resp:
            assert resp.status == 200
    await page.goto("/devices")
    await expect(page.get_by_role("rowheader", name=re.compile("Edit Suite A"))).to_be_visible()
    await shot(page, "devices")
    page.once("dialog", lambda dialog: dialog.accept())  # portal.js asks before signing a device out
    await page.get_by_role("button", name="Sign out Edit Suite A").click()
    await expect(page.get_by_text("The device was signed out.")).to_be_visible()
    await expect(page.get_by_role("rowheader", name=re.compile("Edit Suite A"))).to_have_count(0)

    await page.goto("/account")
    await shot(page, "account")
    await page.goto("/downloads")
    await shot(page, "downloads")
