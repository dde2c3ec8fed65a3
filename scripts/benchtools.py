"""What the benchmark scripts share: free ports, throwaway database URLs, and the CPU time
processes used, read from /proc (so the benchmarks measure on Linux only)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url(base: str, name: str) -> str:
    """`base` pointed at the database `name` of the same server."""
    return urlunsplit(urlsplit(base)._replace(path="/" + name))


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a server's worker processes)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError):
                pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time one process has used so far; 0.0 once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
