"""Test fixtures: a private Postgres database and Redis prefix per run, and the real app.

Every test talks to real Postgres and Redis. The run makes its own database from
TEST_DATABASE_URL (a server URL), applies the migrations, and drops it at the end;
between tests the data tables are emptied and this run's Redis keys are deleted.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from server.app import create_app
from server.db import migrate
from server.settings import Settings

# Tables whose rows come from migrations (seed data) and survive between tests.
SEED_TABLES = {"schema_migrations", "plans", "pricing_rules"}


def _db_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def database_url() -> str:
    base = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"sfx_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate(_db_url(base, name))

    async def drop() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield _db_url(base, name)
    asyncio.run(drop())


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def test_env(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables of a test deployment; tests derive variants from it."""
    data_dir = tmp_path_factory.mktemp("data")
    return {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"sfxtest:{uuid.uuid4().hex[:8]}:",
        "DATA_DIR": str(data_dir),
        "BCRYPT_COST": "4",
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "10",
        "LOG_LEVEL": "DEBUG",
        "JWT_SECRETS": "k1=" + secrets.token_urlsafe(32),
        "JWT_ACTIVE_KID": "k1",
        "KEYBANK_MASTER_KEYS": "1=" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "KEYBANK_ACTIVE_VERSION": "1",
        "SESSION_SECRET": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        "PUBLIC_URL": "http://127.0.0.1:8080",
        "UPSTREAM_DEADLINE": "10",
        # Every test user signs up from 127.0.0.1; the sign-up throttle's own tests lower this.
        "SIGNUP_MAX_PER_IP": "100000",
    }


@pytest.fixture
def settings(test_env: dict[str, str]) -> Settings:
    return Settings.from_env(test_env)


@pytest.fixture
async def db(settings: Settings):
    """A small pool for tests that work below HTTP; tables are emptied after each test."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(autouse=True)
async def clean_state(test_env: dict[str, str]):
    yield
    conn = await asyncpg.connect(test_env["DATABASE_URL"])
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if r["tablename"] not in SEED_TABLES
        ]
        # TRUNCATE costs per table; most tests touch a few, so only the tables with rows are emptied.
        probe = " UNION ALL ".join(f"SELECT '{t}' AS t WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables)
        used = [r["t"] for r in await conn.fetch(probe)] if tables else []
        if used:
            # DELETE of a few rows is far cheaper than TRUNCATE; replica mode skips the foreign-key and
            # append-only triggers, which is right only here, where everything goes.
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                for table in used:
                    await conn.execute(f'DELETE FROM "{table}"')
    finally:
        await conn.close()
    client = aioredis.from_url(test_env["REDIS_URL"])
    try:
        keys = [k async for k in client.scan_iter(match=test_env["REDIS_PREFIX"] + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(app)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 API server (moto's standalone server) on a free port, for the whole run."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto's S3 server did not start; see " + log.name)
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def s3_env(s3_server: str) -> dict[str, str]:
    """Settings of a deployment storing in a new, empty bucket of that server."""
    import urllib.request

    bucket = f"sfx-test-{uuid.uuid4().hex[:12]}"
    urllib.request.urlopen(urllib.request.Request(f"{s3_server}/{bucket}", method="PUT"), timeout=5).close()
    return {
        "STORAGE_URL": f"s3://{bucket}/sfx", "S3_ENDPOINT": s3_server, "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "testing-access-key", "S3_SECRET_ACCESS_KEY": "testing-secret-" + uuid.uuid4().hex,
        "STORAGE_TIMEOUT": "3",
    }


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
