"""`python -m server ...`: the operator's entry point.

Each domain adds its subcommands through a `register(subparsers)` function listed in
`command_modules()`; a command is a function taking (args, settings) and returning an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys

from server.settings import Settings, SettingsError
from server.web.logs import configure_logging


def command_modules():
    from server import devtools
    from server.auth import cli as auth_cli
    from server.billing import cli as billing_cli
    from server.keybank import cli as keybank_cli
    from server.releases import cli as releases_cli
    from server.simulator import cli as simulator_cli

    return [auth_cli, keybank_cli, simulator_cli, billing_cli, releases_cli, devtools]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="SFX Studio server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (API, portal, webhooks)")
    serve.add_argument("--host", help="override HOST")
    serve.add_argument("--port", type=int, help="override PORT")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations first")
    serve.add_argument("--workers", type=int, help="processes sharing the port (overrides WORKERS)")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=cmd_migrate)

    for module in command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    return args.func(args, settings) or 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from server.db import migrate

    applied = asyncio.run(migrate(settings.database_url))
    print(f"{len(applied)} migration(s) applied" + (": " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied) if applied else ""))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server import serving
    from server.db import migrate

    if args.host or args.port:
        settings = settings.replace(host=args.host or settings.host, port=args.port or settings.port)
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    if not args.no_migrate:
        serving.run(migrate(settings.database_url))
    logging.getLogger("server").info("starting", extra={
        "host": settings.host, "port": settings.port, "env": settings.environment, "workers": workers})
    return serving.serve(settings, workers=workers)


def read_secret(prompt: str) -> str:
    """From a prompt when interactive, else one line of stdin (so scripts can pipe it in)."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")
