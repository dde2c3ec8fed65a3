"""Every portal page fits a phone: at 390x844 no page scrolls sideways, signed out, as a customer
and as an admin. Wide tables scroll inside their own box or become stacked cards.

The pages are not listed by hand: every GET route the app registers under the portal is visited,
so a page added later is measured too. A fixture fills each page with the data that makes it
widest (generations with players, devices, invoices and receipts, keys, audit entries, mail).
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

import aiohttp
import pytest
from playwright.async_api import Browser

from fakes.stripe_fake import checkout_and_pay, fake_stripe, session_id_of  # noqa: F401 (fixture)
from helpers import DEFAULT_PASSWORD, unique_email
from releases_support import zxp
from server.audit import audit
from server.auth.service import CurrentUser, create_user
from server.billing import BILLING
from server.generation import GENERATION
from server.keybank import KEYBANK
from server.mail import MAIL
from server.releases import RELEASES, Actor
from test_portal_browser import ARTIFACTS, CHROMIUM_ARGS, Live, browser, live  # noqa: F401 (fixtures)
from test_portal_pages import tiny_wav

PHONE = {"width": 390, "height": 844}
# For the failure message: the outermost elements reaching past the edge that no scroll box clips.
CULPRITS = """limit => {
  const clipped = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
  const wide = [...document.querySelectorAll('body *')].filter(
      e => e.getBoundingClientRect().right > limit + 0.5 && !clipped(e));
  return wide.filter(e => !wide.includes(e.parentElement)).slice(0, 5)
      .map(e => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/ +/g, '.') : '')
                + ' ' + Math.round(e.getBoundingClientRect().right) + 'px');
}"""


@dataclass
class Seeded:
    customer: str
    admin: str
    ids: dict[str, str]


@pytest.fixture
async def seeded(live: Live, db, settings) -> Seeded:
    """A customer with everything a page can list, and an admin with a log to read."""
    app = live.app
    customer_email = unique_email("phone-customer-with-a-long-address")
    customer_id = await create_user(db, settings, customer_email, DEFAULT_PASSWORD, verified=True)
    admin_email = unique_email("phone-admin")
    admin_id = await create_user(db, settings, admin_email, DEFAULT_PASSWORD, role="admin", verified=True)
    customer = CurrentUser(customer_id, customer_email, "user", "active", None)

    await checkout_and_pay(app[BILLING], live.stripe, customer, "pro")
    url = await app[BILLING].checkout_top_up(customer, "pack_500")
    await live.stripe.complete_checkout(session_id_of(url))

    key = await app[GENERATION].storage.put(tiny_wav(), "wav")
    generation_id = None
    for n in range(3):
        generation_id = await db.fetchval(
            """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged, storage_key,
                                        format, duration_seconds, latency_ms, upstream_cost)
               VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, $2, 'h', 2, $3, 'wav', 0.1, 900, 300) RETURNING id""",
            customer_id, f"thunderclap rolling across a wide valley with distant echoes, take {n}", key,
        )
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, text, request_hash, credits_charged, failure_reason)
           VALUES ($1, 'voice', 'failed', '{}'::jsonb, 'Hello', 'h2', 0, 'upstream_unavailable_after_several_retries')""",
        customer_id,
    )
    async with aiohttp.ClientSession() as http:
        for name in ("Premiere Pro 2025 on the colour-grading suite upstairs", "Edit Suite B"):
            async with http.post(f"{live.base}/v1/auth/login", headers={"User-Agent": "Mozilla/5.0 " + "x" * 120},
                                 json={"email": customer_email, "password": DEFAULT_PASSWORD, "device_name": name}) as resp:
                assert resp.status == 200

    secret = "sk_" + secrets.token_hex(24)
    live.elevenlabs.add_key(secret, character_limit=100_000, max_concurrency=4)
    view = await app[KEYBANK].add_key(provider="elevenlabs", label="Primary pool key for the night shift",
                                      secret=secret, max_concurrency=4)
    await app[KEYBANK].disable(view.id, "invalid_api_key: the provider refused this key during the quota probe")
    await audit(db, admin_id, "credits.adjusted", "user", customer_id,
                {"amount": 50, "reason": "Goodwill for the outage on the night of the big premiere deadline"})
    await audit(db, admin_id, "key.disabled", "provider_key", view.id, {"label": view.label, "last4": view.last4})
    await app[MAIL].send(customer_email, "A subject line long enough to need wrapping on a phone screen", "Body " * 200)
    mail_id = await db.fetchval("SELECT max(id) FROM mail_outbox")
    for version in ("1.0.0", "1.1.0"):
        await app[RELEASES].publish(zxp(version), product="cep", channel="stable", version=version,
                                    actor=Actor(admin_id, admin_email), notes_md="- Loops keep their fades " * 8)
    return Seeded(customer_email, admin_email, {
        "user_id": str(customer_id), "generation_id": str(generation_id), "message_id": str(mail_id),
        # A package download is a file, not a page (a browser would save it): a missing version's 404 page stands in.
        "product": "cep", "version": "0.0.0",
    })


def portal_pages(app) -> list[str]:
    """Every GET page of the portal, path parameters filled from the seeded ids."""
    paths = []
    for route in app.router.routes():
        name = route.name or ""
        if route.method != "GET" or not name.startswith("portal.") or name == "portal.static":
            continue
        canonical = route.resource.canonical
        paths.append(canonical)
    return sorted(set(paths))


def concrete(path: str, ids: dict[str, str]) -> str:
    missing = [p for p in re.findall(r"\{(\w+)", path) if p not in ids]
    assert not missing, f"the phone test needs an id for {missing} in {path}: add it to the `seeded` fixture"
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: ids[m.group(1)], path)


async def signed_in_context(browser: Browser, live: Live, email: str | None):
    context = await browser.new_context(base_url=live.base, viewport=PHONE, device_scale_factor=1, is_mobile=True,
                                        has_touch=True)
    if email:
        page = await context.new_page()
        await page.goto("/signin")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/dashboard")
        await page.close()
    return context


async def test_no_portal_page_scrolls_sideways_on_a_phone(browser: Browser, live: Live, seeded: Seeded):
    pages = portal_pages(live.app)
    assert {"/dashboard", "/billing", "/devices", "/admin/keys", "/admin/users/{user_id}"} <= set(pages)
    too_wide: list[str] = []
    measured = 0
    for who, email in (("visitor", None), ("customer", seeded.customer), ("admin", seeded.admin)):
        context = await signed_in_context(browser, live, email)
        page = await context.new_page()
        seen: set[str] = set()
        for path in pages:
            response = await page.goto(concrete(path, seeded.ids))
            final = page.url
            if not final.startswith(live.base) or final in seen:
                continue  # Stripe's own pages, or a redirect to a page already measured
            if response is None or "text/html" not in (response.headers.get("content-type") or ""):
                continue  # audio and other files are not pages
            seen.add(final)
            measured += 1
            width = await page.evaluate(
                "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
            if width > PHONE["width"]:
                culprits = await page.evaluate(CULPRITS, PHONE["width"])
                too_wide.append(f"{who} {final[len(live.base):]}: {width}px {culprits}")
            # Every page as a phone shows it, for a human to look over (test-artifacts/ is git-ignored).
            (ARTIFACTS / "phone").mkdir(parents=True, exist_ok=True)
            name = re.sub(r"\W+", "-", f"{who}-{final[len(live.base):]}").strip("-")[:80]
            await page.screenshot(path=str(ARTIFACTS / "phone" / f"{name}.png"), full_page=True)
        await context.close()
    assert measured >= 20, measured
    assert too_wide == [], "pages wider than a 390 px phone:\n" + "\n".join(too_wide)
