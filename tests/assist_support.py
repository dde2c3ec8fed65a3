"""Shared set-up of the assist tests: the LLM simulator as a real local server, the app pointed at
it through each provider's official SDK, LLM keys banked through the key bank, and the checks
every scenario ends with (no secret anywhere; the books balance; assist rows charged exactly
what the ledger captured)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import pytest

# The secret check is the generation tests' own: one definition of what counts as a leak.
from generation_support import Secrets, leaks, no_secret_in_logs_or_responses, user_with  # noqa: F401  (re-exported)
from server.app import create_app
from server.keybank import KEYBANK
from server.settings import Settings
from server.simulator.llm import LlmSimulatorState, base_urls, create_llm_simulator_app

LLMS = ("openai", "anthropic", "gemini")
ROUTES = "default=openai:gpt-4.1-mini>anthropic:claude-haiku-4-5>gemini:gemini-2.5-flash"


@pytest.fixture(autouse=True)
async def books_balance(db):
    """After every scenario: each balance equals its ledger, no hold is left open, and what
    generations and assist requests say they charged is exactly what the ledger captured."""
    yield
    assert [dict(r) for r in await db.fetch("SELECT * FROM credit_consistency WHERE NOT consistent")] == []
    assert await db.fetchval("SELECT count(*) FROM credit_holds WHERE status = 'held'") == 0
    rows = await db.fetch(
        """SELECT u.user_id,
                  coalesce((SELECT sum(credits_charged) FROM generations g WHERE g.user_id = u.user_id), 0)
                  + coalesce((SELECT sum(credits_charged) FROM assist_requests a WHERE a.user_id = u.user_id), 0)
                  AS charged,
                  coalesce((SELECT sum(captured) FROM credit_holds h WHERE h.user_id = u.user_id
                             AND h.status = 'captured'), 0) AS captured
             FROM credit_accounts u"""
    )
    assert [(r["charged"], r["captured"]) for r in rows if r["charged"] != r["captured"]] == []
    unsettled = await db.fetch(
        """SELECT a.id, a.status, h.status AS hold_status FROM assist_requests a
             LEFT JOIN credit_holds h ON h.id = a.hold_id
            WHERE a.status <> 'succeeded' AND h.status IS DISTINCT FROM 'released' AND a.hold_id IS NOT NULL"""
    )
    assert [dict(r) for r in unsettled] == []


@dataclass
class LlmSim:
    state: LlmSimulatorState
    url: str

    def calls(self, provider: str | None = None, *, path_part: str = "") -> list[dict]:
        """Completion calls (not the model listings that validate a key when it is banked)."""
        return [r for r in self.state.calls(provider) if path_part in r["path"] and not r["path"].endswith("/models")]

    def answered(self) -> list[dict]:
        """The calls that produced an answer with token usage, oldest first."""
        return [r for r in self.state.requests if r["usage"] is not None]


@pytest.fixture
async def llm(aiohttp_server) -> LlmSim:
    state = LlmSimulatorState()
    server = await aiohttp_server(create_llm_simulator_app(state))
    return LlmSim(state, str(server.make_url("")).rstrip("/"))


@pytest.fixture
def assist_env(test_env, llm) -> dict[str, str]:
    urls = base_urls(llm.url)
    return {
        **test_env, "OPENAI_BASE_URL": urls["openai_base_url"], "ANTHROPIC_BASE_URL": urls["anthropic_base_url"],
        "GEMINI_BASE_URL": urls["gemini_base_url"], "ASSIST_ROUTES": ROUTES, "ASSIST_DEADLINE": "8",
        "UPSTREAM_ATTEMPT_TIMEOUT": "1", "UPSTREAM_MAX_ATTEMPTS": "3",
    }


@pytest.fixture
def assist_settings(assist_env) -> Settings:
    return Settings.from_env(assist_env)


@pytest.fixture
async def api(aiohttp_client, assist_settings, leaks):
    client = await aiohttp_client(create_app(assist_settings))
    client.leaks = leaks
    return client


@pytest.fixture
def bank(api):
    return api.server.app[KEYBANK]


@pytest.fixture
def add_llm_key(bank, llm, leaks):
    """A key in the simulator and in the key bank (validated by the bank against the simulator)."""

    async def add(provider: str, label: str | None = None, *, max_concurrency: int = 4, weight: int = 1) -> tuple[int, str]:
        secret = f"{provider[:2]}-" + secrets.token_hex(20)
        leaks.values.append(secret)
        llm.state.add_key(provider, secret)
        view = await bank.add_key(provider=provider, label=label or f"{provider}-{secret[-4:]}", secret=secret,
                                  max_concurrency=max_concurrency, weight=weight)
        return view.id, secret

    return add


async def ask(api, path: str, user, body: dict, *, key: str | None = None):
    """POST an assist request; returns (response, JSON body). Records the body for the secret check."""
    headers = {**user.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    resp = await api.post(path, json=body, headers=headers)
    raw = await resp.read()
    api.leaks.responses.append(raw + str(dict(resp.headers)).encode())
    return resp, await resp.json()
