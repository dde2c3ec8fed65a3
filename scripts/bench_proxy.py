#!/usr/bin/env python
"""What does the proxy add to an ElevenLabs call? Both sides measured in one run.

(a) baseline: the official SDK calling the ElevenLabs simulator directly;
(b) the product: POST /v1/sfx through the proxy (auth, rate limit, idempotency record, credit
    hold and capture, key bank lease, the same SDK call, post-processing of the 2-second clip,
    storage, history row);
(c) the floor: a bare aiohttp pass-through (scripts/bench_floor.py) that forwards the same JSON to
    the simulator and answers its bytes. "proxy/floor" is (b)'s server CPU over (c)'s, same run.
Then Postgres round trips per generation, counted by a relay in front of Postgres
(scripts/bench_floor.py pgrelay) for a second proxy started against it: Syncs and simple Queries,
i.e. every statement plus BEGIN/COMMIT. The relay is kept out of the timed runs.

The simulator answers instantly (its audio cache serves the same clip every time), so the
difference between (a) and (b) is the proxy's own cost. Simulator and proxy each run as their
own process (`python -m server simulator` / `python -m server serve`, exactly as production
starts it: uvloop when installed, `--workers N`); the load comes from this one: (a) makes the
very SDK call the proxy makes (server.providers.elevenlabs: same client, same options), (b) posts
with aiohttp's client, the lightest Python HTTP client, so the load generator takes as little
as possible of the cores it shares with the proxy. "busy" is the share of all CPUs in use during a
run (any process), "stolen" the share a virtual machine's hypervisor kept for others while this
one wanted it; CPU per request is given for the simulator, the proxy, the benchmark database's
Postgres backends, Redis, and this process ("client").
Then concurrency 10 once more with the simulator answering in 200 ms (a "slow" fault), and
10,000 requests through the proxy while its resident memory is sampled: it must stay
flat. `--workers 1 2` measures the proxy with one worker process, then with two (CPU and
memory are then the sum over the workers).

Everything is throwaway: a database `sfx_bench_*` (dropped at the end), a Redis prefix (deleted),
a temporary data folder. The user is on a benchmark plan with no credit limit and a rate limit
out of reach.

    .venv/bin/python scripts/bench_proxy.py [--quick] [--workers 1 2] [--users N] [--profile proxy.prof]

`--profile FILE` runs the proxy under cProfile timed by the event-loop thread's own CPU clock and
prints where that CPU went: on a busy machine wall-clock profiles (and sampling profilers) also
count the time a call spent waiting for a core. The profiler slows the proxy down, so figures
from such a run are for finding costs, not for quoting.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import pstats
import base64
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import aiohttp  # noqa: E402
import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from server.auth import verification  # noqa: E402
from server.credits import service as credits  # noqa: E402
from server.db import migrate  # noqa: E402
from server.providers.elevenlabs import Upstream, create_http_client  # noqa: E402
from server.keybank import KeyBank  # noqa: E402
from server.settings import Settings  # noqa: E402
from benchtools import children, db_url, free_port  # noqa: E402
from benchtools import cpu_seconds as process_cpu  # noqa: E402

PROMPT = "Heavy wooden door slams shut in a stone hallway"
SECONDS = 2.0
# `python -c` body that runs `python -m server ...` under cProfile with a per-thread CPU clock.
PROFILED_SERVER = """
import cProfile, runpy, sys, time
out, sys.argv = sys.argv[1], ["server", *sys.argv[2:]]
profiler = cProfile.Profile(time.thread_time)
try:
    profiler.runcall(runpy.run_module, "server", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profiler.dump_stats(out)
"""


@dataclass
class Run:
    label: str
    concurrency: int
    latencies: list[float]
    elapsed: float
    cpu_ms: dict[str, float] | None = None  # CPU per request of each server process
    busy: float = 0.0  # share of the machine's CPUs busy during the run (any process)
    stolen: float = 0.0  # share the hypervisor gave to other machines while this one wanted it

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000





def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """User + system CPU time a process (and its worker processes) have used so far."""
    return sum(process_cpu(one) for one in (pid, *(children(pid) if with_children else ())))


def processes_named(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (Postgres names each backend's database there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def cpu_meter(needle: str):
    """CPU seconds used so far by the processes matching `needle` now (a pool's backends stay put)."""
    return lambda: sum(cpu_seconds(pid, with_children=False) for pid in processes_named(needle))


def machine_ticks() -> tuple[int, int, int]:
    """(busy, stolen, total) CPU ticks of the whole machine so far; stolen: taken by the hypervisor."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return sum(values) - idle - steal, steal, sum(values)


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process and its worker processes, in KiB."""
    current = peak = 0
    for one in (pid, *children(pid)):
        values = {}
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
        current += values["VmRSS"]
        peak += values["VmHWM"]
    return current, peak


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, path: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(400):
            if proc.returncode is not None:
                raise SystemExit(f"{url} exited with {proc.returncode}")
            try:
                if (await client.get(url + path)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


async def measure(label: str, call, total: int, concurrency: int, meters: dict | None = None) -> Run:
    """`total` calls, `concurrency` at a time; with `meters` (name: CPU seconds so far), also the
    CPU each of those spent."""
    before = {name: meter() for name, meter in (meters or {}).items()}
    before["client"] = time.process_time()
    ticks_before = machine_ticks()
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = {name: (meter() - before[name]) * 1000 / total for name, meter in (meters or {}).items()}
    cpu["client"] = (time.process_time() - before["client"]) * 1000 / total
    ticks_after = machine_ticks()
    span = max(1, ticks_after[2] - ticks_before[2])
    busy = (ticks_after[0] - ticks_before[0]) / span
    stolen = (ticks_after[1] - ticks_before[1]) / span
    return Run(label, concurrency, latencies, elapsed, cpu, busy, stolen)


def report(direct: Run, proxied: Run, floor: Run) -> None:
    print(f"  concurrency {direct.concurrency:>3}  ({len(direct.latencies)} / {len(proxied.latencies)} requests)")
    print(f"    {'':<24}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'busy':>6}{'stolen':>7}"
          f"   CPU ms per request")
    for run in (direct, floor, proxied):
        cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in (run.cpu_ms or {}).items())
        print(f"    {run.label:<24}{run.rps:>8.1f}{run.pct(50):>9.2f}{run.pct(95):>9.2f}{run.pct(99):>9.2f}"
              f"{run.busy:>6.0%}{run.stolen:>7.0%}   {cpu}")
    print(f"    {'added by the proxy':<24}{'':>8}{proxied.pct(50) - direct.pct(50):>9.2f}"
          f"{proxied.pct(95) - direct.pct(95):>9.2f}{proxied.pct(99) - direct.pct(99):>9.2f}")
    print(f"    {'added by the floor':<24}{'':>8}{floor.pct(50) - direct.pct(50):>9.2f}"
          f"{floor.pct(95) - direct.pct(95):>9.2f}{floor.pct(99) - direct.pct(99):>9.2f}")
    ratio = proxied.cpu_ms["proxy"] / max(floor.cpu_ms["floor"], 1e-9)
    print(f"    proxy/floor server CPU {ratio:.1f}x ({proxied.cpu_ms['proxy']:.2f} / {floor.cpu_ms['floor']:.2f} ms); "
          f"throughput proxy/floor {proxied.rps / floor.rps:.2f}")


def poster(http: aiohttp.ClientSession, users: list[dict[str, str]]):
    next_user = itertools.cycle(users).__next__  # with --users N, requests take turns among N accounts

    async def proxied() -> None:
        async with http.post("/v1/sfx", json={"prompt": PROMPT, "duration_seconds": SECONDS},
                             headers={**next_user(), "Idempotency-Key": uuid.uuid4().hex}) as r:
            body = await r.read()
            if r.status != 200:
                raise SystemExit(f"proxy answered {r.status}: {body[:300]!r}")
            assert r.headers["content-type"] == "audio/wav" and len(body) > 1000

    return proxied


async def bench_one(args: argparse.Namespace, http: aiohttp.ClientSession, floor_http: aiohttp.ClientSession,
                    upstream: Upstream, users: list[dict[str, str]], api_key: str, pids: dict[str, int],
                    db_name: str) -> None:
    sim_pid, proxy_pid = pids["simulator"], pids["proxy"]

    async def direct() -> None:
        audio = await upstream.sound_effect(api_key, text=PROMPT, duration_seconds=SECONDS, prompt_influence=0.3,
                                            loop=False, model_id="eleven_text_to_sound_v2")
        assert len(audio.data) > 1000

    proxied = poster(http, users)

    async def floor() -> None:
        async with floor_http.post("/v1/sfx", json={"text": PROMPT, "duration_seconds": SECONDS,
                                                    "prompt_influence": 0.3, "loop": False,
                                                    "model_id": "eleven_text_to_sound_v2"}) as r:
            body = await r.read()
            assert r.status == 200 and len(body) > 1000, (r.status, body[:200])

    # Warm every path: connections, caches, the simulator's synthesis of the clip.
    await measure("warm-up", direct, 50, 5)
    await measure("warm-up", floor, 50, 5)
    await measure("warm-up", proxied, 50, 5)

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nSFX, {SECONDS:g}-second clip, 48 kHz WAV; simulator answering instantly; "
          f"{os.cpu_count()} CPUs, load average {load} (other work on the machine skews every figure)\n")
    meters = {"simulator": lambda: cpu_seconds(sim_pid), "proxy": lambda: cpu_seconds(proxy_pid),
              "postgres": cpu_meter(f" {db_name} "), "redis": cpu_meter("redis-server")}
    levels = [(1, 100), (10, 500), (50, 500)] if args.quick else [(1, 300), (10, 2000), (50, 2000)]
    for concurrency, count in levels:
        direct_run = await measure("(a) SDK -> simulator", direct, count, concurrency, meters)
        floor_run = await measure("(c) pass-through floor", floor, count, concurrency,
                                  {**meters, "floor": lambda: cpu_seconds(pids["floor"])})
        proxied_run = await measure("(b) client -> proxy", proxied, count, concurrency, meters)
        report(direct_run, proxied_run, floor_run)
        print()

    # The same at concurrency 10 with a 200 ms upstream: the answers arrive together and queue on
    # the proxy's CPU, which is what users of a real provider see.
    sim = f"http://127.0.0.1:{urlsplit(upstream.base_url).port}"
    async with aiohttp.ClientSession(sim) as admin:
        async with admin.post("/_sim/faults", json={"api_key": api_key, "fault": "slow", "delay": 0.2}) as r:
            assert r.status == 201, await r.text()
        count = 100 if args.quick else 400
        print("  upstream answering in 200 ms")
        direct_run = await measure("(a) SDK -> simulator", direct, count, 10, meters)
        floor_run = await measure("(c) pass-through floor", floor, count, 10,
                                  {**meters, "floor": lambda: cpu_seconds(pids["floor"])})
        proxied_run = await measure("(b) client -> proxy", proxied, count, 10, meters)
        report(direct_run, proxied_run, floor_run)
        print()
        async with admin.delete("/_sim/faults", json={"api_key": api_key}) as r:
            assert r.status == 204, await r.text()

    total = 2000 if args.quick else 10_000
    step = total // 10
    print(f"  proxy memory over {total} requests at concurrency 10 (resident KiB after each {step})")
    samples = []
    for _ in range(10):
        await measure("memory", proxied, step, 10)
        samples.append(rss_kib(proxy_pid))
    current = [s[0] for s in samples]
    print("    " + " ".join(str(v) for v in current))
    print(f"    first {current[0]} KiB, last {current[-1]} KiB, growth after the first "
          f"{step}: {current[-1] - current[0]:+d} KiB; peak (VmHWM) {samples[-1][1]} KiB")


async def count_round_trips(env: dict[str, str], base: str, users: list[dict[str, str]],
                            procs: list[asyncio.subprocess.Process], log) -> None:
    """Postgres round trips per generation: a proxy (one worker) whose pool goes through the relay."""
    target = urlsplit(base)
    relay_port, proxy_port = free_port(), free_port()
    relay = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "bench_floor.py"), "pgrelay", "--port", str(relay_port),
        "--target", f"{target.hostname}:{target.port or 5432}", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
    )
    procs.append(relay)
    assert (await relay.stdout.readline()).strip() == b"ready"

    async def counted() -> int:
        relay.stdin.write(b"?\n")
        return int(await relay.stdout.readline())

    relayed = urlsplit(env["DATABASE_URL"])._replace(netloc=f"{target.username or 'postgres'}@127.0.0.1:{relay_port}",
                                                     query="sslmode=disable")
    proxy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--no-migrate", "--workers", "1", cwd=ROOT,
        env={**env, "DATABASE_URL": urlunsplit(relayed), "PORT": str(proxy_port)}, stdout=log, stderr=log,
    )
    procs.append(proxy)
    url = f"http://127.0.0.1:{proxy_port}"
    await wait_healthy(url, proxy, "/healthz")
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=60)) as http:
        call = poster(http, users)
        await measure("warm-up", call, 50, 10)  # pools filled, caches warm
        before, total = await counted(), 300
        await measure("round trips", call, total, 10)
        trips = (await counted() - before) / total
    print(f"\n  Postgres round trips per generation (concurrency 10, {total} requests): {trips:.2f}")
    proxy.terminate()
    await asyncio.wait_for(proxy.wait(), 60)
    relay.stdin.close()


async def main(args: argparse.Namespace) -> None:
    base = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    tag = uuid.uuid4().hex[:10]
    db_name = f"sfx_bench_{tag}"
    data_dir = Path(tempfile.mkdtemp(prefix="sfx-bench-"))
    api_key = "sk_bench_" + secrets.token_hex(20)
    sim_port, proxy_port = free_port(), free_port()
    sim_url, proxy_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{proxy_port}"
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": db_url(base, db_name),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"sfxbench:{tag}:",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "BCRYPT_COST": "4",
        "SIGNUP_MAX_PER_IP": "1000000",
        "ACCESS_TOKEN_TTL": "7200",
        "DB_POOL_MIN": "5",
        "DB_POOL_MAX": "20",
        "JWT_SECRETS": "bench=" + secrets.token_urlsafe(32),
        "JWT_ACTIVE_KID": "bench",
        "KEYBANK_MASTER_KEYS": "1=" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "ELEVENLABS_BASE_URL": sim_url,
        "RETENTION_SWEEP_INTERVAL": "86400",
        "HOST": "127.0.0.1",
        "PORT": str(proxy_port),
    }
    settings = Settings.from_env(env)

    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    await admin.close()
    procs: list[asyncio.subprocess.Process] = []
    pool = redis = None
    try:
        await migrate(settings.database_url)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
        # A plan for the benchmark user: unlimited credits, a rate limit it cannot reach.
        await pool.execute(
            """INSERT INTO plans (code, name, price_cents, monthly_credits, calendar_periods, requests_per_minute,
                                  requests_per_hour, voice, max_sfx_seconds, max_variations, max_voice_chars,
                                  retention_days, formats, sort_order)
               VALUES ('bench', 'Benchmark', 0, NULL, false, 10000000, 100000000, true, 30, 4, 10000, 365,
                       ARRAY['wav', 'mp3'], 99)"""
        )
        log_path = data_dir / "logs"
        log_path.mkdir()
        sim_log = open(log_path / "simulator.log", "wb")
        proxy_log = open(log_path / "proxy.log", "wb")
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "simulator", "--port", str(sim_port), "--key", api_key,
            "--character-limit", str(10**10), "--max-concurrency", "1000", "--same-takes", env=env, cwd=ROOT,
            stdout=sim_log, stderr=sim_log,
        )
        procs.append(sim)
        await wait_healthy(sim_url, sim, "/v1/models")
        floor_port = free_port()
        floor_proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "scripts" / "bench_floor.py"), "passthrough", "--port", str(floor_port),
            "--upstream", sim_url, "--key", api_key, env=env, cwd=ROOT, stdout=sim_log, stderr=sim_log,
        )
        procs.append(floor_proc)
        await wait_healthy(f"http://127.0.0.1:{floor_port}", floor_proc, "/healthz")
        async with KeyBank.open(settings) as bank:
            await bank.add_key(provider="elevenlabs", label="bench", secret=api_key, max_concurrency=1000)
        users: list[dict[str, str]] = []
        for workers in args.workers:
            runner = ["-c", PROFILED_SERVER, args.profile] if args.profile else ["-m", "server"]
            proxy = await asyncio.create_subprocess_exec(
                sys.executable, *runner, "serve", "--no-migrate", "--workers", str(workers), env=env, cwd=ROOT,
                stdout=proxy_log, stderr=proxy_log,
            )
            procs.append(proxy)
            await wait_healthy(proxy_url, proxy, "/healthz")
            await asyncio.sleep(2 if workers > 1 else 0)  # every worker listening, not only the first
            print(f"\n=== proxy with {workers} worker process(es) ===", flush=True)
            print(f"simulator pid {sim.pid}, proxy pid {proxy.pid} (attach a profiler to either)", flush=True)
            sdk_http = create_http_client(100)
            async with aiohttp.ClientSession(proxy_url, connector=aiohttp.TCPConnector(limit=100),
                                             timeout=aiohttp.ClientTimeout(total=60)) as http, \
                    aiohttp.ClientSession(f"http://127.0.0.1:{floor_port}", connector=aiohttp.TCPConnector(limit=100),
                                          timeout=aiohttp.ClientTimeout(total=60)) as floor_http:
                for n in range(len(users), args.users):
                    email = f"bench-{tag}-{n}@example.com"
                    async with http.post("/v1/auth/register", json={
                            "email": email, "password": "benchmark password 1"}) as resp:
                        resp.raise_for_status()
                    await verification.mark_verified(pool, await pool.fetchval("SELECT id FROM users WHERE email = $1", email))
                    async with http.post("/v1/auth/login", json={
                            "email": email, "password": "benchmark password 1", "device_name": "bench"}) as resp:
                        resp.raise_for_status()
                        signed = await resp.json()
                    await credits.set_plan(pool, uuid.UUID(signed["user"]["id"]), "bench")
                    users.append({"Authorization": "Bearer " + signed["access_token"]})
                pids = {"simulator": sim.pid, "proxy": proxy.pid, "floor": floor_proc.pid}
                await bench_one(args, http, floor_http, Upstream(sdk_http, sim_url), users, api_key, pids, db_name)
            await sdk_http.aclose()
            proxy.terminate()
            await asyncio.wait_for(proxy.wait(), 60)
            if args.profile:
                print(f"\n  where the proxy's CPU went (cProfile, {args.profile}; top 40 by own time)")
                stats = pstats.Stats(args.profile)
                stats.sort_stats("tottime").print_stats(40)
                stats.sort_stats("cumulative").print_stats(60)
        await count_round_trips(env, base, users, procs, proxy_log)
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
        if pool is not None:
            await pool.close()
        admin = await asyncpg.connect(base)
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
        redis = aioredis.from_url(redis_url)
        keys = [k async for k in redis.scan_iter(match=f"sfxbench:{tag}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        logs = (data_dir / "logs" / "proxy.log")
        if logs.exists() and api_key in logs.read_text(errors="replace"):
            print("WARNING: the provider key appeared in the proxy's logs")
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, not figures to quote)")
    parser.add_argument("--users", type=int, default=1,
                        help="accounts the requests take turns among (default 1: every request locks the same "
                             "credit account, the worst case; real traffic comes from many editors)")
    parser.add_argument("--profile", metavar="FILE", help="run the proxy under cProfile, save to FILE, print the top")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="proxy worker processes; several values measure each in turn (e.g. 1 2)")
    asyncio.run(main(parser.parse_args()))
