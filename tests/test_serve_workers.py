"""`python -m server serve --workers N`: N processes answer on one port, and SIGTERM stops them all.

Which worker took a connection is read from Linux's /proc: the worker whose file descriptors
hold the server side of that TCP connection.
"""

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def server_side_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the accepted socket of the connection client_port -> server_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if (local_port, remote_port) == (server_port, client_port):
            return fields[9]
    return None


async def healthz_answered_by(port: int, workers: set[int]) -> int:
    """GET /healthz on a new connection; the pid of the worker that answered it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        # Still open (keep-alive), so the accepted socket is in the worker's descriptors.
        inode = server_side_inode(port, writer.get_extra_info("sockname")[1])
        owners = [pid for pid in workers if inode in socket_inodes(pid)]
        assert len(owners) == 1, (inode, owners)
        return owners[0]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_two_workers_share_the_port_and_sigterm_stops_all_of_them(test_env):
    port = free_port()
    env = {**os.environ, **test_env, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "INFO"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--no-migrate", "--workers", "2", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        workers: set[int] = set()
        for _ in range(200):
            workers = children_of(proc.pid)
            if len(workers) == 2 and all(socket_inodes(pid) for pid in workers):
                try:
                    await healthz_answered_by(port, workers)
                    break
                except (OSError, AssertionError):
                    pass
            assert proc.returncode is None
            await asyncio.sleep(0.05)
        assert len(workers) == 2

        # The kernel spreads new connections over the workers; both answer within a few dozen.
        answered = set()
        for _ in range(60):
            try:
                answered.add(await healthz_answered_by(port, workers))
            except (OSError, AssertionError):
                await asyncio.sleep(0.05)  # a worker still starting its listener
            if answered == workers:
                break
        assert answered == workers

        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 45)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
