"""Fixtures every key bank test module shares: the simulator, a KeyBank on it, fresh secrets,
and a log check that fails the test when any of those secrets reaches a log line.

A module imports the fixtures it uses by name and defines `bank_config` for its timings.
"""

import json
import secrets

import pytest

from helpers import json_log_capture
import redis.asyncio as aioredis

from server.keybank import KeyBank
from server.simulator import SimulatorState, create_simulator_app


@pytest.fixture
def secrets_made():
    return []


@pytest.fixture
def new_secret(secrets_made):
    """A fresh provider key. Not shaped like any known secret pattern, so only literal redaction hides it."""

    def make():
        value = "kb" + secrets.token_hex(20)
        secrets_made.append(value)
        return value

    return make


@pytest.fixture(autouse=True)
def json_logs(secrets_made, caplog):
    """Every log line of the test, raw and as the production JSON formatter writes it: no secret in either."""
    with json_log_capture(caplog) as stream:
        yield stream
    raw = [json.dumps(r.__dict__, default=str) for phase in ("setup", "call") for r in caplog.get_records(phase)]
    text = "\n".join(raw) + stream.getvalue()
    assert [s for s in secrets_made if s in text] == []


@pytest.fixture
async def sim(aiohttp_server):
    state = SimulatorState()
    server = await aiohttp_server(create_simulator_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def redis(settings):
    client = aioredis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def sim_settings(settings, sim):
    return settings.replace(elevenlabs_base_url=sim[1])


@pytest.fixture
async def bank(sim_settings, db, redis, bank_config):
    bank = KeyBank(sim_settings, db, redis, config=bank_config)
    yield bank
    await bank.aclose()


@pytest.fixture
def add_key(bank, sim, new_secret):
    async def add(label, *, max_concurrency=2, weight=1, limit=100_000, used=0):
        secret = new_secret()
        sim[0].add_key(secret, character_limit=limit, character_count=used, max_concurrency=max_concurrency)
        view = await bank.add_key(provider="elevenlabs", label=label, secret=secret, max_concurrency=max_concurrency, weight=weight)
        return view, secret

    return add
