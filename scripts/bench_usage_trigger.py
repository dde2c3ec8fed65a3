#!/usr/bin/env python3
"""What the usage-mail trigger costs a capture: reserve+capture pairs with the trigger enabled
and disabled, in alternating rounds on one throwaway database (so both see the same machine
load), 50 concurrent clients over many accounts, as scripts/bench_ledger.py runs them.

The accounts have a large allowance, so no capture crosses a threshold: this is the cost every
generation pays (the trigger's WHEN clause), not the rare crossing, whose NOTIFY goes out on commit.

    .venv/bin/python scripts/bench_usage_trigger.py [--seconds 3] [--rounds 4] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402

from bench_ledger import closed_loop, db_url, ledger_pair, make_accounts  # noqa: E402
from server.db import create_pool, migrate  # noqa: E402
from server.settings import Settings  # noqa: E402

TRIGGER = "credit_accounts_usage_threshold"


async def main(args: argparse.Namespace) -> int:
    name = f"sfx_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = db_url(args.database_url, name)
    try:
        await migrate(dsn)
        pool = await create_pool(Settings(database_url=dsn, db_pool_min=args.clients, db_pool_max=args.clients))
        try:
            users = await make_accounts(pool, 200)
            rates: dict[str, list[float]] = {"enabled": [], "disabled": []}
            p50s: dict[str, list[float]] = {"enabled": [], "disabled": []}
            for n in range(args.rounds):
                for state in (("enabled", "disabled") if n % 2 == 0 else ("disabled", "enabled")):
                    await pool.execute(f"ALTER TABLE credit_accounts {state[:-1].upper()} TRIGGER {TRIGGER}")
                    op = ledger_pair(pool, lambda c: random.choice(users), f"{state}{n}")
                    latencies, elapsed = await closed_loop(op, args.clients, args.seconds)
                    rates[state].append(len(latencies) / elapsed)
                    p50s[state].append(statistics.median(latencies) * 1000)
            print(f"{'trigger':<10}{'pairs/s (median of rounds)':>28}{'p50 ms':>9}   rounds")
            for state in ("disabled", "enabled"):
                print(f"{state:<10}{statistics.median(rates[state]):>28,.0f}{statistics.median(p50s[state]):>9.2f}   "
                      + " ".join(f"{r:,.0f}" for r in rates[state]))
            ratio = statistics.median(rates["enabled"]) / statistics.median(rates["disabled"])
            print(f"enabled / disabled throughput: {ratio:.3f}")
        finally:
            await pool.close()
    finally:
        admin = await asyncpg.connect(args.database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=50)
    sys.exit(asyncio.run(main(parser.parse_args())))
