"""Shared set-up of the generation tests: the ElevenLabs simulator as a real local server, the app
pointed at it, keys added through the key bank, users through the API, and the two checks every
scenario ends with: no secret anywhere, and the books balance."""

from __future__ import annotations

import asyncio
import io
import secrets
import uuid
import wave
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from helpers import json_log_capture, sign_up
from server.app import create_app
from server.credits import service as credits
from server.generation import GENERATION
from server.keybank import KEYBANK
from server.settings import Settings
from server.simulator import SimulatorState, create_simulator_app


@dataclass
class Secrets:
    """Every secret a scenario handles; none may show up in a response or a log line."""

    values: list[str] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)

    def key(self) -> str:
        value = "sk_" + secrets.token_hex(24)
        self.values.append(value)
        return value


@pytest.fixture
def leaks() -> Secrets:
    return Secrets()


@pytest.fixture(autouse=True)
def no_secret_in_logs_or_responses(leaks, caplog):
    with json_log_capture(caplog) as stream:
        yield stream
    text = caplog.text + stream.getvalue()
    seen = b"\n".join(leaks.responses)
    assert [s for s in leaks.values if s in text] == [], "a secret reached a log line"
    assert [s for s in leaks.values if s.encode() in seen] == [], "a secret reached a response"


@pytest.fixture(autouse=True)
async def books_balance(db):
    """After every scenario: each account's balance equals its ledger, no hold is left open,
    and what generations say they charged is exactly what the ledger captured."""
    yield
    await assert_books_balance(db)


async def assert_books_balance(db) -> None:
    inconsistent = await db.fetch("SELECT * FROM credit_consistency WHERE NOT consistent")
    assert [dict(r) for r in inconsistent] == []
    open_holds = await db.fetchval("SELECT count(*) FROM credit_holds WHERE status = 'held'")
    assert open_holds == 0
    rows = await db.fetch(
        """SELECT u.user_id,
                  coalesce((SELECT sum(credits_charged) FROM generations g WHERE g.user_id = u.user_id), 0) AS charged,
                  coalesce((SELECT sum(captured) FROM credit_holds h WHERE h.user_id = u.user_id
                             AND h.status = 'captured'), 0) AS captured
             FROM credit_accounts u"""
    )
    assert [(r["charged"], r["captured"]) for r in rows if r["charged"] != r["captured"]] == []


@dataclass
class Sim:
    state: SimulatorState
    url: str

    def peak(self, api_key: str) -> int:
        return self.state.key(api_key).peak_in_flight

    def calls(self, api_key: str | None = None, path_part: str = "") -> list[dict]:
        return [
            r for r in self.state.requests
            if (api_key is None or r["key"] == api_key[-4:]) and path_part in r["path"]
        ]


@pytest.fixture
async def sim(aiohttp_server) -> Sim:
    state = SimulatorState()
    server = await aiohttp_server(create_simulator_app(state))
    return Sim(state, str(server.make_url("")).rstrip("/"))


@pytest.fixture
def gen_env(test_env, sim) -> dict[str, str]:
    return {**test_env, "ELEVENLABS_BASE_URL": sim.url, "UPSTREAM_DEADLINE": "5", "UPSTREAM_MAX_ATTEMPTS": "4",
            "UPSTREAM_ATTEMPT_TIMEOUT": "1.5"}


@pytest.fixture
def gen_settings(gen_env) -> Settings:
    return Settings.from_env(gen_env)


@pytest.fixture(params=[False], ids=["server"])
async def api(request, aiohttp_client, gen_settings, leaks):
    """The app under test, served as `python -m server serve` serves it (aiohttp's default: a
    handler is not cancelled when its client disconnects). Tests may parametrize `api` indirectly
    with True to also run against a server that does cancel handlers."""
    client = await aiohttp_client(create_app(gen_settings), server_kwargs={"handler_cancellation": request.param})
    client.leaks = leaks
    return client


@pytest.fixture
def bank(api):
    return api.server.app[KEYBANK]


@pytest.fixture
def service(api):
    return api.server.app[GENERATION]


@pytest.fixture
def add_key(api, bank, sim, leaks):
    """A key in the simulator and in the key bank (validated by the bank against the simulator)."""

    async def add(label: str | None = None, *, max_concurrency: int = 5, limit: int = 1_000_000, voices=None,
                  sim_concurrency: int | None = None, reset_unix: int | None = None):
        secret = leaks.key()
        sim.state.add_key(secret, character_limit=limit, max_concurrency=sim_concurrency or max_concurrency,
                          voices=voices, reset_unix=reset_unix)
        view = await bank.add_key(provider="elevenlabs", label=label or f"key-{secret[-4:]}", secret=secret,
                                  max_concurrency=max_concurrency)
        return view.id, secret

    return add


async def user_with(api, db, credits_: int, plan: str = "pro"):
    """A signed-up user on `plan` whose current period granted exactly `credits_` credits."""
    user = await sign_up(api)
    api.leaks.values += [user.access_token, user.refresh_token, user.password]
    now = await db.fetchval("SELECT now()")
    await credits.set_plan(db, user.user_id, plan)
    await credits.grant_period(db, user.user_id, now - timedelta(days=1), now + timedelta(days=29), credits_,
                               key=f"test-grant:{user.user_id}")
    return user


async def remaining(db, user_id) -> int | None:
    return (await credits.summary(db, user_id)).remaining


async def post(api, path: str, user, body: dict, *, key: str | None = None, accept: str | None = None):
    """POST a generation request; returns (response, body bytes). Records the body for the secret check."""
    headers = dict(user.headers)
    headers["Idempotency-Key"] = key or uuid.uuid4().hex
    if accept:
        headers["Accept"] = accept
    resp = await api.post(path, json=body, headers=headers)
    data = await resp.read()
    api.leaks.responses.append(data + str(dict(resp.headers)).encode())
    return resp, data


async def get(api, path: str, user, headers: dict | None = None):
    resp = await api.get(path, headers={**user.headers, **(headers or {})})
    data = await resp.read()
    api.leaks.responses.append(data + str(dict(resp.headers)).encode())
    return resp, data


def wav_info(data: bytes) -> tuple[int, int, int, float]:
    """(sample rate, bits, channels, seconds) of a WAV file; fails the test if it is not one."""
    with wave.open(io.BytesIO(data)) as w:
        frames = w.getnframes()
        assert len(w.readframes(frames)) == frames * w.getsampwidth() * w.getnchannels()
        return w.getframerate(), w.getsampwidth() * 8, w.getnchannels(), frames / w.getframerate()


async def settled(db, timeout: float = 10.0) -> None:
    """Wait until no generation is pending (work continues after a client goes away)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await db.fetchval("SELECT count(*) FROM generations WHERE status = 'pending'"):
        assert asyncio.get_running_loop().time() < deadline, "generations still pending"
        await asyncio.sleep(0.05)


def count_thread_hops(monkeypatch) -> list[str]:
    """From now on, the name of every function the running loop hands to a pool thread, except
    the in-process provider simulator's (it stands in for ElevenLabs, it is not our cost)."""
    loop = asyncio.get_running_loop()
    hops: list[str] = []
    original = loop.run_in_executor

    def counting(executor, fn, *args):
        target = getattr(fn, "func", fn)  # functools.partial
        if not getattr(target, "__module__", "").startswith("server.simulator"):
            hops.append(getattr(target, "__qualname__", repr(target)))
        return original(executor, fn, *args)

    monkeypatch.setattr(loop, "run_in_executor", counting)
    return hops
