"""Panel flows over the real server, in both shells: the signed update offer (core/updates.js verifying
the manifest this server signs), the low-credit banner, take labels in history, the unverified-email
state, prompt help and spotting from markers (the LLM simulator behind the server), and the notice
shown while a generation waits for a free generator."""

from __future__ import annotations

import hashlib

import pytest
from playwright.async_api import expect

# The fixtures are imported so pytest finds them here.
from panel_support import browser, editor, open_panel, shot, stack  # noqa: F401
from releases_support import ccx, zxp
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

