"""The pages of issue 15 in headless Chromium: the business page, the dashboard's burn rate and
the account page's usage-mail switch, at desktop width and on a 390 px phone without sideways
scrolling (and, through the shared `page` fixture, without a console or CSP error)."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import Page, expect

from fakes.stripe_fake import fake_stripe  # noqa: F401 (fixture)
from helpers import make_admin
from server.alerts import usage
from server.credits import service as credits
from test_portal_browser import Live, browser, live, page, shot, sign_up_in_browser, user_id_of  # noqa: F401 (fixtures)

PHONE = {"width": 390, "height": 844}


async def fits_the_width(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways: {width}px"


async def test_business_dashboard_and_account_pages_work_on_a_desktop_and_fit_a_phone(page: Page, live: Live, db):
    email = await sign_up_in_browser(page, live)
    user_id = await user_id_of(db, email)
    await make_admin(db, user_id)
    # Ten days into a 30-day period with 400 of 500 credits used: 40 a day, out in 2.5 days.
    now = await db.fetchval("SELECT now()")
    await credits.set_plan(db, user_id, "basic")
    await credits.grant_period(db, user_id, now - timedelta(days=10), now + timedelta(days=20), 500, key="browser-grant")
    hold = await credits.reserve(db, user_id, 400, "browser-spend")
    await credits.capture(db, hold.id, 400)
    await db.execute("INSERT INTO billing_customers (stripe_customer_id, user_id) VALUES ('cus_b', $1)", user_id)
    await db.execute(
        """INSERT INTO billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, price_id, plan_code,
                                              status, stripe_created) VALUES ('sub_b', 'cus_b', $1, 'price_basic', 'basic', 'active', $2)""",
        user_id, now - timedelta(days=10),
    )
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, request_hash, credits_charged, upstream_cost, created_at)
           VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, 'h', 400, 90000, now())""", user_id)

    await page.goto("/admin/business")
    await expect(page.get_by_test_id("mrr")).to_have_text("$9.99")
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Export CSV").click()
    assert (await download.value).suggested_filename == f"business-{now:%Y-%m}.csv"
    await shot(page, "admin-business")

    await page.goto("/dashboard")
    await expect(page.get_by_test_id("burn-rate")).to_contain_text("40 credits a day")
    await expect(page.get_by_test_id("runout-date")).to_be_visible()

    await page.goto("/account")
    await expect(page.get_by_test_id("usage-mails-state")).to_have_text("on")
    await page.get_by_role("button", name="Turn off usage mails").click()
    await expect(page.get_by_test_id("usage-mails-state")).to_have_text("off")
    assert await usage.mails_enabled(db, user_id) is False

    await page.set_viewport_size(PHONE)
    for path, name in (("/admin/business", "admin-business-phone"), ("/dashboard", "dashboard-burn-phone"),
                       ("/account", "account-usage-mails-phone")):
        await page.goto(path)
        await fits_the_width(page)
        await shot(page, name)
