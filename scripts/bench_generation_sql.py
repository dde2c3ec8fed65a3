#!/usr/bin/env python
"""What Postgres spends on one generation's statements, without the server around them.

One connection runs, N times each: the opening statement (generation_open: idempotency record,
credit hold, pending row) alone, then the opening followed by the closing statement
(generation_succeed: history row, request status, capture, a commit waiting for the WAL flush),
and `SELECT 1` as the floor of a round trip. It prints the CPU the connection's backend process
spent per iteration (from /proc, so Linux only) beside the wall time. scripts/bench_proxy.py
measures the same statements inside the product, with the authentication query and under load.

A throwaway database `sfx_bench_sql_*` is created, migrated and dropped.

    .venv/bin/python scripts/bench_generation_sql.py [--iterations N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from server.db import migrate  # noqa: E402
from benchtools import cpu_seconds, db_url  # noqa: E402



async def run(base_url: str, iterations: int) -> None:
    name = f"sfx_bench_sql_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = db_url(base_url, name)
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        user = await conn.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", f"{name}@example.com")
        # Enterprise: a metered plan with no limit, so the loop never runs out of credits.
        await conn.execute("INSERT INTO credit_accounts (user_id, plan_code) VALUES ($1, 'enterprise')", user)
        params = json.dumps({"prompt": "heavy wooden door slams", "duration_seconds": 2.0, "takes": 1})

        async def generation(close: bool) -> None:
            key = uuid.uuid4().hex
            opened = await conn.fetchrow(
                "SELECT * FROM generation_open($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                user, key, "r" * 64, "sfx", None, params, "heavy wooden door slams", None, [0], "a" * 64,
                [f"gen:{key}:0"], [1], 600.0, 7,
            )
            if close:
                await conn.fetchrow(
                    "SELECT * FROM generation_succeed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
                    " $15, $16)",
                    opened["generation_ids"][0], opened["hold_ids"][0], 1, opened["id"], 1, f"{key}.wav", "wav",
                    2.0, 48000, 192_044, False, 1, "req", 40, 1, 5,
                )

        async def floor(_: bool) -> None:
            await conn.fetchval("SELECT 1")

        print(f"Postgres backend CPU per iteration, one connection, {iterations} iterations each")
        for label, step, close in (("SELECT 1 (a round trip)", floor, False),
                                   ("generation_open", generation, False),
                                   ("generation_open + generation_succeed", generation, True)):
            for _ in range(50):  # plans cached, pages warm
                await step(close)
            cpu, wall = cpu_seconds(pid), time.perf_counter()
            for _ in range(iterations):
                await step(close)
            cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / iterations
            wall_ms = (time.perf_counter() - wall) * 1000 / iterations
            print(f"  {label:<40} {cpu_ms:6.3f} ms CPU   {wall_ms:6.3f} ms wall")
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="any database of the server to test on (default: $DATABASE_URL)")
    args = parser.parse_args()
    asyncio.run(run(args.database_url, args.iterations))
