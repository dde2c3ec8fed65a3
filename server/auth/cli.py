"""`python -m server create-admin EMAIL`: the first administrator, or promoting an existing account.

The password comes from a prompt (asked twice) or, when stdin is not a terminal, from its first
line, so provisioning scripts can pipe it in. It is never taken as an argument: arguments end
up in shell history and process listings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from server.auth import service
from server.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "create-admin",
        help="create an administrator account, or promote an existing account to administrator",
        description="Creates EMAIL as an administrator (the password is prompted for, or read from one stdin line). "
        "If the account exists it is promoted; its password is kept unless --set-password is given.",
    )
    cmd.add_argument("email")
    cmd.add_argument("--set-password", action="store_true", help="also give an existing account a new password")
    cmd.set_defaults(func=cmd_create_admin)


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(create_admin(settings, args.email, set_password=args.set_password))


async def create_admin(settings: Settings, email: str, *, set_password: bool = False) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        existing = await service.find_account(conn, settings, email)
        if existing is None:
            return await _create(conn, settings, email)
        return await _promote(conn, settings, existing, set_password)
    except asyncpg.UndefinedTableError:
        print("error: the database has no users table yet; run `python -m server migrate` first", file=sys.stderr)
        return 1
    finally:
        await conn.close()


async def _create(conn: asyncpg.Connection, settings: Settings, email: str) -> int:
    password = _ask_password()
    if password is None:
        return 1
    try:
        user_id = await service.create_user(conn, settings, email, password, role="admin", verified=True)
    except service.PolicyViolation as exc:
        return _print_problems(exc)
    print(f"created administrator {service.normalise_email(email, settings, strict=False)} ({user_id})")
    return 0


async def _promote(conn: asyncpg.Connection, settings: Settings, account: service.Account, set_password: bool) -> int:
    if set_password:
        password = _ask_password()
        if password is None:
            return 1
        try:
            await service.set_password(conn, settings, account.id, password)
        except service.PolicyViolation as exc:
            return _print_problems(exc)
    await service.set_role(conn, account.id, "admin")
    note = " with a new password (its devices were signed out)" if set_password else ""
    print(f"{account.email} ({account.id}) is now an administrator{note}")
    return 0


def _ask_password() -> str | None:
    from server.cli import read_secret

    password = read_secret("Password: ")
    if sys.stdin.isatty() and read_secret("Repeat password: ") != password:
        print("error: the passwords differ", file=sys.stderr)
        return None
    if not password:
        print("error: no password given (type it at the prompt or pipe it as one line on stdin)", file=sys.stderr)
        return None
    return password


def _print_problems(exc: service.PolicyViolation) -> int:
    for problem in exc.problems:
        print(f"error: {problem['field']}: {problem['message']}", file=sys.stderr)
    return 1
