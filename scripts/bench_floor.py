#!/usr/bin/env python
"""Helper processes for scripts/bench_proxy.py, each run as its own process so its CPU is its own.

    bench_floor.py passthrough --port P --upstream URL --key KEY
        The floor: the least an aiohttp server can do for a sound effect. It takes the client's
        JSON, posts it to the provider (the simulator) with the key, and answers the bytes. No auth,
        no database, no processing: what the proxy costs beyond this is the product's own work.

    bench_floor.py pgrelay --port P --target HOST:PORT
        A byte relay in front of Postgres that counts round trips: the frontend messages after which
        a client waits for the server (Sync ends an extended-protocol exchange, Query a simple one).
        asyncpg pipelines Parse/Bind/Execute and sends one Sync per statement, so the count is the
        number of statements plus BEGIN/COMMIT, exactly what a pool-side counter would see. Each
        line read on stdin is answered with the count so far on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from server.serving import run  # noqa: E402

WAITING_FOR_SERVER = {ord("S"), ord("Q")}  # Sync, simple Query


def passthrough_app(upstream: str, key: str) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session(app: web.Application):
        app[session_key] = aiohttp.ClientSession(upstream, connector=aiohttp.TCPConnector(limit=100))
        yield
        await app[session_key].close()

    async def sfx(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app[session_key].post(
            "/v1/sound-generation", params={"output_format": "wav_48000"}, data=body,
            headers={"xi-api-key": key, "content-type": "application/json"},
        ) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="audio/wav")

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/sfx", sfx)
    app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
    return app


async def serve_passthrough(args: argparse.Namespace) -> None:
    runner = web.AppRunner(passthrough_app(args.upstream, args.key), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    await asyncio.Event().wait()


class RoundTripRelay:
    """A byte relay in front of Postgres counting the messages a client then waits on (see the
    module docstring). Also used by tests/test_generation_cost.py, in process."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.count = 0
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (`port` 0: any free one); returns the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The startup packet (and an SSL request before it) has no type byte.
        while True:
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
            writer.write(struct.pack("!I", length) + body)
            if length != 8:  # not SSLRequest/GSSENCRequest: the startup message itself
                break
        while True:
            head = await reader.readexactly(5)
            length = struct.unpack("!I", head[1:])[0]
            body = await reader.readexactly(length - 4)
            if head[0] in WAITING_FOR_SERVER:
                self.count += 1
            writer.write(head + body)

    @staticmethod
    async def _server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        tasks = [asyncio.ensure_future(self._client_to_server(client_reader, server_writer)),
                 asyncio.ensure_future(self._server_to_client(server_reader, client_writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            client_writer.close()
            server_writer.close()


async def serve_relay(args: argparse.Namespace) -> None:
    host, port = args.target.rsplit(":", 1)
    relay = RoundTripRelay(host, int(port))
    await relay.start(args.port)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    while await stdin.readline():
        print(relay.count, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("passthrough")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--key", required=True)
    r = sub.add_parser("pgrelay")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--target", required=True)
    args = parser.parse_args()
    run(serve_passthrough(args) if args.mode == "passthrough" else serve_relay(args))
