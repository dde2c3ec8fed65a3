"""The shared panel UI in both of its shells, the CEP page and the UXP plugin, driven the same way in
headless Chromium against the real server. In the UXP shell Premiere is the simulated premierepro
module, so an insert is checked on the simulated timeline itself; in the CEP shell it is checked in
the ExtendScript calls the panel made (the host side of CEP has its own contract tests in Node)."""

from __future__ import annotations

import json
import re
from itertools import combinations

import pytest
from playwright.async_api import expect

# The fixtures are imported so pytest finds them here.
from panel_support import (PANEL, Panel, boxes, browser, decode_call, editor, open_panel,  # noqa: F401
                           remaining, shot, stack)
from server.keybank import KEYBANK

SHELLS = ["cep", "uxp"]
MARKER = {"time": 42.0, "end": 42.0, "name": "Door", "comments": "Wooden door creaks open"}


def minimum_size() -> dict:
    """The manifests' minimum panel size (both builds declare the same one)."""
    xml = (PANEL / "CSXS" / "manifest.xml").read_text()
    cep = re.search(r"<MinSize>\s*<Height>(\d+)</Height>\s*<Width>(\d+)</Width>", xml)
    uxp = json.loads((PANEL / "uxp" / "manifest.json").read_text())["entrypoints"][0]["minimumSize"]
    assert cep and {"width": int(cep[2]), "height": int(cep[1])} == uxp
    return uxp


async def placed(panel: Panel, index: int) -> list:
    """What the last insert asked for (CEP) or what landed on the timeline (UXP)."""
    if panel.shell == "uxp":
        return await panel.page.evaluate(f"window.__sfxHarness.clips({index})")
    return [decode_call(c["script"])[1] for c in await panel.calls("importAndPlace")]


async def stored_tokens(panel: Panel) -> tuple[dict | None, dict]:
    """(tokens in the shell's token store, the plain settings document)."""
    if panel.shell == "uxp":
        secure = await panel.page.evaluate("window.__sfxHarness.secure['sfx.tokens'] || null")
        plain = panel.home / "plugin-data" / "panel.json"
        doc = json.loads(plain.read_text()) if plain.exists() else {}
        return (json.loads(secure)["tokens"] if secure else None), doc
    file = panel.home / "Library" / "Application Support" / "SFX Studio" / "panel.json"
    doc = json.loads(file.read_text()) if file.exists() else {}
    return doc.get("tokens"), doc


@pytest.mark.parametrize("shell", SHELLS)
async def test_sign_in_generate_and_insert_at_the_playhead_at_a_marker_and_again_from_history(stack, db, open_panel, shell):
    user = await editor(stack, db, 10)
    panel = await open_panel(shell=shell, markers=[MARKER])
    page = panel.page
    await panel.sign_in(stack, user)
    await expect(page.locator("#acct-credits")).to_have_text("10 credits")

    # Signed in for good: the refresh token is in the shell's token store, never in the settings file.
    for _ in range(50):  # the storage writes through in the background
        tokens, doc = await stored_tokens(panel)
        if tokens:
            break
        await page.wait_for_timeout(100)
    assert tokens and tokens["refresh_token"]
    if shell == "uxp":
        assert "tokens" not in doc
    assert await page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('sfx.'))") == []

    # At the playhead.
    await panel.describe("Heavy wooden door slams shut", 2)
    await page.click("#sfx-generate")
    first = page.locator("#sfx-results .result").first
    await expect(first).to_have_attribute("data-ready", "true")
    await expect(first.locator("[data-act=insert]")).to_have_text("Insert at playhead")
    first_path = await first.get_attribute("data-path")
    first = page.locator(f'#sfx-results .result[data-path="{first_path}"]')  # stays on this one as more arrive
    # The waveform is drawn from the WAV's own samples, in both shells (UXP has no Web Audio to decode).
    assert int(await first.locator("canvas").get_attribute("data-peaks")) >= 32
    await first.locator(".play").click()
    await expect(first).to_have_class(re.compile(r"\bplaying\b"))
    if shell == "uxp":  # played in Premiere's Source Monitor
        assert await page.evaluate("window.__sfxHarness.world.sourceMonitor") == {"opened": first_path, "playing": True}
    await first.locator(".play").click()
    await expect(first).not_to_have_class(re.compile(r"\bplaying\b"))
    if shell == "uxp":
        await page.wait_for_function("!window.__sfxHarness.world.sourceMonitor.playing")
    await first.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text("Placed on A2 at 00:00:12:12.")
    if shell == "uxp":
        assert [c[0] for c in await placed(panel, 1)] == [12.5]
        assert (await placed(panel, 1))[0][3] == first_path
    else:
        assert "time" not in (await placed(panel, 1))[-1]

    # At a marker: it fills the prompt and the results of this form go to its time.
    await page.locator("#sfx-marker").focus()
    await expect(page.locator("#sfx-marker option")).to_have_count(2)
    await page.select_option("#sfx-marker", index=1)
    await expect(page.locator("#sfx-prompt")).to_have_value("Wooden door creaks open")
    await expect(page.locator("#sfx-marker-text")).to_have_text("Inserts at marker 00:00:42:00 (Door)")
    await panel.set_range("#sfx-duration", 1)
    await page.click("#sfx-generate")
    await expect(page.locator("#sfx-results .result")).to_have_count(2)
    marked = page.locator("#sfx-results .result").first
    await expect(marked).to_have_attribute("data-ready", "true")
    await expect(marked.locator("[data-act=insert]")).to_have_text("Insert at marker 00:00:42:00")
    await marked.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text("Placed on A2 at 00:00:42:00.")
    if shell == "uxp":
        assert [c[0] for c in await placed(panel, 1)] == [12.5, 42.0]
    else:
        assert (await placed(panel, 1))[-1]["time"] == 42.0
    # The older result still goes to the playhead.
    await expect(first.locator("[data-act=insert]")).to_have_text("Insert at playhead")

    # A voice-over made while the marker chip is still showing goes to the playhead, not the marker.
    await page.click("#tab-btn-voice")
    await expect(page.locator("#voice-voice option").first).not_to_have_text("Loading voices…")
    await page.fill("#voice-text", "Previously, on the show.")
    await page.click("#voice-generate")
    voice = page.locator("#voice-results .result").first
    await expect(voice).to_have_attribute("data-ready", "true")
    await expect(voice.locator("[data-act=insert]")).to_have_text("Insert at playhead")
    await voice.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text(re.compile(r"^Placed on A\d at 00:00:12:12\.$"))

    # History re-inserts from the local copy, at the playhead, without downloading or charging.
    downloads: list[str] = []
    page.on("request", lambda r: downloads.append(r.url) if r.url.endswith("/audio") else None)
    await page.click("#tab-btn-history")
    item = page.locator("#history-list .history-item").first
    await expect(item.locator(".history-title")).to_have_text("Previously, on the show.")
    await item.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text(re.compile(r"^Placed on A\d at 00:00:12:12\.$"))
    assert downloads == []
    if shell == "uxp":
        starts = [c[0] for i in range(4) for c in await placed(panel, i)]
        assert starts.count(12.5) == 3  # the first SFX, the voice-over and its re-insert, each on a free track
        assert starts.count(42.0) == 1
    else:
        assert "time" not in (await placed(panel, 0))[-1]
    assert await remaining(db, user) == 7

    # Dragging a result to the timeline imports it into the chosen bin first, and only once.
    await page.click("#tab-btn-sfx")
    await page.click("#btn-settings")
    await page.fill("#set-bin", "Drops")
    await page.click("#settings-form button[type=submit]")
    await expect(page.locator("#view-main")).to_be_visible()
    drag = """el => { const dt = new DataTransfer();
                      el.dispatchEvent(new DragEvent('dragstart', {dataTransfer: dt, bubbles: true}));
                      return dt.getData('com.adobe.cep.dnd.file.0'); }"""
    assert await first.evaluate(drag) == first_path
    if shell == "uxp":
        await page.wait_for_function("p => (window.__sfxHarness.bin('Drops') || []).includes(p)", arg=first_path)
        await first.evaluate(drag)
        await page.wait_for_timeout(300)
        assert await page.evaluate("window.__sfxHarness.bin('Drops')") == [first_path]
    else:
        await page.wait_for_function("window.__sfxHarness.calls.some(c => c.name === 'importToBin')")
        assert decode_call((await panel.calls("importToBin"))[-1]["script"])[1] == {"path": first_path, "bin": "Drops"}
    await shot(page, f"panel-{shell}-flow.png")


@pytest.mark.parametrize("shell", SHELLS)
async def test_out_of_credits_no_key_offline_and_outdated_panel(stack, db, open_panel, shell):
    user = await editor(stack, db, 1)
    panel = await open_panel(shell=shell)
    page = panel.page
    await panel.sign_in(stack, user)
    banner = page.locator("#banner")

    # 402: the server refuses a request that needs more credits than are left.
    await panel.describe("Thunder rolls across a valley", 25)
    await expect(page.locator("#sfx-cost")).to_have_text("Needs 3 credits · 1 left")
    await page.click("#sfx-generate")
    await expect(banner).to_have_attribute("data-kind", "upgrade")
    await expect(page.locator("#banner-text")).to_have_text("Not enough credits (this needs 3 credits).")
    assert await remaining(db, user) == 1

    # Every ElevenLabs key disabled: the server's 503 no_active_key, which is no reason to retry.
    bank = stack.app[KEYBANK]
    for key in await bank.list_keys("elevenlabs"):
        await bank.disable(key.id)
    await panel.describe("Footsteps on gravel", 2)
    await page.click("#sfx-generate")
    await expect(page.locator("#banner-text")).to_have_text(
        "The sound service is unavailable right now. Nothing was charged. Please try again later.")
    await expect(banner).to_have_attribute("data-kind", "error")
    await expect(page.locator("#sfx-generate")).to_be_enabled()  # no countdown, no automatic retry
    assert await remaining(db, user) == 1
    await shot(page, f"panel-{shell}-no-key.png")

    # Offline: the server is gone.
    await stack.server.close()
    await page.click("#sfx-generate")
    await expect(banner).to_have_attribute("data-kind", "offline")
    await expect(page.locator("#banner-text")).to_have_text("You're offline or the server can't be reached.")
    await expect(page.locator("#sfx-generate")).to_be_enabled()
    await expect(page.locator("#sfx-progress")).to_be_hidden()
    await shot(page, f"panel-{shell}-offline.png")

    # 426: this panel is older than the server supports. The update offer takes over and Generate is off.
    download = stack.url + "/downloads/sfx-studio-panel-9.0.0." + ("ccx" if shell == "uxp" else "zxp")

    async def outdated(route):
        await route.fulfill(status=426, headers={"Content-Type": "application/json"}, body=json.dumps({"error": {
            "code": "panel_outdated", "message": "This panel is too old.",
            "details": {"product": shell, "version": "0.1.0", "min_supported_version": "9.0.0", "download_url": download}}}))

    await page.route("**/v1/**", outdated)
    await page.click("#banner-action")  # Retry
    offer = page.locator("#update-offer")
    await expect(offer).to_be_visible()
    await expect(offer).to_have_attribute("data-mandatory", "true")
    await expect(page.locator("#update-title")).to_have_text("SFX Studio 9.0.0 is required")
    await expect(page.locator("#update-message")).to_have_text(
        "This panel is too old for the server. Install the update to keep generating.")
    await expect(page.locator("#update-later")).to_be_hidden()
    await expect(page.locator("#sfx-generate")).to_be_disabled()
    await expect(page.locator("#sfx-generate")).to_have_attribute("title", "Install the update to keep generating")
    await shot(page, f"panel-{shell}-outdated.png")
    await page.click("#update-install")
    # No in-panel installer here: the package's download opens, and the editor is told what to do.
    await expect(page.locator("#update-message")).to_have_text(
        "Opening the download: open the file to install it, then restart Premiere Pro.")
    assert await page.evaluate("window.__sfxHarness.opened") == [download]
    # Every request carries the build's version and product.
    async with page.expect_request("**/v1/generations*") as request:
        await page.click("#tab-btn-history")
    headers = (await request.value).headers
    assert headers["x-panel-product"] == shell and headers["x-panel-version"] == "0.1.0"


@pytest.mark.parametrize("shell", SHELLS)
async def test_nothing_overlaps_at_320x600_and_at_the_manifest_minimum_size(stack, db, open_panel, shell):
    user = await editor(stack, db, 10)
    panel = await open_panel(shell=shell, viewport={"width": 320, "height": 600})
    page = panel.page
    await panel.sign_in(stack, user)
    await panel.describe("Glass shatters on a tiled floor", 1)
    await page.click("#sfx-generate")
    result = page.locator("#sfx-results .result").first
    await expect(result).to_have_attribute("data-ready", "true")
    await expect(page.locator("#toast")).to_be_visible()
    chrome = {"account": "#account", "banner": "#banner", "update": "#update-offer", "tabs": ".tabs",
              "tab": "#tab-sfx", "toast": "#toast"}

    for size in ({"width": 320, "height": 600}, minimum_size()):
        await page.set_viewport_size(size)
        await shot(page, f"panel-{shell}-{size['width']}x{size['height']}.png")
        found = await boxes(page, chrome)
        assert {"account", "tabs", "tab", "toast"} <= found.keys()
        for a, b in combinations(found.values(), 2):
            assert not a.overlaps(b), f"{a.name} overlaps {b.name} at {size}"
        for box in found.values():
            assert box.inside(size["width"], size["height"]), f"{box.name} is off-screen at {size}"
        assert found["tab"].height >= 100, "the form area keeps room to work in"
        # The newest result and Generate are inside the scrolling tab area, so the toast never covers them.
        for selector in ("#sfx-results .result", "#sfx-generate"):
            await page.locator(selector).first.scroll_into_view_if_needed()
            inner = (await boxes(page, {"x": selector}))["x"]
            tab = (await boxes(page, {"tab": "#tab-sfx"}))["tab"]
            assert tab.y - 0.5 <= inner.y and inner.y + inner.height <= tab.y + tab.height + 0.5, f"{selector} at {size}"
            assert not inner.overlaps((await boxes(page, {"toast": "#toast"}))["toast"])

    # Right after generating at 320x600 the new result is in view, not below the fold.
    await page.set_viewport_size({"width": 320, "height": 600})
    await panel.describe("Glass shatters again", 1)
    await page.locator("#tab-sfx").evaluate("el => el.scrollTop = 0")
    # Progress says what is happening, phase by phase, not only a seconds counter.
    await page.evaluate("""() => { window.__phases = [];
        new MutationObserver(() => { const p = document.getElementById('sfx-progress').getAttribute('data-phase');
                                     if (p && window.__phases[window.__phases.length - 1] !== p) window.__phases.push(p); })
            .observe(document.getElementById('sfx-progress'), {attributes: true}); }""")
    await page.click("#sfx-generate")
    await expect(page.locator("#sfx-results .result")).to_have_count(2)
    newest = page.locator("#sfx-results .result").first
    await expect(newest).to_have_attribute("data-ready", "true")
    await expect(newest).to_be_in_viewport()
    phases = await page.evaluate("window.__phases")
    assert phases[0] == "generating" and "downloading" in phases and phases[-1] == "saving", phases
