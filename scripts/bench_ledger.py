#!/usr/bin/env python3
"""Ledger benchmark: reserve+capture pairs per second and their latency, beside baselines.

Makes a throwaway database on the Postgres server (like the test suite), applies the
migrations, runs each scenario with 50 concurrent clients through a pool built exactly as the
server builds it, prints a table, checks the ledger still matches the balances, and drops
the database.

Scenarios:
  baseline SELECT 1        a bare round trip through the same pool
  baseline UPDATE          one single-row UPDATE (a committed write) per operation
  many accounts            reserve(1) + capture(1) on a random account of --accounts
  hot account              reserve(1) + capture(1), every client on the same account
Each runs closed-loop (every client sends its next pair as soon as the last returns: the
most the machine does; latency then grows with the queue, clients / throughput). The many
accounts case also runs open-loop at --rate pairs/s: latency at the target load, measured
from each pair's scheduled start so time spent queueing is counted.

    .venv/bin/python scripts/bench_ledger.py [--seconds 5] [--clients 50] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from server.credits import service  # noqa: E402
from server.db import create_pool, migrate  # noqa: E402
from server.settings import Settings  # noqa: E402
from benchtools import db_url  # noqa: E402

Op = Callable[[int, int], Awaitable[None]]  # (client number, sequence number)



class Result:
    def __init__(self, name: str, mode: str, clients: int, latencies: list[float], elapsed: float, unit: str):
        self.name, self.mode, self.clients, self.unit = name, mode, clients, unit
        self.count = len(latencies)
        self.rate = self.count / elapsed
        ordered = sorted(latencies)
        self.p50 = statistics.median(ordered) * 1000
        self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        self.max = ordered[-1] * 1000


async def closed_loop(op: Op, clients: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        seq = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await op(c, seq)
            latencies.append(time.perf_counter() - started)
            seq += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies, time.perf_counter() - started


async def open_loop(op: Op, clients: int, seconds: float, rate: float) -> tuple[list[float], float]:
    """Each client sends on a fixed schedule; latency counts from the scheduled time."""
    latencies: list[float] = []
    per_client = clients / rate
    start = time.perf_counter() + 0.05
    total = int(seconds * rate / clients)

    async def client(c: int) -> None:
        for seq in range(total):
            scheduled = start + (seq + c / clients) * per_client
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await op(c, seq)
            latencies.append(time.perf_counter() - scheduled)

    await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies, time.perf_counter() - start


async def make_accounts(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    now = await pool.fetchval("SELECT now()")
    rows = await pool.fetch(
        "INSERT INTO users (email, password_hash) SELECT 'bench-' || g || '@example.com', 'x' "
        "FROM generate_series(1, $1) g RETURNING id",
        count,
    )
    users = [r["id"] for r in rows]

    async def prepare(user: uuid.UUID) -> None:
        await service.set_plan(pool, user, "pro")
        await service.grant_period(pool, user, now - timedelta(days=1), now + timedelta(days=29), 1_000_000_000,
                                   key=f"bench:{user}")

    await asyncio.gather(*(prepare(u) for u in users))
    return users


def ledger_pair(pool: asyncpg.Pool, pick: Callable[[int], uuid.UUID], run: str) -> Op:
    async def op(c: int, seq: int) -> None:
        hold = await service.reserve(pool, pick(c), 1, f"{run}:{c}:{seq}")
        await service.capture(pool, hold.id, 1)

    return op


def print_table(results: list[Result]) -> None:
    header = f"{'scenario':<24}{'load':<15}{'clients':>8}{'ops':>9}{'per second':>17}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        rate = f"{r.rate:,.0f} {r.unit}"
        print(f"{r.name:<24}{r.mode:<15}{r.clients:>8}{r.count:>9}{rate:>17}{r.p50:>9.2f}{r.p99:>9.2f}{r.max:>9.2f}")


async def main(args: argparse.Namespace) -> int:
    name = f"sfx_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = db_url(args.database_url, name)
    try:
        await migrate(dsn)
        settings = Settings().replace(database_url=dsn, db_pool_min=args.pool, db_pool_max=args.pool)
        pool = await create_pool(settings)
        try:
            return await run(pool, args)
        finally:
            await pool.close()
    finally:
        admin = await asyncpg.connect(args.database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    users = await make_accounts(pool, args.accounts)
    hot = users[0]
    results: list[Result] = []

    async def measure(label: str, mode: str, op: Op, unit: str, rate: float | None = None) -> None:
        await closed_loop(op, args.clients, 0.5)  # warm the pool and the prepared statements
        if rate is None:
            latencies, elapsed = await closed_loop(op, args.clients, args.seconds)
        else:
            latencies, elapsed = await open_loop(op, args.clients, args.seconds, rate)
        results.append(Result(label, mode, args.clients, latencies, elapsed, unit))
        print(f"  measured {label} ({mode})", file=sys.stderr)

    async def select_one(c: int, seq: int) -> None:
        await pool.fetchval("SELECT 1")

    async def single_update(c: int, seq: int) -> None:
        await pool.execute("UPDATE credit_accounts SET updated_at = now() WHERE user_id = $1", random.choice(users))

    runs = iter(range(1_000_000))
    many = lambda: ledger_pair(pool, lambda c: random.choice(users), f"many{next(runs)}")  # noqa: E731
    one = lambda: ledger_pair(pool, lambda c: hot, f"hot{next(runs)}")  # noqa: E731

    await measure("baseline SELECT 1", "closed loop", select_one, "ops/s")
    await measure("baseline single UPDATE", "closed loop", single_update, "ops/s")
    await measure("many accounts", "closed loop", many(), "pairs/s")
    await measure("many accounts", f"open {args.rate:,.0f}/s", many(), "pairs/s", rate=args.rate)
    await measure("hot account", "closed loop", one(), "pairs/s")

    print()
    print(f"Ledger benchmark: {args.clients} concurrent clients, pool of {args.pool} connections, "
          f"{args.seconds:g} s per run, {len(users)} accounts, {os.cpu_count()} CPUs")
    print("A pair is reserve(1) + capture(1): two statements, each its own committed transaction.\n")
    print_table(results)

    broken = await pool.fetchval("SELECT count(*) FROM credit_consistency WHERE NOT consistent")
    print(f"\nledger consistency after the runs: {'ok' if broken == 0 else f'{broken} account(s) disagree'}")
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.2f} on {os.cpu_count()} CPUs (other work on the machine skews figures)")
    many_closed = results[2]
    target = many_closed.rate >= 1000 and results[3].p99 < 20
    print(f"target (>= 1,000 pairs/s on many accounts, p99 < 20 ms at {args.rate:,.0f}/s): "
          f"{'met' if target else 'NOT met'}")
    return 0 if broken == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a Postgres server URL; a throwaway database is made on it")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--pool", type=int, default=Settings().db_pool_max, help="pooled connections (DB_POOL_MAX)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load of the many-accounts open-loop run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
