"""The Downloads page and the admin Releases page: what editors see, what admins may change (with
CSRF, audited), and that nobody else may; the Downloads page also in headless Chromium at desktop
and phone widths."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from releases_support import ccx, zxp
from server.app import create_app
from server.audit import entries
from server.releases import RELEASES, Actor
from server.releases.signing import generate, load_keys
from test_portal_browser import ARTIFACTS, CHROMIUM_ARGS, free_port
from test_portal_support import admin, browser_factory, customer, visitor  # noqa: F401 (fixtures)

OPERATOR = Actor(None, "test-operator")


async def publish(app, version: str, *, product: str = "cep", data: bytes | None = None, **kw):
    data = data or (zxp(version) if product == "cep" else ccx(version))
    return await app[RELEASES].publish(data, product=product, channel=kw.pop("channel", "stable"), version=version,
                                       actor=OPERATOR, **kw)


def upload_form(csrf: str, package: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("csrf_token", csrf)
    for name, value in {"product": "cep", "channel": "stable", "rollout": "100", **fields}.items():
        form.add_field(name, value)
    form.add_field("package", package, filename="panel.zxp", content_type="application/octet-stream")
    return form


# --- Downloads --------------------------------------------------------------------------------------


async def test_downloads_lists_the_latest_stable_release_per_product_with_what_an_editor_needs(client, visitor):
    app = client.server.app
    await publish(app, "1.0.0", notes_md="First release")
    latest = await publish(app, "1.1.0", notes_md="## Loops\n\n- **Seamless** loops <script>x</script>")
    await publish(app, "1.2.0-beta.1", channel="beta")
    await publish(app, "0.9.0", product="uxp")

    text = await visitor.page("/downloads")
    cep = text.split('id="latest-cep"', 1)[1].split("</section>", 1)[0]
    assert "1.1.0" in cep.split("Older versions")[0] and latest.sha256 in cep
    assert 'href="/downloads/cep/1.1.0"' in cep and "<strong>Seamless</strong>" in cep and "<script>x" not in cep
    assert "UnifiedPluginInstallerAgent" in cep and "--install" in cep and "/install" in cep
    assert "CEP/extensions" in cep, "the manual way is explained too"
    assert 'href="/downloads/cep/1.0.0"' in cep.split("Older versions")[1], "older versions are listed below"
    assert "1.2.0-beta.1" not in text, "beta releases are for the beta channel, not the page"
    assert 'id="latest-uxp"' in text and "0.9.0" in text


async def test_downloads_labels_dev_builds_and_hides_yanked_releases(client, visitor):
    app = client.server.app
    await publish(app, "1.0.0", data=zxp("1.0.0", signed=False), dev_build=True)
    text = await visitor.page("/downloads")
    assert "Development build, unsigned" in text
    await app[RELEASES].yank("cep", "1.0.0", actor=OPERATOR)
    text = await visitor.page("/downloads")
    assert "1.0.0" not in text and "No release has been published yet" in text


# --- admin ---------------------------------------------------------------------------------------------


async def test_an_admin_publishes_steers_and_yanks_from_the_page_and_each_action_is_audited(client, db, admin):
    portal, admin_user = admin
    page = await portal.page("/admin/releases")
    assert "Nothing published yet" in page
    csrf = await portal.csrf()
    resp = await portal.client.post("/admin/releases", allow_redirects=False,
                                    data=upload_form(csrf, zxp("2.0.0"), version="2.0.0", rollout="20", notes="Hello"))
    assert resp.status == 303, await resp.text()
    page = await portal.page("/admin/releases")
    assert "cep 2.0.0" in page and 'value="20"' in page

    assert (await portal.post("/admin/releases/cep/2.0.0/rollout", {"percent": "75"})).status == 303
    assert (await portal.post("/admin/releases/min-supported", {"product": "cep", "version": "2.0.0"})).status == 303
    assert (await portal.get("/downloads/cep/2.0.0")).status == 200
    page = await portal.page("/admin/releases")
    assert 'value="75"' in page
    downloads_cell = page.split("cep 2.0.0", 1)[1].split('data-label="Downloads">', 1)[1].split("<", 1)[0]
    assert downloads_cell == "1", "download counts per version"
    assert (await portal.post("/admin/releases/cep/2.0.0/yank")).status == 303

    trail = await entries(db, object_type="release")
    assert [e.action for e in reversed(trail)] == ["release.published", "release.rollout_changed", "release.yanked"]
    assert all(e.actor_id == admin_user.id for e in trail)
    [floor] = await entries(db, action="release.min_supported")
    assert floor.actor_id == admin_user.id and floor.details["to"] == "2.0.0"


@pytest.mark.parametrize("package, version, field, message", [
    (zxp("1.0.0", bundle_id="com.other.panel"), "1.0.0", "package", "bundle id"),
    (b"not a zip at all", "1.0.0", "package", "not a valid ZXP"),
    (zxp("1.0.0"), "1.0", "version", "is not a version"),
])
async def test_a_refused_publish_shows_the_reason_beside_the_field(client, admin, package, version, field, message):
    portal, _ = admin
    resp = await portal.client.post("/admin/releases", allow_redirects=False,
                                    data=upload_form(await portal.csrf(), package, version=version))
    text = await resp.text()
    assert resp.status == 422
    field_html = text.split(f'name="{field}"', 1)[1].split("</div>", 2)
    assert message in "".join(field_html[:2])
    assert await client.server.app[RELEASES].list() == []


async def test_a_lower_version_is_refused_on_the_page_too(client, admin):
    portal, _ = admin
    await publish(client.server.app, "1.5.0")
    resp = await portal.client.post("/admin/releases", allow_redirects=False,
                                    data=upload_form(await portal.csrf(), zxp("1.4.0"), version="1.4.0"))
    assert resp.status == 409 and "not higher than 1.5.0" in await resp.text()


async def test_non_admins_and_forged_forms_change_nothing(client, db, visitor, customer, admin):
    user_portal, _ = customer
    admin_portal, _ = admin
    app = client.server.app
    await publish(app, "1.0.0")
    for portal in (visitor, user_portal):
        assert (await portal.get("/admin/releases")).status == 403
        resp = await portal.client.post("/admin/releases", allow_redirects=False,
                                        data=upload_form(await portal.csrf(), zxp("9.0.0"), version="9.0.0"))
        assert resp.status == 403
        assert (await portal.post("/admin/releases/cep/1.0.0/yank")).status == 403
        assert (await portal.post("/admin/releases/min-supported", {"product": "cep", "version": "1.0.0"})).status == 403
    forged = await admin_portal.post("/admin/releases/cep/1.0.0/yank", csrf=False)
    assert forged.status == 403 and "Form expired" in await forged.text()
    [release] = await app[RELEASES].list()
    assert release.version == "1.0.0" and release.yanked_at is None
    assert await app[RELEASES].min_versions() == {}
    assert [e.action for e in await entries(db, object_type="release")] == ["release.published"], "only the setup's publish"


async def test_the_admin_page_shows_public_keys_and_never_the_private_one(client, admin):
    portal, _ = admin
    text = await portal.page("/admin/releases")
    [key] = client.server.app[RELEASES].keys
    assert key.public_b64 in text and key.kid in text
    assert client.server.app[RELEASES].settings.update_signing_key not in text


# --- in a real browser ------------------------------------------------------------------------------------


async def test_the_downloads_page_in_chromium_at_desktop_and_phone_widths(aiohttp_server, settings):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings.replace(public_url=base))
    await aiohttp_server(app, port=port)
    await publish(app, "1.0.0")
    latest = await publish(app, "1.1.0", notes_md="- Seamless **loops**")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
                context = await browser.new_context(base_url=base, viewport=viewport, accept_downloads=True)
                page = await context.new_page()
                problems: list[str] = []
                page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
                page.on("pageerror", lambda exc: problems.append(str(exc)))
                await page.goto("/downloads")
                await expect(page.get_by_role("heading", name="Premiere Pro panel (CEP) 1.1.0")).to_be_visible()
                await expect(page.get_by_text(latest.sha256)).to_be_visible()
                await expect(page.locator(".notes strong")).to_have_text("loops")
                overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px"
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / f"downloads-{name}.png"), full_page=True)
                async with page.expect_download() as info:
                    await page.get_by_role("link", name=f"Download {latest.filename}").click()
                download = await info.value
                assert download.suggested_filename == latest.filename
                with open(await download.path(), "rb") as f:
                    assert f.read() == await app[RELEASES].storage.read(latest.storage_key)
                assert problems == []
                await context.close()
        finally:
            await browser.close()


async def test_the_panels_update_check_in_chromium_verifies_the_servers_signature(aiohttp_server, settings, project_root):
    """core/updates.js in a real browser (WebCrypto Ed25519, no Node) against the Python server's
    manifest: the signature made in Python verifies in the panel's code (WebCrypto, then TweetNaCl.js), and only with the pinned key."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings.replace(public_url=base))
    await aiohttp_server(app, port=port)
    await publish(app, "1.1.0", notes_md="- Seamless **loops**", rollout=100)
    [key] = app[RELEASES].keys

    script = """async ([base, keys, useNacl]) => {
        const store = {}; const storage = {getItem: (k) => (k in store ? store[k] : null), setItem: (k, v) => { store[k] = String(v); }};
        const verify = useNacl ? SFX.Updates.naclVerifier(window.nacl) : undefined;
        const result = await SFX.Updates.check({baseUrl: base, product: "cep", channel: "stable", installedVersion: "1.0.0",
                                               fetch: window.fetch.bind(window), storage, publicKeys: keys, verify});
        return {offer: result.offer, reason: result.reason || null, serial: store["sfx.updates.serial:cep:stable"] || null,
                node: typeof require !== "undefined"};
    }"""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            # The portal's CSP forbids injected scripts; the panel has its own page, so it is bypassed here.
            context = await browser.new_context(base_url=base, bypass_csp=True, viewport={"width": 390, "height": 844})
            page = await context.new_page()
            await page.goto("/pricing")
            await page.add_script_tag(path=str(project_root / "cep-panel" / "core" / "vendor" / "nacl.js"))
            await page.add_script_tag(path=str(project_root / "cep-panel" / "core" / "updates.js"))
            pinned = [{"kid": key.kid, "key": key.public_b64}]
            [stranger] = load_keys(generate()[0])
            for use_nacl in (False, True):  # WebCrypto Ed25519, then the vendored TweetNaCl.js
                accepted = await page.evaluate(script, [base, pinned, use_nacl])
                assert accepted["node"] is False, "the browser path, not Node's crypto"
                assert accepted["offer"]["version"] == "1.1.0" and "<strong>loops</strong>" in accepted["offer"]["notes_html"]
                assert accepted["offer"]["url"] == f"{base}/downloads/cep/1.1.0" and accepted["serial"] is not None
                refused = await page.evaluate(script, [base, [{"kid": key.kid, "key": stranger.public_b64}], use_nacl])
                assert refused["offer"] is None and refused["reason"] == "bad_signature"
            await context.close()
        finally:
            await browser.close()
