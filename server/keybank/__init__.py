"""Provider key bank: encrypted upstream API keys, leased across worker processes through Redis.

`setup(app)` puts a `KeyBank` at `app[KEYBANK]` and runs the quota refresher in the background.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from aiohttp import web

from server import periodic
from server.appkeys import DB, METRICS, REDIS, SETTINGS
from server.keybank.service import KeyBank, KeyBankConfig, KeyInfo, KeyView, Lease, NoActiveKey
from server.providers import FailureKind, Providers, RetryOnAnotherKey, UpstreamUserError

log = logging.getLogger("server.keybank")

KEYBANK = web.AppKey("keybank", KeyBank)

__all__ = [
    "KEYBANK", "FailureKind", "KeyBank", "KeyBankConfig", "KeyInfo", "KeyView", "Lease", "NoActiveKey", "RetryOnAnotherKey",
    "UpstreamUserError", "setup",
]


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(keybank_ctx)


async def keybank_ctx(app: web.Application) -> AsyncIterator[None]:
    from server.keybank.refresher import refresh_round, refresh_tick

    # One connection pool per provider for every key; SDK timeouts are per socket operation,
    # total deadlines come from KeyBank.run.
    providers = Providers(app[SETTINGS])
    bank = KeyBank(app[SETTINGS], app[DB], app[REDIS], providers=providers, metrics=app[METRICS])
    app[KEYBANK] = bank
    try:
        async with asyncio.timeout(5):
            await bank.sync_all()
    except Exception:
        # Not fatal: the server must start (and say so on /readyz) while Redis is away; the first
        # lease or the refresher's next round copies the keys to Redis.
        log.warning("provider keys not synced to Redis at startup", exc_info=True)
    bank.stalls.start()  # measures our own event-loop stalls for the attempt timeouts
    # The flusher writes the quota used, counted in Redis by each success, to Postgres.
    async with periodic.running("keybank-refresher", refresh_tick(bank), lambda: refresh_round(bank)), \
            periodic.running("keybank-usage-flusher", bank.config.usage_flush_interval, bank.flush_usage):
        yield
    await bank.stalls.stop()
    try:
        # Postgres current at shutdown; if this fails the amounts wait in Redis for another worker.
        async with asyncio.timeout(5):
            await bank.flush_usage()
    except Exception:
        log.warning("quota usage not flushed at shutdown; it stays in Redis", exc_info=True)
    await providers.aclose()
