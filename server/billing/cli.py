"""`python -m server billing reconcile`: repair drift between Stripe and our billing state."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

import asyncpg

from server.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    billing = sub.add_parser("billing", help="Stripe billing operations")
    commands = billing.add_subparsers(dest="billing_command", required=True)
    rec = commands.add_parser(
        "reconcile",
        help="re-read subscriptions and recent invoices from Stripe and fix drift, printing each change",
    )
    rec.add_argument("--dry-run", action="store_true", help="report what would change and write nothing")
    rec.add_argument("--invoice-days", type=int, default=90, help="how far back to re-read invoices (default 90)")
    rec.set_defaults(func=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(reconcile(settings, dry_run=args.dry_run, invoice_days=args.invoice_days))


async def reconcile(settings: Settings, *, dry_run: bool = False, invoice_days: int = 90, out: TextIO | None = None) -> int:
    from server.billing.service import BillingService
    from server.billing.stripe_client import StripeGateway, StripeUnavailable

    out = out or sys.stdout
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    gateway = StripeGateway(settings)
    try:
        changes = await BillingService(pool, gateway, settings).reconcile(dry_run=dry_run, invoice_days=invoice_days)
    except StripeUnavailable:
        print("error: Stripe could not be reached or refused the request; nothing more was changed", file=sys.stderr)
        return 1
    finally:
        await gateway.close()
        await pool.close()
    for line in changes:
        print(line, file=out)
    suffix = " (dry run: nothing was written)" if dry_run else ""
    print(f"{len(changes)} change(s){suffix}", file=out)
    return 0
