"""Signed update manifests, built once per change and served from memory.

A manifest is canonical JSON signed with every configured Ed25519 key; the signatures travel in
the `X-Update-Signatures` header, so the body a panel verifies is exactly the body it received.
Every worker builds byte-identical manifests from the same rows (issued_at is derived from the
last change and a fixed re-signing period, not from the moment a worker happened to build), so
ETags agree across workers and a panel's If-None-Match works whichever worker answers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from server.releases.signing import SigningKey, canonical, signature_header
from server.releases.versions import Version

PRODUCTS = ("cep", "uxp")
CHANNELS = ("stable", "beta")
SIGNATURE_HEADER = "X-Update-Signatures"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Release:
    id: int
    product: str
    channel: str
    version: str
    storage_key: str
    filename: str
    sha256: str
    size: int
    notes_md: str
    notes_html: str
    min_host_version: str | None
    rollout_percent: int
    rollout_salt: str
    dev_build: bool
    signed: bool
    published_at: datetime
    published_by_label: str
    yanked_at: datetime | None
    downloads: int

    @classmethod
    def from_row(cls, row) -> "Release":
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    @property
    def parsed(self) -> Version:
        return Version.parse(self.version)

    @property
    def download_path(self) -> str:
        return f"/downloads/{self.product}/{self.version}"

    @property
    def content_type(self) -> str:
        return "application/vnd.adobe.air-application-installer-package+zip" if self.product == "cep" else "application/zip"


@dataclass(frozen=True)
class Built:
    """One manifest ready to send: the signed bytes and every header, computed once."""

    product: str
    channel: str
    serial: int
    body: bytes
    etag: str
    headers: dict[str, str]
    not_modified_headers: dict[str, str]
    expires_at: datetime


def latest_for(releases: Iterable[Release], product: str, channel: str) -> Release | None:
    """The highest live version a channel offers; beta also offers a stable release newer than its betas."""
    channels = ("stable", "beta") if channel == "beta" else ("stable",)
    live = [r for r in releases if r.product == product and r.channel in channels and r.yanked_at is None]
    return max(live, key=lambda r: r.parsed, default=None)


def issued_at(changed_at: datetime, now: datetime, period: int) -> datetime:
    """The later of the last change and the start of the current re-signing period (whole seconds)."""
    period_start = EPOCH + timedelta(seconds=(int((now - EPOCH).total_seconds()) // period) * period)
    return max(changed_at.replace(microsecond=0), period_start)


def next_resign(now: datetime, period: int) -> datetime:
    return EPOCH + timedelta(seconds=(int((now - EPOCH).total_seconds()) // period + 1) * period)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def document(
    *, product: str, channel: str, serial: int, issued: datetime, ttl: int, latest: Release | None,
    min_supported: str | None, public_url: str,
) -> dict:
    base = public_url.rstrip("/")
    return {
        "product": product,
        "channel": channel,
        "serial": serial,
        "issued_at": _stamp(issued),
        "expires_at": _stamp(issued + timedelta(seconds=ttl)),
        "min_supported_version": min_supported,
        "latest": None if latest is None else {
            "version": latest.version,
            "url": base + latest.download_path,
            "sha256": latest.sha256,
            "size": latest.size,
            "notes": latest.notes_md,
            "notes_html": latest.notes_html,
            "min_host_version": latest.min_host_version,
            "published_at": _stamp(latest.published_at),
            "dev_build": latest.dev_build,
            "rollout": {"percent": latest.rollout_percent, "salt": latest.rollout_salt},
        },
    }


def build(doc: dict, keys: list[SigningKey], *, max_age: int) -> Built:
    body = canonical(doc)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Content-Type": "application/json",
        "ETag": etag,
        # Panels may reuse a copy briefly, then must ask again (a 304 costs a few bytes).
        "Cache-Control": f"public, max-age={max_age}",
        SIGNATURE_HEADER: signature_header(keys, body),
    }
    expires = datetime.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    not_modified = {"ETag": etag, "Cache-Control": headers["Cache-Control"]}
    return Built(doc["product"], doc["channel"], doc["serial"], body, etag, headers, not_modified, expires)


def build_all(
    releases: list[Release], serials: dict[tuple[str, str], tuple[int, datetime]], min_versions: dict[str, str],
    keys: list[SigningKey], *, now: datetime, ttl: int, max_age: int, public_url: str,
) -> dict[tuple[str, str], Built]:
    period = resign_period(ttl)
    built = {}
    for product in PRODUCTS:
        for channel in CHANNELS:
            serial, changed_at = serials.get((product, channel), (0, EPOCH))
            doc = document(
                product=product, channel=channel, serial=serial, issued=issued_at(changed_at, now, period), ttl=ttl,
                latest=latest_for(releases, product, channel), min_supported=min_versions.get(product),
                public_url=public_url,
            )
            built[(product, channel)] = build(doc, keys, max_age=max_age)
    return built


def resign_period(ttl: int) -> int:
    """Manifests are re-signed three times per lifetime, so a panel that checks a little late still
    finds one with days to spare."""
    return max(1, ttl // 3)
