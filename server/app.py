"""The application factory: one place that wires settings, resources and every domain."""

from __future__ import annotations

import logging
from typing import AsyncIterator

import aiohttp
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from aiohttp import web

from server.appkeys import DB, ENDPOINTS, HTTP, METRICS, REDIS, SETTINGS
from server.db import create_pool
from server.mail import MAIL, mail_sender_for
from server.settings import Settings
from server.web import health
from server.web.logs import REDACTOR
from server.web.metrics import Metrics
from server.web.middleware import client_address, cors, request_context, security_headers

log = logging.getLogger("server.app")


def create_app(settings: Settings) -> web.Application:
    # Bodies larger than this never reach a handler; JSON routes have their own, smaller limit.
    app = web.Application(middlewares=[client_address, cors, request_context, security_headers], client_max_size=8 * 1024 * 1024)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[ENDPOINTS] = []
    REDACTOR.add(settings.secret_values())

    app.cleanup_ctx.append(postgres_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(http_client_ctx)
    app.cleanup_ctx.append(mail_ctx)

    app.router.add_routes(health.routes)
    health.api.register(app)
    for setup in domain_setups():
        setup(app)
    return app


def domain_setups():
    """Each domain registers its routes and background tasks; imported here to keep one list."""
    import portal
    from server import alerts, assist, auth, billing, credits, generation, keybank, releases, storage

    # alerts last: its background rounds use the key bank.
    return [auth.setup, credits.setup, keybank.setup, storage.setup, generation.setup, assist.setup, billing.setup,
            releases.setup,
            portal.setup, alerts.setup]


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = await create_pool(app[SETTINGS])
    app[DB] = pool
    yield
    await pool.close()


def create_redis(url: str) -> aioredis.Redis:
    """A Redis client that rides out a restart: a command on a pooled connection the server closed
    is sent again on a fresh one (up to four times, backing off about a second in all), so a
    restart costs each connection a reconnect rather than a failed request. A command whose
    connection died after Redis ran it may run twice: the key bank's lease script makes that
    harmless (a lease id is added once), and a rate-limit hit or quota use counted twice errs on
    the careful side."""
    return aioredis.from_url(
        url, decode_responses=True, health_check_interval=30,
        retry=Retry(EqualJitterBackoff(cap=0.4, base=0.05), retries=4),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        socket_connect_timeout=2, socket_timeout=5,
    )


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = create_redis(app[SETTINGS].redis_url)
    app[REDIS] = client
    yield
    await client.aclose()


async def mail_ctx(app: web.Application) -> AsyncIterator[None]:
    app[MAIL] = mail_sender_for(app[SETTINGS], app[DB])
    yield


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    app[HTTP] = session
    yield
    await session.close()
