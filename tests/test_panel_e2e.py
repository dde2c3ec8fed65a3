"""The Premiere panel end to end in its CEP shell: the real panel files in headless Chromium, the real
server (auth, credits, generation, key bank) with the ElevenLabs simulator behind it, and the CEP
harness that plays Premiere. tests/test_panel_shells.py runs the shared UI in both shells."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import expect

# The fixtures are imported so pytest finds them here.
from panel_support import (LIGHT, browser, decode_call, editor, open_panel, remaining, settled, shot,  # noqa: F401
                           stack, wav_info)
from server.appkeys import REDIS
from server.credits import service as credits
from server.credits.ratelimit import RateLimiter
from server.web.errors import TooManyRequests


# --- scenarios -------------------------------------------------------------------------------------

async def test_sign_in_generate_see_the_waveform_and_insert_a_48k_wav_at_the_playhead(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await expect(page.locator("#signin-device")).to_have_text("edit-bay-3")
    await shot(page, "panel-signin.png")
    await panel.sign_in(stack, user)
    await expect(page.locator("#acct-credits")).to_have_text("10 credits")
    await expect(page.locator("#acct-plan")).to_have_text("Pro")

    await panel.describe("Heavy wooden door slams shut", 2)
    await expect(page.locator("#sfx-cost")).to_have_text("Costs 1 credit · 10 left")
    await page.locator("#sfx-prompt").press("Enter")
    result = page.locator("#sfx-results .result").first
    await expect(result).to_have_attribute("data-ready", "true")
    await expect(page.locator("#acct-credits")).to_have_text("9 credits")
    await expect(page.locator("#sfx-progress")).to_be_hidden()

    # The waveform is drawn: many painted pixels on the canvas.
    painted = await result.locator("canvas").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert painted > 500

    # The device is registered under the machine's name.
    devices = await (await stack.client.get("/v1/devices", headers=user.headers)).json()
    assert "edit-bay-3" in [d["name"] for d in devices["devices"]]

    await result.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text("Placed on A2 at 00:00:12:12.")
    [call] = await panel.calls("importAndPlace")
    name, args = decode_call(call["script"])
    assert name == "importAndPlace"
    path = Path(args.pop("path"))
    duration = args.pop("duration")
    assert args == {"bin": "AI SFX", "track": "auto"}
    # Beside the saved project, under the server's readable name; a real 48 kHz WAV of the asked length.
    assert path.parent == panel.home / "Projects" / "Film" / "AI SFX"
    assert re.fullmatch(r"heavy-wooden-door-slams-shut-[0-9a-f]{6}\.wav", path.name)
    rate, _, seconds = wav_info(path.read_bytes())
    assert rate == 48000 and seconds == pytest.approx(2.0, abs=0.05)
    assert duration == pytest.approx(seconds, abs=0.002), "the host is told the file's true length"
    assert await remaining(db, user) == 9

    await shot(page, "panel-dark.png")
    await page.set_viewport_size({"width": 240, "height": 520})  # the manifest's minimum size
    await shot(page, "panel-dark-narrow.png")
    await page.set_viewport_size({"width": 340, "height": 720})
    await page.evaluate("window.__sfxHarness.setTheme(%s, 12)" % json.dumps(LIGHT))
    await expect(page.locator("html")).to_have_attribute("data-theme", "light")
    await expect(page.locator("html")).to_have_css("font-size", "12px")
    await shot(page, "panel-light.png")


async def test_out_of_credits_shows_the_upgrade_prompt_that_opens_the_portal(stack, db, open_panel):
    user = await editor(stack, db, 1)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    await panel.describe("Thunder rolls across a valley", 25)
    await expect(page.locator("#sfx-cost")).to_have_text("Needs 3 credits · 1 left")
    await page.click("#sfx-generate")
    banner = page.locator("#banner")
    await expect(banner).to_have_attribute("data-kind", "upgrade")
    await expect(page.locator("#banner-text")).to_have_text("Not enough credits (this needs 3 credits).")
    await expect(page.locator("#sfx-generate")).to_be_enabled()
    await shot(page, "panel-upgrade.png")
    await page.click("#banner-action")
    assert await page.evaluate("window.__sfxHarness.opened") == [stack.settings.upgrade_url]
    assert await remaining(db, user) == 1


async def test_an_empty_balance_shows_the_upgrade_prompt_as_soon_as_the_panel_opens(stack, db, open_panel):
    user = await editor(stack, db, 0)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    await expect(page.locator("#acct-credits")).to_have_text("0 credits")
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "upgrade")
    await expect(page.locator("#banner-text")).to_have_text("You're out of credits for this period.")
    await expect(page.locator("#acct-upgrade")).to_be_visible()
    # At 0 credits Generate is off (and says why) instead of sending a request bound to fail.
    await panel.describe("Wind through pines", 2)
    await expect(page.locator("#sfx-generate")).to_be_disabled()
    await expect(page.locator("#sfx-generate")).to_have_attribute("title", "You're out of credits")
    await page.click("#acct-upgrade")
    # Before any 402 has named the upgrade page, the panel opens the pricing page of its own server.
    assert await page.evaluate("window.__sfxHarness.opened") == [stack.url + "/pricing"]


async def test_a_rate_limit_shows_a_countdown_from_retry_after(stack, db, open_panel):
    user = await editor(stack, db, 10, plan="free")
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    # Use up the plan's per-minute allowance the way the server counts it.
    limiter = RateLimiter(stack.app[REDIS], stack.settings)
    plan = await credits.plan_for(db, user.user_id)
    for _ in range(500):
        try:
            await limiter.hit(user.user_id, plan)
        except TooManyRequests:
            break
    await panel.describe("Crowd cheers in a stadium", 2)
    await page.click("#sfx-generate")
    banner = page.locator("#banner")
    await expect(banner).to_have_attribute("data-kind", "wait")
    await expect(page.locator("#banner-text")).to_have_text(re.compile(r"^Too many requests\. Try again in \d+ s\.$"))
    first = int(await banner.get_attribute("data-seconds"))
    assert first >= 2
    await expect(page.locator("#sfx-generate")).to_be_disabled()
    await shot(page, "panel-rate-limited.png")
    await expect(banner).to_have_attribute("data-seconds", str(first - 1), timeout=3000)
    assert await remaining(db, user) == 10


async def test_a_server_that_is_down_shows_offline_and_never_leaves_the_panel_generating(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    await stack.server.close()
    await panel.describe("Footsteps on gravel", 2)
    await page.click("#sfx-generate")
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "offline")
    await expect(page.locator("#banner-text")).to_have_text("You're offline or the server can't be reached.")
    await expect(page.locator("#banner-action")).to_have_text("Retry")
    await expect(page.locator("#sfx-progress")).to_be_hidden()
    await expect(page.locator("#sfx-generate")).to_be_enabled()
    await shot(page, "panel-offline.png")
    await page.click("#banner-action")
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "offline")
    await expect(page.locator("#sfx-generate")).to_be_enabled()


async def test_retry_after_a_lost_answer_reuses_the_idempotency_key_and_charges_once(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    keys: list[str] = []

    async def lose_first_answer(route):
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            await route.fetch()  # the server generates and charges...
            await route.abort("connectionreset")  # ...but the answer never arrives
        else:
            await route.continue_()

    await page.route("**/v1/sfx", lose_first_answer)
    await panel.describe("Car door closes", 2)
    await page.click("#sfx-generate")
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "offline")
    await page.click("#banner-action")
    await expect(page.locator("#sfx-results .result").first).to_have_attribute("data-ready", "true")
    assert len(keys) == 2 and keys[0] == keys[1]
    uuid.UUID(keys[0])
    assert await remaining(db, user) == 9
    assert await db.fetchval("SELECT count(*) FROM generations WHERE user_id = $1", user.user_id) == 1
    await expect(page.locator("#acct-credits")).to_have_text("9 credits")


async def test_cancel_stops_the_generation_and_charges_nothing(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    stack.sim.inject(stack.secret, "slow", delay=4, times=1)
    await panel.describe("Helicopter passes overhead", 3)
    await page.click("#sfx-generate")
    await expect(page.locator("#sfx-progress")).to_be_visible()
    await page.wait_for_timeout(300)
    await page.keyboard.press("Escape")
    await expect(page.locator("#toast-text")).to_have_text("Cancelled. Nothing was charged.")
    await expect(page.locator("#sfx-progress")).to_be_hidden()
    await expect(page.locator("#sfx-generate")).to_be_enabled()
    await settled(db)
    assert await remaining(db, user) == 10
    assert await db.fetchval("SELECT count(*) FROM generations WHERE user_id = $1 AND status = 'succeeded'", user.user_id) == 0
    await expect(page.locator("#acct-credits")).to_have_text("10 credits")
    assert await page.locator("#sfx-results .result").count() == 0


async def test_history_reinserts_from_the_local_copy_or_downloads_again_without_a_charge(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    await panel.describe("Old radio static", 1.5)
    await page.click("#sfx-generate")
    await expect(page.locator("#sfx-results .result").first).to_have_attribute("data-ready", "true")
    assert await remaining(db, user) == 9
    downloads: list[str] = []
    page.on("request", lambda r: downloads.append(r.url) if r.url.endswith("/audio") else None)

    await page.click("#tab-btn-history")
    item = page.locator("#history-list .history-item").first
    await expect(item.locator(".history-title")).to_have_text("Old radio static")
    await item.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text("Placed on A2 at 00:00:12:12.")
    assert downloads == []  # the local copy was used
    [local] = [p for p in panel.fs.written if p.suffix == ".wav"]
    assert decode_call((await panel.calls("importAndPlace"))[-1]["script"])[1]["path"] == str(local)

    local.unlink()
    await item.locator("[data-act=insert]").click()
    await page.wait_for_function("window.__sfxHarness.calls.filter(c => c.name === 'importAndPlace').length === 2")
    assert len(downloads) == 1
    path = Path(decode_call((await panel.calls("importAndPlace"))[-1]["script"])[1]["path"])
    assert path.exists() and wav_info(path.read_bytes())[0] == 48000
    assert await remaining(db, user) == 9
    await shot(page, "panel-history.png")

    await item.locator("[data-act=delete]").click()
    await item.locator("[data-act=delete]").click()
    await expect(page.locator("#history-list .history-item")).to_have_count(0)
    listed = await (await stack.client.get("/v1/generations", headers=user.headers)).json()
    assert listed["items"] == []


async def test_a_voice_over_is_generated_from_a_listed_voice_with_its_cost_shown(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    await page.click("#tab-btn-voice")
    await expect(page.locator("#voice-voice option").first).not_to_have_text("Loading voices…")
    assert await page.locator("#voice-voice option").count() > 1
    await page.fill("#voice-text", "Previously, on the show.")
    await expect(page.locator("#voice-count")).to_have_text("24 / 5000")
    await expect(page.locator("#voice-cost")).to_have_text("Costs 1 credit · 10 left")
    await page.locator("#voice-text").press("Control+Enter")
    result = page.locator("#voice-results .result").first
    await expect(result).to_have_attribute("data-ready", "true")
    path = Path(await result.get_attribute("data-path"))
    rate, channels, seconds = wav_info(path.read_bytes())
    assert rate == 48000 and seconds > 0.5
    assert await remaining(db, user) == 9
    await shot(page, "panel-voice-dark.png")

    # Settings list the active sequence's audio tracks to choose from.
    await page.click("#btn-settings")
    await expect(page.locator("#set-track option")).to_have_text(["First free audio track", "A1", "A2"])
    await expect(page.locator("#settings-user")).to_have_text(user.email)
    # The updater checks this server's signed manifest: nothing newer than 0.1.0 is published.
    await page.click("#settings-check-updates")
    await expect(page.locator("#settings-update-status")).to_have_text("You have the latest version.")
    await shot(page, "panel-settings.png")


async def test_markers_drag_and_drop_host_refusals_and_a_new_variation(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel(markers=[{"time": 42.0, "end": 42.0, "name": "Door", "comments": "Wooden door creaks open"}])
    page = panel.page
    await panel.sign_in(stack, user)
    keys: list[str] = []

    async def note_key(route):
        keys.append(route.request.headers["idempotency-key"])
        await route.continue_()

    await page.route("**/v1/sfx", note_key)

    # A marker fills the prompt from its comment and becomes the insert time.
    await page.locator("#sfx-marker").focus()
    await expect(page.locator("#sfx-marker option")).to_have_count(2)
    await page.select_option("#sfx-marker", index=1)
    await expect(page.locator("#sfx-prompt")).to_have_value("Wooden door creaks open")
    await expect(page.locator("#sfx-marker-text")).to_have_text("Inserts at marker 00:00:42:00 (Door)")
    await panel.set_range("#sfx-duration", 1)
    await page.click("#sfx-generate")
    result = page.locator("#sfx-results .result").first
    await expect(result).to_have_attribute("data-ready", "true")
    path = await result.get_attribute("data-path")

    await result.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text("Placed on A2 at 00:00:42:00.")
    args = decode_call((await panel.calls("importAndPlace"))[-1]["script"])[1]
    assert args["time"] == 42.0 and args["path"] == path

    # Dragging a result hands Premiere the file's path.
    dragged = await result.evaluate(
        """el => { const dt = new DataTransfer();
                   el.dispatchEvent(new DragEvent('dragstart', {dataTransfer: dt, bubbles: true}));
                   return dt.getData('com.adobe.cep.dnd.file.0'); }""")
    assert dragged == path

    # No free track: the panel says so and offers the bin instead.
    await page.evaluate("""window.__sfxHarness.replies.importAndPlace = {ok: false, error: {code: 'no_free_track',
        message: 'Every unlocked audio track has a clip at the playhead. Free a track, or import to the bin instead.'}}""")
    await result.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text(re.compile("^Every unlocked audio track has a clip"))
    await page.click("#toast-action")
    await expect(page.locator("#toast-text")).to_have_text("Imported into the bin \u201cAI SFX\u201d.")
    assert decode_call((await panel.calls("importToBin"))[-1]["script"])[1] == {"path": path, "bin": "AI SFX"}

    # No active sequence: imported into the bin only, and the editor is told.
    await page.evaluate("""window.__sfxHarness.replies.importAndPlace = {ok: true, result: {placed: false,
        reason: 'no_sequence', message: 'No active sequence: "x.wav" was imported into the bin "AI SFX".', bin: 'AI SFX', item: 'x.wav'}}""")
    await result.locator("[data-act=insert]").click()
    await expect(page.locator("#toast-text")).to_have_text('No active sequence: "x.wav" was imported into the bin "AI SFX".')

    # A new variation of the same request is a new request: a new key, a second charge.
    await result.locator("[data-act=again]").click()
    await expect(page.locator("#sfx-results .result")).to_have_count(2)
    await expect(page.locator("#sfx-results .result").first).to_have_attribute("data-ready", "true")
    assert len(keys) == 2 and keys[0] != keys[1]
    assert await remaining(db, user) == 8


async def test_a_signed_out_device_goes_back_to_sign_in_without_a_charge(stack, db, open_panel):
    user = await editor(stack, db, 10)
    panel = await open_panel()
    page = panel.page
    await panel.sign_in(stack, user)
    devices = (await (await stack.client.get("/v1/devices", headers=user.headers)).json())["devices"]
    [panel_device] = [d for d in devices if d["name"] == "edit-bay-3"]
    revoked = await stack.client.delete(f"/v1/devices/{panel_device['id']}", headers=user.headers)
    assert revoked.status == 204
    await panel.describe("Fire crackles", 2)
    await page.click("#sfx-generate")
    await expect(page.locator("#view-signin")).to_be_visible()
    await expect(page.locator("#signin-error")).to_have_text("Your session ended. Please sign in again.")
    stored_file = panel.home / "Library" / "Application Support" / "SFX Studio" / "panel.json"
    for _ in range(50):  # the storage writes through in the background
        if "tokens" not in json.loads(stored_file.read_text()):
            break
        await page.wait_for_timeout(100)
    assert "tokens" not in json.loads(stored_file.read_text()), "the ended session's tokens are gone from disk"
    assert await page.evaluate("localStorage.length") == 0
    assert await remaining(db, user) == 10
    # Signing in again works and lands back in the panel.
    await page.fill("#signin-email", user.email)
    await page.fill("#signin-password", user.password)
    await page.click("#signin-submit")
    await expect(page.locator("#acct-credits")).to_have_text("10 credits")


async def test_keys_work_outside_text_fields_the_browser_menu_is_gone_and_files_go_to_cep_documents(stack, db, open_panel,
                                                                                                   tmp_path):
    """CEP defects: Premiere keeps keys unless the panel registers interest; the page's own context menu
    (Back, Forward, View Source) showed; an unsaved project's files went to ~/Documents, not the
    Documents folder CEP reports (a redirected or OneDrive one on Windows)."""
    user = await editor(stack, db, 10)
    documents = tmp_path / "home" / "OneDrive" / "Documents"
    unsaved = {"project": {"name": "Untitled", "path": ""},
               "sequence": {"id": "seq-1", "name": "Main edit", "playhead": 3, "frameRate": 25,
                            "audioTracks": [{"index": 0, "name": "A1", "locked": False, "clips": 0}]}}
    panel = await open_panel(config={"documents": str(documents), "context": unsaved})
    page = panel.page
    interest = await page.evaluate("window.__sfxHarness.keyInterest")
    for key in ({"keyCode": 27}, {"keyCode": 53}, {"keyCode": 13, "ctrlKey": True}, {"keyCode": 36, "metaKey": True}):
        assert key in interest

    menu = """sel => { const e = new MouseEvent('contextmenu', {bubbles: true, cancelable: true});
                      document.querySelector(sel).dispatchEvent(e); return e.defaultPrevented; }"""
    assert await page.evaluate(menu, "#view-signin h1") is True
    assert await page.evaluate(menu, "#signin-email") is False, "text fields keep cut, copy and paste"

    await panel.sign_in(stack, user)
    await panel.describe("Paper rustles", 1)
    await page.locator("#sfx-prompt").evaluate("el => el.blur()")
    assert await page.evaluate("document.activeElement === document.body")
    await page.keyboard.press("Control+Enter")
    result = page.locator("#sfx-results .result").first
    await expect(result).to_have_attribute("data-ready", "true")
    path = Path(await result.get_attribute("data-path"))
    assert path.parent == documents / "AI SFX"

    await page.click("#btn-settings")
    await expect(page.locator("#set-folder-hint")).to_have_text(
        f"Empty: next to the saved project, else {documents / 'AI SFX'}.")

