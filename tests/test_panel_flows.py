"""Panel flows over the real server, in both shells: the signed update offer (core/updates.js verifying
the manifest this server signs), the low-credit banner, take labels in history, the unverified-email
state, prompt help and spotting from markers (the LLM simulator behind the server), and the notice
shown while a generation waits for a free generator."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from playwright.async_api import expect

# The fixtures are imported so pytest finds them here.
from panel_support import browser, decode_call, editor, open_panel, remaining, settled, shot, stack  # noqa: F401
from helpers import DEFAULT_PASSWORD, unique_email
from releases_support import ccx, zxp
from server.appkeys import DB
from server.auth import verification
from server.credits import service as credits
from server.keybank import KEYBANK
from server.releases import RELEASES, Actor

SHELLS = ["cep", "uxp"]
OPERATOR = Actor(None, "panel-tests")

# CEP's installer is a Node module the shell loads from the extension folder; here it is played by a
# host-side stand-in that really downloads the package, so core/updates.js checks true bytes against
# the signed size and SHA-256. The real installer (UPIA, staging, swap) has its own Node tests.
FAKE_INSTALLER = """
window.__installer = {applied: [], installs: []};
window.__sfxExtraModules = {"/extension/cep/installer.js": {createInstaller: () => ({
  applyPending: () => { window.__installer.applied.push(!!document.getElementById("view-main")); return {swapped: false}; },
  download: async (url, opts) => {
    // The manifest names the server's PUBLIC_URL; the test server listens on another address.
    const bytes = new Uint8Array(await (await fetch(location.origin + new URL(url).pathname)).arrayBuffer());
    if (bytes.length > opts.maxBytes) throw new Error("over the cap");
    opts.onProgress(bytes.length / 2, bytes.length);
    await new Promise((r) => setTimeout(r, 300));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return {path: "/tmp/update.zxp", size: bytes.length, sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")};
  },
  install: async (path, offer) => { window.__installer.installs.push([path, offer.version, offer.sha256]); return {method: "upia"}; },
  discard: async () => {},
})}};
"""


@pytest.mark.parametrize("shell", SHELLS)
async def test_a_newer_signed_release_is_offered_and_a_mandatory_one_turns_generate_off(stack, db, open_panel, shell):
    releases = stack.app[RELEASES]
    package = zxp("0.2.0", padding=20000) if shell == "cep" else ccx("0.2.0")
    await releases.publish(package, product=shell, channel="stable", version="0.2.0", actor=OPERATOR,
                           notes_md="Faster **previews**\n\n<img src=x onerror=alert(1)>")
    user = await editor(stack, db, 10)
    panel = await open_panel(shell=shell)
    page = panel.page
    if shell == "cep":
        await page.add_init_script(script=FAKE_INSTALLER)
        await page.reload()
    await panel.sign_in(stack, user)

    # The manifest was verified against the pinned key before the offer showed.
    offer = page.locator("#update-offer")
    await expect(offer).to_be_visible()
    await expect(page.locator("#update-title")).to_have_text("SFX Studio 0.2.0 is available")
    await expect(page.locator("#update-size")).to_have_text(" · " + (f"{len(package)} B" if len(package) < 1024 else f"{int(len(package) / 1024 + 0.5)} KB"))
    # Shown as text: the quoted tag reads as the editor wrote it and is never markup.
    await expect(page.locator("#update-notes")).to_have_text("Faster previews <img src=x onerror=alert(1)>")
    assert await page.locator("#update-notes img, #update-notes strong").count() == 0, "notes are shown as text"
    await panel.describe("Rain on a tin roof", 2)
    await expect(page.locator("#sfx-generate")).to_be_enabled()  # an optional update blocks nothing
    await page.click("#update-later")
    await expect(offer).to_be_hidden()

    # From settings, on request.
    await page.click("#btn-settings")
    await page.click("#settings-check-updates")
    await expect(page.locator("#settings-update-status")).to_have_text("Version 0.2.0 is available.")
    await page.click("#settings-close")
    await expect(offer).to_be_visible()
    await page.click("#update-install")
    if shell == "cep":
        await expect(page.locator("#update-message")).to_have_text("Downloading… 50%")
        await expect(page.locator("#update-message")).to_have_text("Installed. Restart Premiere Pro to use 0.2.0.")
        installer = await page.evaluate("window.__installer")
        assert installer["installs"] == [["/tmp/update.zxp", "0.2.0", hashlib.sha256(package).hexdigest()]]
        assert installer["applied"] == [False], "a staged update is applied before the UI mounts"
    else:  # a UXP plugin cannot replace itself: the .ccx opens from its download link
        await expect(page.locator("#update-message")).to_have_text(
            "Opening the download: open the file to install it, then restart Premiere Pro.")
        [opened] = await page.evaluate("window.__sfxHarness.opened")
        assert opened == f"{stack.settings.public_url.rstrip('/')}/downloads/uxp/0.2.0"

    # The operator makes 0.2.0 the minimum: the next check makes the update mandatory.
    await releases.set_min_supported(shell, "0.2.0", actor=OPERATOR)
    await page.click("#btn-settings")
    await page.click("#settings-check-updates")
    await expect(page.locator("#settings-update-status")).to_have_text("Version 0.2.0 is available.")
    await page.click("#settings-close")
    await expect(offer).to_have_attribute("data-mandatory", "true")
    await expect(page.locator("#update-title")).to_have_text("SFX Studio 0.2.0 is required")
    await expect(page.locator("#update-message")).to_have_text(
        "This update is required: Generate is off until it is installed.")
    await expect(page.locator("#update-later")).to_be_hidden()
    await expect(page.locator("#sfx-generate")).to_be_disabled()
    await expect(page.locator("#sfx-generate")).to_have_attribute("title", "Install the update to keep generating")
    await shot(page, f"panel-{shell}-update-mandatory.png")


@pytest.mark.parametrize("shell", SHELLS)
async def test_low_credits_show_a_banner_with_the_top_up_link_and_takes_are_labelled(stack, db, open_panel, shell):
    user = await editor(stack, db, 10)
    panel = await open_panel(shell=shell)
    page = panel.page
    await panel.sign_in(stack, user)
    await expect(page.locator("#acct-credits")).to_have_text("10 credits")
    await expect(page.locator("#banner")).to_be_hidden()

    # Three takes of 30 s (3 credits each) leave 1 of 10: below 20%.
    await panel.describe("Rain on a tin roof", 30)
    await page.select_option("#sfx-variations", "3")
    await page.click("#sfx-generate")
    await expect(page.locator("#sfx-results .result[data-ready=true]")).to_have_count(3)
    await expect(page.locator("#sfx-results .result-sub")).to_have_text(
        [f"30.0 s · 3 credits · take {n} of 3" for n in (1, 2, 3)])
    banner = page.locator("#banner")
    await expect(banner).to_have_attribute("data-kind", "low")
    await expect(page.locator("#banner-text")).to_have_text("Only 1 credit left this period (90% used).")

    # Dismissed, it comes back when the panel next asks GET /v1/me (here: back online); its button
    # opens the top-up page.
    await page.click("#banner-close")
    await expect(banner).to_be_hidden()
    async with page.expect_response("**/v1/me"):
        await page.evaluate("window.dispatchEvent(new Event('online'))")
    await expect(page.locator("#banner-text")).to_have_text("Only 1 credit left this period (90% used).")
    await page.click("#banner-action")
    assert await page.evaluate("window.__sfxHarness.opened") == [stack.settings.topup_link]

    # History names each take of the request, not a bare index.
    await page.click("#tab-btn-history")
    await expect(page.locator("#history-list .history-sub")).to_have_count(3)
    subs = await page.locator("#history-list .history-sub").all_text_contents()
    assert sorted(s.split(" · ")[0] for s in subs) == ["take 1 of 3", "take 2 of 3", "take 3 of 3"]
    await shot(page, f"panel-{shell}-low-credits.png")


@pytest.mark.parametrize("shell", SHELLS)
async def test_an_unconfirmed_email_says_what_to_do_and_generating_works_once_it_is_confirmed(stack, db, open_panel, shell):
    email = unique_email()
    assert (await stack.client.post("/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})).status == 202
    user_id = await db.fetchval("SELECT id FROM users WHERE email = $1", email)
    now = await db.fetchval("SELECT now()")
    await credits.set_plan(db, user_id, "pro")
    await credits.grant_period(db, user_id, now - timedelta(days=1), now + timedelta(days=29), 10, key=f"unverified:{user_id}")
    panel = await open_panel(shell=shell)
    page = panel.page
    await panel.sign_in(stack, SimpleNamespace(email=email, password=DEFAULT_PASSWORD))

    # GET /v1/me says the address is not confirmed yet: the panel says where the link went.
    banner = page.locator("#banner")
    await expect(banner).to_have_attribute("data-kind", "verify")
    await expect(page.locator("#banner-text")).to_have_text(
        f"Verify your email: we sent a link to {email}. Open it, then come back here.")
    # Generating anyway: the server's 403 email_not_verified, shown the same way; nothing is charged.
    await panel.describe("Footsteps on gravel", 2)
    await page.click("#sfx-generate")
    await expect(page.locator("#banner-text")).to_have_text(
        f"Verify your email: we sent a link to {email}. Open it, then try again.")
    assert (await credits.summary(db, user_id)).remaining == 10

    # The editor follows the link, then presses Try again: the same request now goes through.
    await verification.mark_verified(stack.app[DB], user_id)
    await page.click("#banner-action")
    await expect(page.locator("#sfx-results .result[data-ready=true]")).to_have_count(1)
    await expect(banner).to_be_hidden()
    assert (await credits.summary(db, user_id)).remaining == 9


MARKERS = [{"time": 5.0, "end": 5.0, "name": "Door", "comments": "Wooden door creaks open"},
           {"time": 20.0, "end": 23.0, "name": "Rain", "comments": "Rain on the window"},
           {"time": 40.0, "end": 40.0, "name": "Car", "comments": "Car passes by"}]


async def placed_at(panel) -> list[float]:
    """Start times of the clips the panel placed: on the simulated timeline (UXP), or asked of host.jsx (CEP)."""
    if panel.shell == "uxp":
        starts = []
        for track in range(1, 4):  # A1 holds the sequence's own clip
            starts += [c[0] for c in await panel.page.evaluate(f"window.__sfxHarness.clips({track})")]
        return sorted(starts)
    return sorted(decode_call(c["script"])[1]["time"] for c in await panel.calls("importAndPlace"))


@pytest.mark.parametrize("shell", SHELLS)
async def test_enhance_a_prompt_spot_cues_from_markers_and_tidy_a_script(stack, db, open_panel, shell):
    user = await editor(stack, db, 30)
    panel = await open_panel(shell=shell, markers=MARKERS)
    page = panel.page
    await panel.sign_in(stack, user)

    # Enhance: three prompts from a short idea; picking one fills the whole form.
    await page.fill("#sfx-prompt", "door")
    await page.click("#sfx-enhance")
    options = page.locator("#sfx-enhance-list .enhance-option")
    await expect(options).to_have_count(3)
    await expect(options.nth(2).locator("small")).to_have_text("10.0 s · loop · influence 30%")
    await options.nth(2).click()
    await expect(page.locator("#sfx-prompt")).to_have_value("continuous door ambience, even texture, seamless loop")
    await expect(page.locator("#sfx-duration-out")).to_have_text("10.0 s")
    await expect(page.locator("#sfx-influence-out")).to_have_text("30%")
    assert await page.locator("#sfx-loop").is_checked()
    await expect(page.locator("#sfx-enhance-box")).to_be_hidden()

    # Spot: one cue per marker, each with its cost; the editor unticks one and edits another.
    await page.click("#spot-open")
    cues = page.locator("#spot-list .spot-cue")
    await expect(cues).to_have_count(3)
    await expect(cues.locator(".cue-time")).to_have_text(["00:00:05:00", "00:00:20:00", "00:00:40:00"])
    await expect(cues.nth(1).locator(".cue-duration")).to_have_value("3")
    await expect(page.locator("#spot-cost")).to_have_text("3 cues · 3 credits")
    await cues.nth(1).locator(".cue-on").uncheck()
    await cues.nth(0).locator(".cue-prompt").fill("Old wooden door creaks open slowly")
    await expect(page.locator("#spot-cost")).to_have_text("2 cues · 2 credits")
    before = await remaining(db, user)

    # The second request meets a failing sound service: that cue says so, the first is placed anyway.
    requests: list[dict] = []

    async def fail_the_second(route):
        requests.append(route.request.post_data_json)
        if len(requests) == 2:
            stack.sim.inject(stack.secret, "500")
        await route.continue_()

    await page.route("**/v1/sfx", fail_the_second)
    await page.click("#spot-generate")
    await expect(page.locator("#toast-text")).to_have_text("1 cue placed · 1 cue failed (not charged)")
    await expect(cues.nth(0)).to_have_attribute("data-status", "placed")
    await expect(cues.nth(0).locator(".cue-status")).to_have_text(re.compile(r"^Placed on A\d at 00:00:05:00\.$"))
    await expect(cues.nth(2)).to_have_attribute("data-status", "failed")
    assert requests[0]["prompt"] == "Old wooden door creaks open slowly" and requests[0]["variations"] == 1
    assert await placed_at(panel) == [5.0]
    assert await remaining(db, user) == before - 1
    await shot(page, f"panel-{shell}-spot.png")

    # Once the service is back, Generate offers only the cue still to do, and it lands at its marker.
    stack.sim.clear_faults()
    [key] = [k for k in await stack.app[KEYBANK].list_keys() if k.provider == "elevenlabs"]
    await stack.app[KEYBANK].enable(key.id)
    await expect(page.locator("#spot-generate")).to_have_text("Generate 1 cue")
    await page.click("#spot-generate")
    await expect(cues.nth(2)).to_have_attribute("data-status", "placed")
    assert await placed_at(panel) == [5.0, 40.0]
    assert await remaining(db, user) == before - 2
    await expect(page.locator("#acct-credits")).to_have_text(f"{before - 2} credits")

    # Cancel stops the run: the cue in flight and the ones after it are not generated, nothing is charged.
    await page.click("#spot-open")
    await expect(cues).to_have_count(3)
    after_spotting = int((await page.locator("#acct-credits").text_content()).split()[0])
    stack.sim.inject(stack.secret, "slow", times=1, delay=3)
    await page.click("#spot-generate")
    await expect(page.locator("#spot-progress-text")).to_have_text("Cue 1 of 3…")
    await page.click("#spot-cancel")
    await expect(page.locator("#toast-text")).to_have_text("0 cues placed")
    await expect(cues.nth(0).locator(".cue-status")).to_have_text("Cancelled. Nothing was charged for it.")
    await expect(cues.nth(2).locator(".cue-status")).to_have_text("Not generated (stopped).")
    await settled(db)
    assert await remaining(db, user) == after_spotting
    assert await placed_at(panel) == [5.0, 40.0]

    # Tidy: the voice script comes back ready to read, with its spoken length.
    await page.click("#tab-btn-voice")
    await page.fill("#voice-text", "previously   on the show.   it was late")
    await page.click("#voice-tidy")
    await expect(page.locator("#voice-text")).to_have_value("Previously on the show. It was late.")
    await expect(page.locator("#voice-tidy-notes")).to_have_text(re.compile(r"^About \d+\.\d s read aloud \(7 words\)\. "))


@pytest.mark.parametrize("shell", SHELLS)
async def test_a_generation_held_for_a_free_generator_says_it_is_waiting(stack, db, open_panel, shell):
    user = await editor(stack, db, 10)
    panel = await open_panel(shell=shell)
    page = panel.page
    await panel.sign_in(stack, user)
    progress = page.locator("#sfx-progress")

    # A slow answer that is not waiting in line is just "Generating…": the server says nothing waits.
    stack.sim.inject(stack.secret, "slow", times=1, delay=3.6)
    await panel.describe("Thunder rolls across a valley", 2)
    async with page.expect_response("**/v1/queue") as asked:
        await page.click("#sfx-generate")
    assert (await (await asked.value).json())["waiting"] == 0
    await expect(page.locator("#sfx-progress-text")).to_have_text(re.compile(r"^Generating… \d+ s$"))
    await expect(progress).to_have_attribute("data-waiting", "false")
    await expect(page.locator("#sfx-results .result[data-ready=true]")).to_have_count(1, timeout=8000)

    # Every slot of the only ElevenLabs key is taken (as by other editors' generations).
    bank = stack.app[KEYBANK]
    [key] = [k for k in await bank.list_keys("elevenlabs")]
    leases = [await bank.acquire("elevenlabs") for _ in range(key.max_concurrency)]
    try:
        async with page.expect_response("**/v1/queue") as asked:
            await page.click("#sfx-generate")
        assert (await (await asked.value).json())["waiting"] == 1
        await expect(progress).to_have_attribute("data-waiting", "true")
        await expect(page.locator("#sfx-progress-text")).to_have_text(re.compile(r"^Waiting for a free generator… \d+ s$"))
        await shot(page, f"panel-{shell}-waiting.png")
    finally:
        for lease in leases:
            await bank.release(lease)
    # A slot frees up: the same request goes through, charged once.
    await expect(page.locator("#sfx-results .result[data-ready=true]")).to_have_count(2)
    await expect(progress).to_be_hidden()
    assert await remaining(db, user) == 8
