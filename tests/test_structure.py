"""How the code is put together, checked so it stays that way: the portal changes other domains'
data only through their services, every domain wires itself the same way, and background work
repeats through one helper."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from server import periodic

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = ["server/auth", "server/credits", "server/keybank", "server/generation", "server/assist", "server/billing",
           "portal", "server/alerts"]
# Tables the portal may write: its own (migrations/0007_portal.sql). Everything else is another domain's.
PORTAL_TABLES = {"password_reset_tokens", "mail_outbox", "audit_log"}
WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)")  # SQL is written in capitals here


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_portal_writes_only_its_own_tables():
    written = {(path.relative_to(ROOT).as_posix(), table)
               for path in sources("portal") for table in WRITE.findall(path.read_text())}
    assert {(path, table) for path, table in written if table not in PORTAL_TABLES} == set(), \
        "account, generation and device changes go through the auth and generation services"


def test_no_page_guards_on_tables_the_migrations_always_create():
    for path in sources("portal"):
        assert not re.search(r"table_exists\([^)]*\"generations\"", path.read_text()), path


def test_every_domain_wires_itself_from_its_package_with_its_app_keys_there():
    app_py = (ROOT / "server/app.py").read_text()
    for domain in DOMAINS:
        init = (ROOT / domain / "__init__.py").read_text()
        assert re.search(r"^def setup\(app: web\.Application\) -> None:", init, re.M), domain
        for path in sources(domain):
            if path.name != "__init__.py":
                assert "web.AppKey(" not in path.read_text(), f"{path}: AppKeys belong in {domain}/__init__.py"
        assert f"{Path(domain).name}.setup" in app_py, domain


def test_background_loops_are_written_once():
    loops = [path.relative_to(ROOT).as_posix() for path in sources("server") + sources("portal")
             if re.search(r"while True:\s*\n\s*(?:#.*\n\s*)*await asyncio\.sleep\(", path.read_text())]
    assert loops == ["server/periodic.py"], "repeat background work with server.periodic (running / periodic_ctx)"


async def test_a_failing_round_is_logged_and_the_next_one_still_runs(caplog):
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("database hiccup")

    caplog.set_level(logging.ERROR, logger="server.periodic")
    async with periodic.running("test-loop", 0.01, work, jitter=(1.0, 1.0)):
        for _ in range(200):
            if rounds >= 3:
                break
            await asyncio.sleep(0.01)
    assert rounds >= 3
    (record,) = [r for r in caplog.records if r.name == "server.periodic"]
    assert record.task == "test-loop" and "database hiccup" in caplog.text
    settled = rounds
    await asyncio.sleep(0.05)
    assert rounds == settled, "leaving the block stopped the loop"


async def test_cancelling_the_loop_is_not_swallowed_as_a_failed_round():
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(periodic.run_every("t", 0, work))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
