"""`./scripts/dev` publishes the working tree's panel as a dev release (server/releases/devbuild.py)."""

from __future__ import annotations

import io
import json
import zipfile

from server.releases import package_storage
from server.releases.devbuild import PANEL, publish_dev_panel
from server.releases.service import ReleaseService
from server.releases.signing import load_keys


async def test_the_working_tree_panel_is_published_once_as_a_labelled_dev_build(settings):
    version = json.loads((PANEL / "package.json").read_text())["version"]
    said = await publish_dev_panel(settings, sign=False)
    assert said.startswith(f"published the working tree's panel as dev release {version}"), said

    async with ReleaseService.open(settings, package_storage(settings)) as service:
        [release] = await service.list("cep")
        package = await service.storage.read(release.storage_key)
    assert (release.version, release.dev_build, release.signed) == (version, True, False)
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        names = set(z.namelist())
        pinned = z.read("core/update-keys.js").decode()
        manifest = z.read("CSXS/manifest.xml").decode()
    assert f'ExtensionBundleVersion="{version}"' in manifest
    assert "index.html" in names and "core/updates.js" in names and "cep/installer.js" in names
    assert not [n for n in names if n.startswith(("tests/", "node_modules/")) or n in ("package.json", ".debug")]
    for key in load_keys(settings.update_signing_key):
        assert key.public_b64 in pinned, "the dev panel trusts the dev server's manifests"
    assert settings.update_signing_key not in pinned

    again = await publish_dev_panel(settings, sign=False)
    assert "already published" in again and "bump cep-panel/package.json" in again
