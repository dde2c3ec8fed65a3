"""What the panel's browser tests share: the real server with the ElevenLabs and LLM simulators behind
it (an ElevenLabs and an OpenAI key banked), an editor with credits, and the panel opened in headless Chromium inside one of two shells:

- "cep": the CEP page (cep-panel/index.html) with a harness that plays Premiere's CEP side
  (CSInterface's native bridge, window.cep, Node-like fs/path/os writing real files);
- "uxp": the UXP plugin folder as scripts/build_panel_uxp.sh lays it out, with a UXP-like harness
  (the simulated premierepro module, uxp, UXP's fs, the manifest's network permission, no Web Audio).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import secrets
import subprocess
import wave
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright, expect

from helpers import sign_up
from server.app import create_app
from server.credits import service as credits
from server.keybank import KEYBANK
from server.releases.devbuild import pin_dev_keys
from server.settings import Settings
from server.simulator import SimulatorState, create_simulator_app
from server.simulator.llm import LlmSimulatorState, base_urls, create_llm_simulator_app

ROOT = Path(__file__).resolve().parent.parent
PANEL = ROOT / "cep-panel"
HARNESS = PANEL / "tests" / "harness" / "cep-harness.js"
UXP_HARNESS = PANEL / "tests" / "harness" / "uxp-harness.js"
PREMIEREPRO_SIM = PANEL / "tests" / "premierepro-sim.js"
BUILD_UXP = ROOT / "scripts" / "build_panel_uxp.sh"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
DARK = {"red": 35, "green": 35, "blue": 35, "alpha": 255}
LIGHT = {"red": 214, "green": 214, "blue": 214, "alpha": 255}
CALL = re.compile(r'SFXHost\.call\("([A-Za-z]+)","([A-Za-z0-9%\-_.!~*\'()]*)"\)')


# --- the stack: simulator, server serving the panel, a key, a user ---------------------------------

@dataclass
class Stack:
    url: str
    server: object
    sim: SimulatorState
    secret: str
    settings: Settings
    client: object
    app: web.Application
    uxp_stage: Path
    llm: LlmSimulatorState


@pytest.fixture
async def stack(aiohttp_server, aiohttp_client, test_env, tmp_path) -> Stack:
    sim = SimulatorState()
    sim_server = await aiohttp_server(create_simulator_app(sim))
    llm = LlmSimulatorState()
    llm_urls = base_urls(str((await aiohttp_server(create_llm_simulator_app(llm))).make_url("")).rstrip("/"))
    settings = Settings.from_env({**test_env, "ELEVENLABS_BASE_URL": str(sim_server.make_url("")).rstrip("/"),
                                  "UPSTREAM_DEADLINE": "8", "OPENAI_BASE_URL": llm_urls["openai_base_url"],
                                  "ASSIST_ROUTES": "default=openai:gpt-4.1-mini", "ASSIST_DEADLINE": "8"})
    app = create_app(settings)
    # The panel trusts this server's update manifests, as a dev build published by ./scripts/dev does:
    # its core/update-keys.js pins the server's public keys (written by the same code as the dev build's).
    pinned = tmp_path / "pinned-keys"
    pin_dev_keys(pinned, settings)
    async def pinned_keys(request):
        return web.FileResponse(pinned / "core" / "update-keys.js")

    app.router.add_get("/panel/core/update-keys.js", pinned_keys)
    app.router.add_static("/panel/", PANEL)
    # The UXP plugin folder is laid out once the server's origin (its network permission) is known.
    uxp_stage = tmp_path / "uxp-plugin"
    uxp_stage.mkdir()
    app.router.add_static("/uxp-panel/", uxp_stage)
    # aiohttp's TestServer cancels a handler when its client goes away (handler_cancellation).
    server = await aiohttp_server(app)
    secret = "sk_" + secrets.token_hex(24)
    sim.add_key(secret)
    await app[KEYBANK].add_key(provider="elevenlabs", label="panel-e2e", secret=secret, max_concurrency=5)
    llm_secret = "sk-" + secrets.token_hex(24)
    llm.add_key("openai", llm_secret)
    await app[KEYBANK].add_key(provider="openai", label="panel-llm", secret=llm_secret, max_concurrency=4)
    client = await aiohttp_client(server)
    return Stack(str(server.make_url("")).rstrip("/"), server, sim, secret, settings, client, app, uxp_stage, llm)


async def editor(stack: Stack, db, credits_: int, plan: str = "pro"):
    user = await sign_up(stack.client, device_name="setup")
    now = await db.fetchval("SELECT now()")
    await credits.set_plan(db, user.user_id, plan)
    await credits.grant_period(db, user.user_id, now - timedelta(days=1), now + timedelta(days=29), credits_,
                               key=f"panel-e2e:{user.user_id}")
    return user


async def remaining(db, user) -> int | None:
    return (await credits.summary(db, user.user_id)).remaining


async def settled(db) -> None:
    """Generation work goes on briefly after a client leaves; wait until nothing is pending."""
    for _ in range(200):
        if not await db.fetchval("SELECT count(*) FROM generations WHERE status = 'pending'"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("generations still pending")


# --- the panel in Chromium -----------------------------------------------------------------------

@dataclass
class SandboxFs:
    """The harness's fs: real files, confined to the test's temporary folder."""

    root: Path
    written: list[Path] = field(default_factory=list)

    def _path(self, raw: str) -> Path:
        path = Path(raw).resolve()
        assert path.is_relative_to(self.root), f"the panel wrote outside its sandbox: {raw}"
        return path

    async def handle(self, op: str, args: dict) -> dict:
        path = self._path(args["path"])
        try:
            if op == "mkdir":
                path.mkdir(parents=bool(args.get("recursive")), exist_ok=bool(args.get("recursive")))
                return {}
            if op == "writeFile":
                with open(path, "xb" if args.get("flag") == "wx" else "wb") as f:
                    f.write(base64.b64decode(args["data"]))
                self.written.append(path)
                return {}
            if op == "readFile":
                return {"data": base64.b64encode(path.read_bytes()).decode()}
            if op == "rename":
                path.replace(self._path(args["to"]))
                return {}
            if op == "stat":
                st = path.stat()
                return {"size": st.st_size, "isFile": path.is_file(), "isDirectory": path.is_dir()}
        except FileExistsError:
            return {"error": "EEXIST"}
        except FileNotFoundError:
            return {"error": "ENOENT"}
        return {"error": "ENOSYS"}


@dataclass
class Panel:
    page: Page
    fs: SandboxFs
    home: Path
    shell: str = "cep"

    async def calls(self, name: str | None = None) -> list[dict]:
        calls = await self.page.evaluate("window.__sfxHarness.calls")
        return [c for c in calls if name is None or c["name"] == name]

    async def set_range(self, selector: str, value: float) -> None:
        await self.page.locator(selector).evaluate(
            "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }", value)

    async def sign_in(self, stack: Stack, user) -> None:
        page = self.page
        await expect(page.locator("#view-signin")).to_be_visible()
        await page.click("#signin-server-toggle")
        await page.fill("#signin-server", stack.url)
        await page.fill("#signin-email", user.email)
        await page.fill("#signin-password", user.password)
        await page.click("#signin-submit")
        await expect(page.locator("#view-main")).to_be_visible()

    async def describe(self, prompt: str, seconds: float) -> None:
        await self.page.fill("#sfx-prompt", prompt)
        await self.set_range("#sfx-duration", seconds)


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
def open_panel(browser, stack, tmp_path):
    """Opens the panel in a new page in the given shell; the browser fixture closes everything afterwards."""

    async def open_(theme: dict = DARK, markers: list | None = None, shell: str = "cep", config: dict | None = None,
                    viewport: dict | None = None) -> Panel:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        fs = SandboxFs(tmp_path.resolve())
        context = await browser.new_context(viewport=viewport or {"width": 340, "height": 720}, device_scale_factor=2)
        page = await context.new_page()
        await page.expose_function("__sfxFs", fs.handle)
        settings = {"home": str(home), "hostname": "edit-bay-3.local", "background": theme, "markers": markers or [],
                    **(config or {})}
        if shell == "uxp":
            manifest = stage_uxp(stack)
            settings["domains"] = manifest["requiredPermissions"]["network"]["domains"]
            script = f"window.__SFX_HARNESS_CONFIG__ = {json.dumps(settings)};\n{PREMIEREPRO_SIM.read_text()}\n{UXP_HARNESS.read_text()}"
            url = stack.url + "/uxp-panel/index.html"
        else:
            script = f"window.__SFX_HARNESS_CONFIG__ = {json.dumps(settings)};\n{HARNESS.read_text()}"
            url = stack.url + "/panel/index.html"
        await page.add_init_script(script=script)
        await page.goto(url)
        return Panel(page, fs, home, shell)

    return open_


def stage_uxp(stack: Stack) -> dict:
    """Lays out the UXP plugin for this server's origin (once per test) and returns its manifest."""
    manifest = stack.uxp_stage / "manifest.json"
    if not manifest.exists():
        result = subprocess.run([str(BUILD_UXP), "--stage", str(stack.uxp_stage), "--server", stack.url],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        pin_dev_keys(stack.uxp_stage, stack.settings)
    return json.loads(manifest.read_text())


def wav_info(data: bytes) -> tuple[int, int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes() / w.getframerate()


def decode_call(script: str) -> tuple[str, dict]:
    match = CALL.fullmatch(script)
    assert match, f"not a well-formed host call: {script!r}"
    return match.group(1), json.loads(unquote(match.group(2)))


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name))




@dataclass(frozen=True)
class Box:
    name: str
    x: float
    y: float
    width: float
    height: float

    def overlaps(self, other: "Box") -> bool:
        return (self.x < other.x + other.width - 0.5 and other.x < self.x + self.width - 0.5
                and self.y < other.y + other.height - 0.5 and other.y < self.y + self.height - 0.5)

    def inside(self, width: float, height: float) -> bool:
        return self.x >= -0.5 and self.y >= -0.5 and self.x + self.width <= width + 0.5 and self.y + self.height <= height + 0.5


async def boxes(page: Page, selectors: dict[str, str]) -> dict[str, Box]:
    """The on-screen boxes of the visible elements among selectors (hidden ones are left out)."""
    found = {}
    for name, selector in selectors.items():
        locator = page.locator(selector).first
        if await locator.count() and await locator.is_visible():
            b = await locator.bounding_box()
            found[name] = Box(name, b["x"], b["y"], b["width"], b["height"])
    return found
