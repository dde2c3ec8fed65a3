"""One home for providers: the key bank reaches every provider through the registry by name, so
adding one is a module and a registry row, and the key bank itself loads no provider SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis.asyncio as aioredis

import server.providers as providers_module
from server.keybank import KeyBank, KeyBankConfig
from server.providers import Failure, FailureKind, Provider, QuotaReading
from server.web.errors import ApiError


class EchoError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"echo {status}")
        self.status = status


class Echo(Provider):
    """A provider in a dozen lines: accepts keys starting "good", says 401 to others."""

    name = "echo"
    quota_unit = "words"

    def client(self, secret: str):
        return ("echo-client", secret[-4:])

    async def probe(self, secret: str, *, timeout: float) -> QuotaReading:
        if not secret.startswith("good"):
            raise EchoError(401)
        return QuotaReading(limit=1000, used=10, reset_at=None, tier="echo")

    def classify_api_error(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, EchoError):
            return Failure(FailureKind.INVALID_KEY if exc.status == 401 else FailureKind.BUSY, exc.status)
        return None


def test_the_key_bank_imports_no_provider_sdk():
    code = ("import sys, server.keybank, server.keybank.refresher, server.keybank.cli; "
            "print(sorted(m for m in ('openai', 'anthropic', 'google.genai', 'elevenlabs') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
async def echo_bank(settings, db, monkeypatch):
    monkeypatch.setitem(providers_module.REGISTRY, "echo", f"{__name__}:Echo")
    redis = aioredis.from_url(settings.redis_url, decode_responses=True)
    bank = KeyBank(settings, db, redis, config=KeyBankConfig())
    yield bank
    await bank.aclose()
    await redis.aclose()


async def test_a_new_provider_is_a_module_and_a_registry_row(echo_bank):
    view = await echo_bank.add_key(provider="echo", label="e1", secret="good-echo-key-1", max_concurrency=2)
    assert (view.provider, view.status, view.quota_remaining, view.tier) == ("echo", "active", 990, "echo")
    with pytest.raises(ApiError) as refused:
        await echo_bank.add_key(provider="echo", label="e2", secret="bad-echo-key-22", max_concurrency=2)
    assert refused.value.code == "invalid_provider_key"

    async def attempt(lease):
        assert echo_bank.client(lease) == ("echo-client", "ey-1")
        raise EchoError(401)

    with pytest.raises(ApiError):
        await echo_bank.run("echo", attempt, deadline=5, max_attempts=2)
    # The provider's own reading of its error decided: an invalid key is disabled.
    assert (await echo_bank.get_key(view.id)).status == "disabled"
