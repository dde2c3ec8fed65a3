"""Audio downloads from an S3 bucket: streamed through the server, or a presigned link the panel
fetches from the bucket itself. Measures, in one run against one bucket (moto's S3 server, started
here on a free port):

  floor     the client GETs a presigned URL from the bucket directly (the bucket's own speed)
  stream    GET through the server: serve_object streams the object (Range-capable)
  presign   GET a link from the server (a local signature), then the object from the bucket

and prints latency percentiles per download and the server process' CPU per download (read from
/proc), which is what each way costs the machines that run the API.

    .venv/bin/python scripts/bench_storage.py [--requests 200] [--concurrency 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchtools import cpu_seconds, free_port  # noqa: E402


def wav_bytes(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(os.urandom(int(48000 * seconds) * 2))
    return out.getvalue()


def storage_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {"STORAGE_URL": f"s3://{bucket}/audio", "S3_ENDPOINT": endpoint, "S3_ACCESS_KEY_ID": "bench",
            "S3_SECRET_ACCESS_KEY": "bench-secret", "STORAGE_TIMEOUT": "30"}


def serve(port: int) -> None:
    """The server side: /stream/{key} through serve_object, /link/{key} a presigned URL."""
    from aiohttp import web

    from server.settings import Settings
    from server.storage import open_storage
    from server.storage.http import serve_object

    storage = open_storage(Settings.from_env({**os.environ, "APP_ENV": "test"}))

    async def stream(request: web.Request) -> web.StreamResponse:
        return await serve_object(request, storage, request.match_info["key"], content_type="audio/wav")

    async def link(request: web.Request) -> web.Response:
        return web.json_response({"url": await storage.presign(request.match_info["key"], expires_in=300)})

    app = web.Application()
    app.router.add_get("/stream/{key}", stream)
    app.router.add_get("/link/{key}", link)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def measure(name: str, fetch, requests: int, concurrency: int, server_pid: int | None) -> dict:
    latencies: list[float] = []
    queue = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)

    async def worker():
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            await fetch()
            latencies.append(time.perf_counter() - started)

    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    cpu = (cpu_seconds(server_pid) - cpu_before) if server_pid else 0.0
    latencies.sort()
    return {
        "way": name, "req/s": requests / wall,
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "server CPU ms/download": cpu / requests * 1000,
    }


async def bench(args) -> None:
    import aiohttp

    from server.settings import Settings
    from server.storage import open_storage

    moto_port, app_port = free_port(), free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    server = None
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        urllib.request.urlopen(urllib.request.Request(endpoint + "/bench", method="PUT"), timeout=5).close()
        env = {**os.environ, **storage_env(endpoint, "bench")}
        storage = open_storage(Settings.from_env({**env, "APP_ENV": "test", "DATA_DIR": "/tmp/bench-storage"}))
        blob = wav_bytes(args.seconds)
        key = await storage.put(blob, "wav")
        direct = await storage.presign(key, expires_in=600)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(app_port)], env=env)
        base = f"http://127.0.0.1:{app_port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{base}/link/{key}") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def get_all(url: str) -> None:
                async with session.get(url) as resp:
                    assert resp.status == 200, resp.status
                    size = 0
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        size += len(chunk)
                    assert size == len(blob)

            async def floor():
                await get_all(direct)

            async def stream():
                await get_all(f"{base}/stream/{key}")

            async def presign():
                async with session.get(f"{base}/link/{key}") as resp:
                    url = (await resp.json())["url"]
                await get_all(url)

            await stream(), await presign()  # warm up
            rows = [
                await measure("floor (bucket direct)", floor, args.requests, args.concurrency, server.pid),
                await measure("stream through server", stream, args.requests, args.concurrency, server.pid),
                await measure("presigned link", presign, args.requests, args.concurrency, server.pid),
            ]
        await storage.aclose()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        moto.terminate()
        moto.wait(10)
    print(f"{len(blob) / 1e6:.2f} MB WAV ({args.seconds:g} s), {args.requests} downloads, concurrency {args.concurrency}")
    print(f"{'way':24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/download':>24}")
    for row in rows:
        print(f"{row['way']:24} {row['req/s']:8.1f} {row['p50 ms']:8.1f} {row['p99 ms']:8.1f} "
              f"{row['server CPU ms/download']:24.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the WAV downloaded")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
