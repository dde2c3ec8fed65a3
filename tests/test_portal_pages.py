"""Every portal page renders for every role, with empty data and with data, and nobody sees
what their role does not allow: visitors are sent to sign in, non-admins get 403 on admin pages."""

from __future__ import annotations

import io
import json
import re
import uuid
import wave

import pytest

from server.audit import audit
from server.credits import service as credits
from server.generation import GENERATION
from server.mail import MAIL
from test_portal_support import admin, browser_factory, customer, visitor  # noqa: F401 (fixtures)

# One concrete address for every GET page the portal registers; `{user}` is filled in per test.
PUBLIC = ["/pricing", "/downloads", "/signin", "/signup", "/forgot-password", "/reset-password?token=unknown",
          "/signup/check-inbox", "/verify-email?token=unknown"]
CUSTOMER = ["/dashboard", "/billing", "/devices", "/account"]
ADMIN = ["/admin", "/admin/users", "/admin/users/{user}", "/admin/usage", "/admin/usage?days=7", "/admin/keys",
         "/admin/audit", "/admin/outbox", "/admin/outbox/{mail}", "/admin/releases",
         "/admin/business", "/admin/business?month=2025-12"]
OTHER = ["/", "/audio/{generation}", "/static/portal.css", "/billing/checkout?plan=free",
         "/downloads/{product}/{version}"]


def concrete(path: str, ids: dict[str, object]) -> str:
    return path.format(**{"product": "cep", "version": "0.0.1", **ids})


def test_the_page_lists_cover_every_get_route_of_the_portal(app):
    listed = {re.sub(r"\{(\w+)\}", "{}", p.split("?")[0]) for p in PUBLIC + CUSTOMER + ADMIN + OTHER}
    registered = set()
    for route in app.router.routes():
        name = route.name or route.resource.name or ""
        if route.method == "GET" and name.startswith("portal.") and name != "portal.static":
            registered.add(re.sub(r"\{(\w+)\}", "{}", route.resource.canonical))
    assert registered <= listed, f"pages without a rendering test: {registered - listed}"


async def seed_everything(client, db, user_id: uuid.UUID, admin_id: uuid.UUID) -> dict[str, object]:
    """Data on every page: usage, failures, a ledger, an audit trail, mail, a key."""
    hold = await credits.reserve(db, user_id, 3, "seed-1")
    await credits.capture(db, hold.id, 3)
    generation_id = await db.fetchval(
        """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged, latency_ms,
                                    upstream_cost, duration_seconds, format)
           VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, 'door <slam> & "creak"', 'h1', 3, 1800, 420, 4.2, 'wav') RETURNING id""",
        user_id,
    )
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, text, request_hash, credits_charged, failure_reason, latency_ms)
           VALUES ($1, 'voice', 'failed', '{}'::jsonb, 'Hello there', 'h2', 0, 'upstream_unavailable', 9000)""",
        user_id,
    )
    await credits.adjust(db, user_id, 5, "seed bonus", "admin:seed")
    await audit(db, admin_id, "credits.adjusted", "user", user_id, {"amount": 5, "reason": "seed bonus"})
    await client.server.app[MAIL].send("someone@example.com", "Hello <there>", "Body with a link https://example.com/x")
    mail_id = await db.fetchval("SELECT max(id) FROM mail_outbox")
    await db.execute(
        """INSERT INTO provider_keys (provider, label, ciphertext, nonce, key_version, last4, status, max_concurrency,
                                      quota_limit, quota_used, last_error, last_error_at)
           VALUES ('elevenlabs', 'seeded', '\\x00', '\\x000000000000000000000000', '1', 'abcd', 'exhausted', 3,
                   10000, 10000, 'quota_exceeded', now())"""
    )
    return {"user": user_id, "mail": mail_id, "generation": generation_id}


async def empty_ids(client, db, user_id) -> dict[str, object]:
    await client.server.app[MAIL].send("someone@example.com", "Only mail", "Nothing else")
    return {"user": user_id, "mail": await db.fetchval("SELECT max(id) FROM mail_outbox"), "generation": uuid.uuid4()}


def assert_page(resp, text: str, path: str) -> None:
    assert resp.status < 500, (path, resp.status, text[:500])
    if resp.content_type == "text/html":
        assert "Traceback" not in text
        assert resp.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], path


@pytest.mark.parametrize("with_data", [False, True], ids=["empty", "with-data"])
async def test_every_page_for_visitors_users_and_admins(client, db, visitor, customer, admin, with_data):
    (user_portal, user), (admin_portal, admin_user) = customer, admin
    ids = await (seed_everything(client, db, user.id, admin_user.id) if with_data else empty_ids(client, db, user.id))

    for path in PUBLIC + CUSTOMER + ADMIN + OTHER:
        path = concrete(path, ids)
        for who, portal in (("visitor", visitor), ("user", user_portal), ("admin", admin_portal)):
            resp = await portal.get(path)
            text = await resp.text()
            assert_page(resp, text, f"{who} {path}")
            if path.startswith("/admin"):
                expected = {"visitor": {403}, "user": {403}, "admin": {200, 303}}[who]
            elif path in CUSTOMER:
                expected = {303} if who == "visitor" else {200}
            elif path.startswith("/audio/"):
                expected = {303} if who == "visitor" else {404}  # no file behind the seeded row
            elif path.startswith("/downloads/"):
                expected = {404}  # no such release (tests/test_releases_pages.py downloads real ones)
            elif path == "/reset-password?token=unknown":
                expected = {400}
            elif path == "/verify-email?token=unknown":
                expected = {400} if who == "visitor" else {303}  # signed-in test users are verified already
            elif path in ("/signin", "/signup"):
                expected = {200} if who == "visitor" else {303}
            else:
                expected = {200, 303}
            assert resp.status in expected, (who, path, resp.status)
            if who == "visitor" and path in CUSTOMER:
                assert resp.headers["Location"].startswith("/signin?next=")


async def test_seeded_text_is_escaped_not_rendered_as_html(client, db, admin):
    portal, admin = admin
    ids = await seed_everything(client, db, admin.id, admin.id)
    text = await portal.page("/dashboard")
    assert 'door &lt;slam&gt; &amp; &#34;creak&#34;' in text
    assert "<slam>" not in text
    outbox = await portal.page("/admin/outbox")
    assert "Hello &lt;there&gt;" in outbox
    assert ids["generation"]


async def test_pricing_lists_the_plans_from_the_table_and_marks_the_current_one(db, visitor):
    text = await visitor.page("/pricing")
    for name in ("Free", "Basic", "Pro", "Enterprise"):
        assert f">{name}</h2>" in text
    assert "$19.99" in text and "2,000 credits a month" in text and "Unlimited credits" in text
    assert "Your plan" not in text

    user = await visitor.sign_up()
    await db.execute("UPDATE plans SET monthly_credits = 2500 WHERE code = 'pro'")
    try:
        text = await visitor.page("/pricing")
        assert "2,500 credits a month" in text, "prices and allowances are read from the plans table"
    finally:
        await db.execute("UPDATE plans SET monthly_credits = 2000 WHERE code = 'pro'")
    free_card = text.split('id="plan-free"')[0].rsplit("<article", 1)[1]
    assert "current" in free_card and "Your plan" in text
    await credits.set_plan(db, user.id, "pro")
    text = await visitor.page("/pricing")
    pro_card = text.split('id="plan-pro"')[0].rsplit("<article", 1)[1]
    assert "current" in pro_card


async def test_dashboard_shows_plan_credits_bar_usage_chart_and_table(db, customer):
    portal, user = customer
    hold = await credits.reserve(db, user.id, 4, "usage-1")
    await credits.capture(db, hold.id, 4)
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged)
           VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, 'thunder', 'h', 4)""",
        user.id,
    )
    text = await portal.page("/dashboard")
    assert 'data-testid="plan-name">Free<' in text
    assert 'data-testid="credits-remaining">16 <small>of 20</small>' in text
    assert re.search(r'<meter class="credits"[^>]*max="20"[^>]*value="16"', text, re.S)
    assert '<svg class="chart chart-wide"' in text and "<rect" in text
    # The same numbers as a table for screen readers: today's row says 4.
    table = text.split("<table>", 1)[1].split("</table>", 1)[0]
    assert "Credits used per day" in table
    assert re.search(r'<td class="num">4</td>', table)
    assert "thunder" in text


async def test_the_usage_chart_counts_prompt_assistance_credits_with_generations(db, customer):
    portal, user = customer
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged)
           VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, 'thunder', 'h', 4)""",
        user.id,
    )
    await db.execute(
        """INSERT INTO assist_requests (user_id, idempotency_key, request_hash, feature, status, prompt_version,
                                        provider, model, input_tokens, output_tokens, credits_charged)
           VALUES ($1, 'k', 'h', 'spot', 'succeeded', 'spot/1', 'openai', 'gpt-4.1-mini', 2100, 300, 2)""",
        user.id,
    )
    table = (await portal.page("/dashboard")).split("<table>", 1)[1].split("</table>", 1)[0]
    assert re.search(r'<td class="num">6</td>', table)


def tiny_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(b"\x00\x00" * 4800)
    return buffer.getvalue()


async def test_recent_generations_play_through_a_route_that_serves_only_the_owners_audio(client, db, customer, browser_factory):
    portal, user = customer
    storage = client.server.app[GENERATION].storage
    audio = tiny_wav()
    key = await storage.put(audio, "wav")
    generation_id = await db.fetchval(
        """INSERT INTO generations (user_id, kind, status, params, prompt, request_hash, credits_charged, storage_key, format)
           VALUES ($1, 'sfx', 'succeeded', '{}'::jsonb, 'rain on a tin roof', 'h', 1, $2, 'wav') RETURNING id""",
        user.id, key,
    )
    text = await portal.page("/dashboard")
    assert f'<audio controls preload="none" src="/audio/{generation_id}"' in text

    resp = await portal.get(f"/audio/{generation_id}")
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
    assert await resp.read() == audio
    resp = await portal.get(f"/audio/{generation_id}", headers={"Range": "bytes=0-11"})
    assert resp.status == 206 and await resp.read() == audio[:12]

    stranger = await browser_factory()
    await stranger.sign_up()
    assert (await stranger.get(f"/audio/{generation_id}")).status == 404, "another user's audio does not exist for them"
    await db.execute("UPDATE generations SET deleted_at = now() WHERE id = $1", generation_id)
    assert (await portal.get(f"/audio/{generation_id}")).status == 404


async def test_downloads_says_none_yet_without_releases(visitor):
    text = await visitor.page("/downloads")
    assert "No release has been published yet" in text


async def test_pages_set_security_headers_and_no_store_for_signed_in_pages(visitor):
    portal = visitor
    resp = await portal.get("/pricing")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in resp.headers, "HSTS only in production"
    await portal.sign_up()
    resp = await portal.get("/dashboard")
    assert resp.headers["Cache-Control"] == "no-store"


async def test_production_adds_hsts_and_secure_cookies(aiohttp_client, settings):
    from server.app import create_app

    client = await aiohttp_client(create_app(settings.replace(environment="production")))
    resp = await client.get("/signin")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_session_cookie_is_httponly_samesite_lax_and_encrypted(visitor):
    portal = visitor
    resp = await portal.get("/signin")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("sfx_portal=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    value = cookie.split("=", 1)[1].split(";", 1)[0]
    assert "csrf" not in value, "the cookie is encrypted, not readable JSON"


async def test_unknown_pages_get_the_portal_404_and_api_paths_keep_json(client):
    resp = await client.get("/no/such/page")
    assert resp.status == 404 and resp.content_type == "text/html"
    assert "Page not found" in await resp.text()
    resp = await client.get("/v1/no-such")
    assert resp.status == 404 and resp.content_type == "application/json"
    assert json.loads(await resp.text())["error"]["code"] == "not_found"


async def test_a_post_to_an_unknown_page_is_a_404_not_a_csrf_refusal(visitor):
    resp = await visitor.post("/no/such/form", {"x": "1"}, csrf=False)
    assert resp.status == 404
