"""Private Postgres and Redis servers that a test may restart, crash, flush or stop.

The machine's shared servers (5432, 6379) serve every other test run at the same time, so the
outage tests never touch them: this module starts one Postgres cluster (the Debian binaries
under /usr/lib/postgresql/*/bin, as `scripts/lib/setup.sh` does) and one Redis on free ports in
temporary folders, once per test session, and removes them at the end.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis

from server.db import migrate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # Postgres refuses to run as root; the Debian package made the postgres user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PrivatePostgres:
    bin: Path
    dir: Path
    port: int

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "db"), *args]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def start(self) -> None:
        self._ctl("-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  f"-c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        """fast: sessions are told to end and the server stops cleanly; immediate: a crash (every
        process killed, recovery from the write-ahead log at the next start)."""
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()


@dataclass
class PrivateRedis:
    dir: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--logfile", str(self.dir / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private Redis did not start"
                time.sleep(0.02)

    def stop(self, *, save: bool = False) -> None:
        """`save`: write the data to disk first, so the next start has it back (a restart with
        persistence); otherwise everything in memory is lost, as with a crash."""
        if save:
            redis.Redis(port=self.port).save()
        assert self.process is not None
        self.process.terminate()  # with no save points configured, Redis exits without saving
        self.process.wait(timeout=10)
        if not save:
            (self.dir / "dump.rdb").unlink(missing_ok=True)

    def restart(self, *, save: bool = False) -> None:
        self.stop(save=save)
        self.start()

    def flush(self) -> None:
        redis.Redis(port=self.port).flushall()


@pytest.fixture(scope="session")
def private_postgres():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    assert bins, "no Postgres binaries: ./scripts/test installs the postgresql package"
    root = Path(tempfile.mkdtemp(prefix="sfx-outage-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    server = PrivatePostgres(Path(bins[-1]), root, free_port())
    subprocess.run(_as_postgres([str(server.bin / "initdb"), "-D", str(root / "db"), "-U", "postgres",
                                 "--auth=trust", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    server.start()

    async def create() -> None:
        conn = await asyncpg.connect(server.server_url)
        try:
            await conn.execute('CREATE DATABASE "sfx_outage"')
        finally:
            await conn.close()
        await migrate(server.url("sfx_outage"))

    asyncio.run(create())
    yield server
    try:
        server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def private_redis():
    root = Path(tempfile.mkdtemp(prefix="sfx-outage-redis-"))
    server = PrivateRedis(root, free_port())
    server.start()
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def wait_for_postgres(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=2)
            await conn.close()
            return
        except Exception:
            assert time.monotonic() < deadline, "Postgres did not come back"
            await asyncio.sleep(0.05)


async def in_thread(fn, *args, **kwargs):
    """Restart/stop commands block; the server under test shares this event loop and must keep
    serving meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
