#!/usr/bin/env python
"""Update manifest checks per second per worker, beside a bare aiohttp handler, in one run.

(a) the product: `GET /v1/updates/cep/stable` on `python -m server serve --workers 1` (every
    middleware, the declared route, the manifest from memory);
(b) the floor: a bare aiohttp app (same runner options, uvloop like `serve`) whose one handler
    returns the same bytes and headers, and 304 on a matching If-None-Match.
Each is measured with and without If-None-Match. The figures that matter are the server's CPU per
request (from /proc, so the load generator's share of the two cores does not count) and the
throughput; the goal is the product within 1.5x of the bare handler. Runs alternate (a, b, a, b)
so drift on a shared machine hits both.

Everything is throwaway: a database `sfx_bench_*` (dropped at the end), a Redis prefix (deleted),
a temporary data folder.

    .venv/bin/python scripts/bench_updates.py [--requests 20000] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from server.db import migrate  # noqa: E402
from server.releases import Actor, ReleaseService, package_storage  # noqa: E402
from server.settings import Settings  # noqa: E402
from benchtools import children, cpu_seconds, db_url, free_port  # noqa: E402

BARE_APP = """
import sys
from aiohttp import web
from server import serving

body, etag, cache, signatures, port = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
headers = {"Content-Type": "application/json", "ETag": etag, "Cache-Control": cache, "X-Update-Signatures": signatures}
not_modified = {"ETag": etag, "Cache-Control": cache}

async def manifest(request):
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=not_modified)
    return web.Response(body=body, headers=headers)

async def main():
    app = web.Application()
    app.router.add_get("/v1/updates/cep/stable", manifest)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    import asyncio
    await asyncio.Event().wait()

serving.run(main())
"""





def serving_pids(parent: int) -> list[int]:
    """The process answering requests: the parent itself, or its worker children."""
    return children(parent) or [parent]


def package(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("CSXS/manifest.xml", f'<ExtensionManifest ExtensionBundleId="com.sfxstudio.panel" ExtensionBundleVersion="{version}"/>')
        z.writestr("index.html", "<!doctype html>")
        z.writestr("META-INF/signatures.xml", "<signatures/>")
    return buffer.getvalue()


async def wait_up(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            if proc.returncode is not None:
                raise SystemExit(f"{url} exited with {proc.returncode}")
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


async def measure(http: aiohttp.ClientSession, url: str, headers: dict, expect: int, total: int, concurrency: int,
                  pids: list[int]) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request)."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with http.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != expect:
                    raise SystemExit(f"{url} answered {resp.status}, expected {expect}")

    cpu_before = sum(cpu_seconds(p) for p in pids)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    return total / elapsed, cpu * 1e6 / total


async def main(args: argparse.Namespace) -> None:
    base_db = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"sfx_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(db_url(base_db, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    data_dir = tempfile.mkdtemp(prefix="sfx-bench-updates-")
    prefix = f"sfxbench:{secrets.token_hex(4)}:"
    port = free_port()
    env = {
        **os.environ, "APP_ENV": "test", "DATABASE_URL": db_url(base_db, name), "DATA_DIR": data_dir,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "REDIS_PREFIX": prefix,
        "LOG_LEVEL": args.log_level, "PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    procs: list[asyncio.subprocess.Process] = []
    try:
        await migrate(env["DATABASE_URL"])
        settings = Settings.from_env(env)
        async with ReleaseService.open(settings, package_storage(settings)) as service:
            await service.publish(package("1.4.0"), product="cep", channel="stable", version="1.4.0",
                                  actor=Actor(None, "bench"), notes_md="- Faster previews\n- Seamless loops")

        product = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "serve", "--port", str(port), "--workers", "1", "--no-migrate", env=env,
            cwd=str(ROOT), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        procs.append(product)
        ours = f"http://127.0.0.1:{port}/v1/updates/cep/stable"
        await wait_up(f"http://127.0.0.1:{port}/healthz", product)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            async with http.get(ours) as resp:
                body, headers = await resp.read(), resp.headers
            etag = headers["ETag"]
            body_file = Path(data_dir) / "manifest.json"
            body_file.write_bytes(body)
            bare_port = free_port()
            bare = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BARE_APP, str(body_file), etag, headers["Cache-Control"],
                headers["X-Update-Signatures"], str(bare_port), env=env, cwd=str(ROOT))
            procs.append(bare)
            floor = f"http://127.0.0.1:{bare_port}/v1/updates/cep/stable"
            await wait_up(floor, bare)
            async with http.get(floor) as resp:
                assert await resp.read() == body, "the bare handler serves the same bytes"

            pids = {"product": serving_pids(product.pid), "bare": serving_pids(bare.pid)}
            cases = [("full body", {}, 200), ("If-None-Match", {"If-None-Match": etag}, 304)]
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            # Warm both (imports, caches) before measuring.
            for url in (ours, floor):
                await measure(http, url, {}, 200, 500, args.concurrency, [])
            for _ in range(args.rounds):
                for case, extra, status in cases:
                    for who, url in (("product", ours), ("bare", floor)):
                        results.setdefault((case, who), []).append(
                            await measure(http, url, extra, status, args.requests, args.concurrency, pids[who]))

        print(f"manifest {len(body)} bytes; {args.requests} requests x {args.rounds} rounds per line, "
              f"concurrency {args.concurrency}, one worker each, product LOG_LEVEL={args.log_level}")
        print("  req/s is bounded by the load generator sharing the cores; 'req/s per core' = 1e6 / CPU us per "
              "request, what one worker could answer with a core to itself")
        print(f"  {'':<34}{'req/s':>9}{'CPU us/req':>12}{'req/s per core':>16}")
        for case, _, _ in cases:
            rows = {}
            for who in ("product", "bare"):
                runs = results[(case, who)]
                rps = sum(r for r, _ in runs) / len(runs)
                cpu = sum(c for _, c in runs) / len(runs)
                rows[who] = (rps, cpu)
                label = "/v1/updates (the product)" if who == "product" else "bare aiohttp handler"
                print(f"  {case + ': ' + label:<34}{rps:>9.0f}{cpu:>12.0f}{1e6 / cpu:>16.0f}")
            ratio_rps = rows["bare"][0] / rows["product"][0]
            ratio_cpu = rows["product"][1] / rows["bare"][1]
            verdict = "within" if max(ratio_rps, ratio_cpu) <= 1.5 else "NOT within"
            print(f"  {case}: bare/product throughput {ratio_rps:.2f}x, product/bare CPU per request {ratio_cpu:.2f}x "
                  f"({verdict} the 1.5x goal)")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        client = aioredis.from_url(env["REDIS_URL"])
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--log-level", default="INFO", help="the product's LOG_LEVEL (INFO, the default, writes an access line per request)")
    asyncio.run(main(parser.parse_args()))
