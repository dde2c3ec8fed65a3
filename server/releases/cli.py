"""`python -m server releases ...`: publish panel packages and steer updates from the shell.

Every change is audited with the operator's login name; manifests on running servers change within
a moment (Redis pub/sub), or at the latest on their next poll.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Awaitable, Callable

from server.releases import package_storage
from server.releases.manifest import CHANNELS, PRODUCTS, Release
from server.releases.service import Actor, ReleaseService
from server.releases.signing import generate, load_keys
from server.settings import Settings
from server.web.errors import ApiError


def register(subparsers: argparse._SubParsersAction) -> None:
    releases = subparsers.add_parser("releases", help="publish panel releases and steer updates")
    sub = releases.add_subparsers(dest="releases_command", required=True)

    publish = sub.add_parser("publish", help="publish a signed ZXP (cep) or CCX (uxp) package")
    publish.add_argument("file", type=Path)
    publish.add_argument("--product", choices=PRODUCTS, default="cep")
    publish.add_argument("--version", required=True, help="must match the version inside the package")
    publish.add_argument("--channel", choices=CHANNELS, default="stable")
    publish.add_argument("--notes", type=Path, help="a Markdown file with the release notes")
    publish.add_argument("--rollout", type=int, default=100, help="percent of installs offered the update (default 100)")
    publish.add_argument("--min-host", help="oldest Premiere version it runs on, e.g. 23.0")
    publish.add_argument("--dev", action="store_true", help="a development build (self-signed or unsigned); pages say so")
    publish.set_defaults(func=cmd_publish)

    lst = sub.add_parser("list", help="list releases with rollout, downloads and state")
    lst.add_argument("--product", choices=PRODUCTS)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)

    rollout = sub.add_parser("rollout", help="change the share of installs offered a release")
    rollout.add_argument("version")
    rollout.add_argument("percent", type=int)
    rollout.add_argument("--product", choices=PRODUCTS, default="cep")
    rollout.set_defaults(func=cmd_rollout)

    yank = sub.add_parser("yank", help="withdraw a release: no longer offered, listed or downloadable")
    yank.add_argument("version")
    yank.add_argument("--product", choices=PRODUCTS, default="cep")
    yank.set_defaults(func=cmd_yank)

    floor = sub.add_parser("min-supported", help="refuse API calls (426) from panels older than VERSION")
    floor.add_argument("product", choices=PRODUCTS)
    floor.add_argument("version")
    floor.set_defaults(func=cmd_min_supported)

    keygen = sub.add_parser("keygen", help="print a new Ed25519 key pair for signing update manifests")
    keygen.set_defaults(func=cmd_keygen)

    keys = sub.add_parser("public-keys", help="print the key ids and public keys of UPDATE_SIGNING_KEY (for the panel build)")
    keys.set_defaults(func=cmd_public_keys)


def operator() -> Actor:
    return Actor(None, f"cli:{getpass.getuser()}")


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    if not args.file.is_file():
        print(f"error: no such file: {args.file}", file=sys.stderr)
        return 1
    if args.file.stat().st_size > settings.release_max_bytes:
        # Refused before reading it into memory.
        print(f"error: the package is larger than RELEASE_MAX_BYTES ({settings.release_max_bytes} bytes)", file=sys.stderr)
        return 1
    notes_md = args.notes.read_text(encoding="utf-8") if args.notes else ""

    async def go(service: ReleaseService) -> None:
        release = await service.publish(
            args.file.read_bytes(), product=args.product, channel=args.channel, version=args.version, actor=operator(),
            notes_md=notes_md, rollout=args.rollout, min_host=args.min_host, dev_build=args.dev,
        )
        print(f"published {release.product} {release.version} on {release.channel} ({release.size} bytes, "
              f"sha256 {release.sha256}, rollout {release.rollout_percent}%)")
        print(f"download: {settings.public_url.rstrip('/')}{release.download_path}")

    return _run(settings, go)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def go(service: ReleaseService) -> None:
        releases = await service.list(args.product)
        floors = await service.min_versions()
        if args.json:
            print(json.dumps({"releases": [_as_dict(r) for r in releases], "min_supported": floors}, indent=2))
            return
        print(format_table(releases))
        for product, version in sorted(floors.items()):
            print(f"min supported {product}: {version}")

    return _run(settings, go)


def cmd_rollout(args: argparse.Namespace, settings: Settings) -> int:
    async def go(service: ReleaseService) -> None:
        release = await service.set_rollout(args.product, args.version, args.percent, actor=operator())
        print(f"{release.product} {release.version} is offered to {release.rollout_percent}% of installs")

    return _run(settings, go)


def cmd_yank(args: argparse.Namespace, settings: Settings) -> int:
    async def go(service: ReleaseService) -> None:
        release = await service.yank(args.product, args.version, actor=operator())
        print(f"{release.product} {release.version} yanked")

    return _run(settings, go)


def cmd_min_supported(args: argparse.Namespace, settings: Settings) -> int:
    async def go(service: ReleaseService) -> None:
        await service.set_min_supported(args.product, args.version, actor=operator())
        print(f"{args.product} panels older than {args.version} now get 426 panel_outdated")

    return _run(settings, go)


def cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    private, public, kid = generate()
    print(f"key id:      {kid}")
    print(f"public key:  {public}    (pin in the panel build)")
    print(f"private key: {private}    (UPDATE_SIGNING_KEY; keep it secret)")
    print("To rotate: pin both public keys in a panel release, set UPDATE_SIGNING_KEY=OLD,NEW, and drop OLD "
          "once panels pinning only the old key are gone.")
    return 0


def cmd_public_keys(args: argparse.Namespace, settings: Settings) -> int:
    for key in load_keys(settings.update_signing_key):
        print(f"{key.kid}  {key.public_b64}")
    return 0


def _run(settings: Settings, action: Callable[[ReleaseService], Awaitable[None]]) -> int:
    async def main() -> int:
        async with ReleaseService.open(settings, package_storage(settings)) as service:
            try:
                await action(service)
            except ApiError as exc:
                print(f"error: {exc.message}", file=sys.stderr)
                return 1
        return 0

    return asyncio.run(main())


def _as_dict(r: Release) -> dict:
    return {
        "product": r.product, "channel": r.channel, "version": r.version, "sha256": r.sha256, "size": r.size,
        "rollout_percent": r.rollout_percent, "min_host_version": r.min_host_version, "dev_build": r.dev_build,
        "signed": r.signed, "published_at": r.published_at.isoformat(), "published_by": r.published_by_label,
        "yanked_at": r.yanked_at.isoformat() if r.yanked_at else None, "downloads": r.downloads,
    }


COLUMNS = ("PRODUCT", "CHANNEL", "VERSION", "PUBLISHED", "SIZE", "ROLLOUT", "DOWNLOADS", "STATE")


def format_table(releases: list[Release]) -> str:
    if not releases:
        return "no releases"
    rows = [
        (r.product, r.channel, r.version, r.published_at.strftime("%Y-%m-%d %H:%M"), f"{r.size / 2**20:.1f} MiB",
         f"{r.rollout_percent}%", str(r.downloads),
         "yanked" if r.yanked_at else ("dev build" if r.dev_build else "live"))
        for r in releases
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
