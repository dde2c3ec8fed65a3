"""Panel packages made on the fly for the releases tests: real zip files shaped like a ZXP or CCX."""

from __future__ import annotations

import io
import json
import zipfile

CEP_ID = "com.sfxstudio.panel"
UXP_ID = "com.sfxstudio.panel.uxp"


def zxp(version: str, *, bundle_id: str = CEP_ID, signed: bool = True, padding: int = 0) -> bytes:
    """A CEP package: CSXS/manifest.xml carrying the bundle id and version, a page, maybe a signature."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/vnd.adobe.air-ucf-package+zip")
        z.writestr("CSXS/manifest.xml", (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<ExtensionManifest Version="7.0" ExtensionBundleId="{bundle_id}" ExtensionBundleVersion="{version}">'
            f'<ExtensionList><Extension Id="{bundle_id}.main" Version="{version}"/></ExtensionList></ExtensionManifest>'
        ))
        z.writestr("index.html", f"<!doctype html><title>SFX Studio {version}</title>")
        if padding:
            z.writestr("js/padding.bin", bytes(range(256)) * (padding // 256 + 1), compress_type=zipfile.ZIP_STORED)
        if signed:
            z.writestr("META-INF/signatures.xml", "<signatures/>")
    return buffer.getvalue()


def ccx(version: str, *, plugin_id: str = UXP_ID) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps({"id": plugin_id, "version": version, "manifestVersion": 5}))
        z.writestr("index.html", "<!doctype html><title>SFX Studio</title>")
    return buffer.getvalue()
