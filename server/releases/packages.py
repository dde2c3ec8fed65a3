"""What is inside an uploaded panel package, checked before anything is stored.

A CEP panel ships as a ZXP and a UXP plugin as a CCX; both are zip files. The bundle id and version
are read from the package's own manifest (CSXS/manifest.xml for CEP, manifest.json for UXP), so a
package cannot be published under a version it does not carry or for a product it is not.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from xml.etree import ElementTree

# The id every build of each product carries; anything else is another extension.
BUNDLE_IDS = {"cep": "com.sfxstudio.panel", "uxp": "com.sfxstudio.panel.uxp"}
EXTENSIONS = {"cep": "zxp", "uxp": "ccx"}
# Manifests are small; a bigger one is not ours (and must not be read into memory whole).
MAX_MANIFEST_BYTES = 256 * 1024
# A zip's declared sizes are checked before its entries are read (CRC test): no zip bombs.
MAX_UNPACKED_BYTES = 1024 * 2**20


class PackageRefused(ValueError):
    """The file is not a package this product can publish; the message says why, for the operator."""


@dataclass(frozen=True)
class PackageInfo:
    bundle_id: str
    version: str
    signed: bool  # META-INF/signatures.xml is present (a ZXP's signature; CCX files are signed by Adobe)
    entries: int


def inspect(data: bytes, product: str) -> PackageInfo:
    if product not in BUNDLE_IDS:
        raise PackageRefused(f"unknown product {product!r}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        if sum(info.file_size for info in archive.infolist()) > MAX_UNPACKED_BYTES:
            raise PackageRefused(f"the package unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB")
        broken = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise PackageRefused(f"not a valid {EXTENSIONS[product].upper()} (zip) file: {exc}") from None
    if broken is not None:
        raise PackageRefused(f"the package is damaged: {broken} fails its checksum")
    unsafe = [n for n in names if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/")]
    if unsafe:
        # An unpacking panel would write outside its folder.
        raise PackageRefused(f"the package has entries that escape its folder: {unsafe[0]}")
    with archive:
        if product == "cep":
            bundle_id, version = _cep_manifest(archive)
        else:
            bundle_id, version = _uxp_manifest(archive)
        signed = "META-INF/signatures.xml" in names
    if bundle_id != BUNDLE_IDS[product]:
        raise PackageRefused(f"the package's bundle id is {bundle_id!r}, not {BUNDLE_IDS[product]!r}")
    return PackageInfo(bundle_id=bundle_id, version=version, signed=signed, entries=len(names))


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise PackageRefused(f"the package has no {name}") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise PackageRefused(f"{name} is larger than {MAX_MANIFEST_BYTES} bytes")
    return archive.read(info)


def _cep_manifest(archive: zipfile.ZipFile) -> tuple[str, str]:
    raw = _read(archive, "CSXS/manifest.xml")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        # ElementTree does not fetch external entities, but entity expansion can still blow up.
        raise PackageRefused("CSXS/manifest.xml must not declare a DOCTYPE or entities")
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        raise PackageRefused(f"CSXS/manifest.xml is not valid XML: {exc}") from None
    if root.tag != "ExtensionManifest":
        raise PackageRefused("CSXS/manifest.xml is not an ExtensionManifest")
    return root.get("ExtensionBundleId", ""), root.get("ExtensionBundleVersion", "")


def _uxp_manifest(archive: zipfile.ZipFile) -> tuple[str, str]:
    raw = _read(archive, "manifest.json")
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageRefused(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise PackageRefused("manifest.json is not an object")
    return str(manifest.get("id", "")), str(manifest.get("version", ""))
