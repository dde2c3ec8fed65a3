"""Set-up of the outage tests: the app on the private Postgres and Redis of outage_support, the
ElevenLabs simulator on a port of its own (so it can be stopped and started again), steady load
from several clients, and the checks every outage scenario ends with."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web

from conftest import SEED_TABLES
from helpers import sign_up
from outage_support import free_port
from server.app import create_app
from server.credits import service as credits
from server.generation.service import hold_key
from server.keybank import KEYBANK
from server.settings import Settings
from server.simulator import SimulatorState, create_simulator_app

SFX = {"prompt": "door slam", "duration_seconds": 2}
HOLD_TTL = 4  # seconds; the sweeps run every second at this TTL
# What a client may be told while something is down: never 500.
ALLOWED_ERRORS = {
    503: {"service_unavailable", "capacity_exhausted"},
    502: {"upstream_unavailable"},
    409: {"idempotency_in_progress"},
}


class RestartableSimulator:
    """The simulator served on a fixed port: stopped, its address refuses connections."""

    def __init__(self) -> None:
        self.state = SimulatorState()
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.secrets: list[str] = []  # the provider keys it knows

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(create_simulator_app(self.state))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def generation_calls(self) -> list[dict]:
        return [r for r in self.state.requests if r["path"] == "/v1/sound-generation"]


@pytest.fixture
async def provider():
    sim = RestartableSimulator()
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def empty_outage_database(private_postgres):
    """The private database is shared by the session's outage tests: each starts from no data."""
    conn = await asyncpg.connect(private_postgres.url("sfx_outage"))
    try:
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                  if r["tablename"] not in SEED_TABLES]
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # past the append-only triggers
            for table in tables:
                await conn.execute(f'DELETE FROM "{table}"')
    finally:
        await conn.close()


@pytest.fixture
def outage_env(test_env, private_postgres, private_redis, provider, empty_outage_database) -> dict[str, str]:
    return {
        **test_env,
        "DATABASE_URL": private_postgres.url("sfx_outage"),
        "REDIS_URL": private_redis.url,
        "REDIS_PREFIX": f"sfxoutage:{uuid.uuid4().hex[:8]}:",
        "ELEVENLABS_BASE_URL": provider.url,
        "CREDIT_HOLD_TTL": str(HOLD_TTL),
        "UPSTREAM_DEADLINE": "3",
        "UPSTREAM_ATTEMPT_TIMEOUT": "1.5",
        "UPSTREAM_MAX_ATTEMPTS": "3",
        "SETTLE_WAIT_SECONDS": "2",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def outage_settings(outage_env) -> Settings:
    return Settings.from_env(outage_env)


@pytest.fixture
async def api(aiohttp_client, outage_settings):
    return await aiohttp_client(create_app(outage_settings))


async def query(settings: Settings, sql: str, *args):
    """A fresh connection per check: pooled ones may have died with the server."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
async def key_id(api, provider) -> int:
    secret = "sk_" + uuid.uuid4().hex
    provider.state.add_key(secret, character_limit=10_000_000, max_concurrency=50)
    provider.secrets.append(secret)
    view = await api.server.app[KEYBANK].add_key(provider="elevenlabs", label="outage", secret=secret,
                                                 max_concurrency=50)
    return view.id


async def pro_user(api, settings: Settings, credits_: int = 10_000):
    """A signed-up pro user with `credits_` credits; the private database lifts the plan's request
    limits (rate limiting is not what these tests are about)."""
    user = await sign_up(api)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("UPDATE plans SET requests_per_minute = 1000000, requests_per_hour = 1000000")
        now = await conn.fetchval("SELECT now()")
        await credits.set_plan(conn, user.user_id, "pro")
        await credits.grant_period(conn, user.user_id, now - timedelta(days=1), now + timedelta(days=29), credits_,
                                   key=f"test-grant:{user.user_id}")
    finally:
        await conn.close()
    return user


@dataclass
class Answer:
    key: str
    status: int
    code: str | None
    retry_after: str | None
    charged: int | None
    user: object
    sent_at: float  # time.monotonic() when the request was sent


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)


async def send(api, user, key: str) -> Answer:
    sent_at = time.monotonic()
    resp = await api.post("/v1/sfx", json=SFX, headers={**user.headers, "Idempotency-Key": key})
    body = await resp.read()
    code = None
    if resp.status != 200:
        assert resp.content_type == "application/json", (resp.status, body[:300])
        error = (await resp.json())["error"]
        assert set(error) == {"code", "message", "details"}
        code = error["code"]
    return Answer(key, resp.status, code, resp.headers.get("Retry-After"),
                  int(resp.headers["X-Credits-Charged"]) if resp.status == 200 else None, user, sent_at)


def assert_allowed(answer: Answer) -> None:
    """200, or an outage answer a client can act on: JSON, the right code, Retry-After on 503."""
    if answer.status == 200:
        return
    assert answer.code in ALLOWED_ERRORS.get(answer.status, set()), (answer.status, answer.code)
    if answer.status == 503:
        assert answer.retry_after is not None and int(answer.retry_after) >= 1


async def under_load(api, users, fault, *, clients: int = 6, before: float = 0.6, after: float = 0.6,
                     answered_after: int = 0, wait_at_most: float = 10.0) -> Load:
    """`clients` loops sending generations with fresh Idempotency-Keys while `fault()` runs, and
    for `after` seconds once it returned; longer (up to `wait_at_most`) until `answered_after`
    requests sent after that have their answer, so a slow machine still tests the recovery."""
    load = Load()
    stop = asyncio.Event()

    async def client_loop(user) -> None:
        while not stop.is_set():
            answer = await send(api, user, uuid.uuid4().hex)
            load.answers.append(answer)
            assert_allowed(answer)
            if answer.status != 200:
                await asyncio.sleep(0.05)

    loops = [asyncio.create_task(client_loop(users[i % len(users)])) for i in range(clients)]
    try:
        await asyncio.sleep(before)
        await fault()
        recovered = time.monotonic()
        await asyncio.sleep(after)
        give_up = time.monotonic() + wait_at_most
        while sum(a.sent_at > recovered for a in load.answers) < answered_after and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*loops)
    return load


async def retry_until_served(api, user, key: str, *, within: float) -> tuple[Answer, float]:
    """Retry one Idempotency-Key right away, as a client would after an error; returns the 200
    and how long it took."""
    started = time.monotonic()
    while True:
        answer = await send(api, user, key)
        assert_allowed(answer)
        if answer.status == 200:
            return answer, time.monotonic() - started
        assert time.monotonic() - started < within, f"key {key} not served within {within} s: {answer}"
        await asyncio.sleep(0.1)


async def retry_failures(api, load: Load, *, within: float) -> None:
    """Retry every Idempotency-Key that got an error, all at once, right after recovery."""
    failed = {a.key: a.user for a in load.answers if a.status != 200}
    served = {a.key for a in load.answers if a.status == 200}
    results = await asyncio.gather(*(retry_until_served(api, user, key, within=within)
                                     for key, user in failed.items() if key not in served))
    load.answers += [answer for answer, _ in results]


async def assert_each_served_request_charged_once(settings: Settings, load: Load, users) -> None:
    """Every Idempotency-Key that got a 200 has one succeeded generation and one captured hold,
    and the books of every account balance."""
    served = {a.key: a for a in load.answers if a.status == 200}
    assert served, "no request was served at all"
    for user in users:
        keys = [k for k, a in served.items() if a.user is user]
        rows = await query(settings, """
            SELECT idempotency_key, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                   sum(credits_charged) AS charged
              FROM generations WHERE user_id = $1 GROUP BY idempotency_key""", user.user_id)
        by_key = {r["idempotency_key"]: r for r in rows}
        captured = {r["key"]: r["captured"] for r in await query(
            settings, "SELECT key, captured FROM credit_holds WHERE user_id = $1 AND status = 'captured'", user.user_id)}
        for key in keys:
            assert by_key[key]["succeeded"] == 1, key
            assert captured[hold_key(user.user_id, key, 0)] == by_key[key]["charged"] == served[key].charged, key
        # Nothing was charged for a key that was never served.
        assert set(captured) == {hold_key(user.user_id, key, 0) for key in keys}
    inconsistent = await query(settings, "SELECT * FROM credit_consistency WHERE NOT consistent")
    assert inconsistent == []


async def assert_nothing_left_open(api, settings: Settings, key_id: int, *, within: float = HOLD_TTL + 3) -> None:
    """Within the hold TTL (and one sweep): no pending row, no request in progress, no credit
    hold and no provider-key lease left held."""
    leases = api.server.app[KEYBANK].leases
    deadline = time.monotonic() + within
    while True:
        [left] = await query(settings, """
            SELECT (SELECT count(*) FROM generations WHERE status = 'pending') AS pending,
                   (SELECT count(*) FROM generation_requests WHERE status = 'in_progress') AS in_progress,
                   (SELECT count(*) FROM credit_holds WHERE status = 'held') AS held""")
        in_flight = (await leases.state([key_id]))[key_id].in_flight
        if (dict(left), in_flight) == ({"pending": 0, "in_progress": 0, "held": 0}, 0):
            return
        assert time.monotonic() < deadline, (dict(left), in_flight)
        await asyncio.sleep(0.2)
