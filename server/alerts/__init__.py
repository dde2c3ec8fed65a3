"""Alerts: usage mails for customers, key-bank incidents and cost gauges for operators.

`setup(app)` runs, in every worker:
- a LISTEN connection for the usage announcements captures make (server.alerts.usage), whose
  users a small queue consumer handles, off the request path;
- a periodic round every ALERT_CHECK_INTERVAL (server.periodic): the usage-mail sweep, the
  incident check (server.alerts.keybank_watch), which tells admins once, and the key-bank gauges
  for /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import AsyncIterator

from aiohttp import web

from server.alerts import keybank_watch, repo, usage
from server.alerts.notify import Notifier
from server.appkeys import DB, HTTP, METRICS, SETTINGS
from server.business.service import cost_cents
from server.keybank import KEYBANK
from server.mail import MAIL
from server.periodic import periodic_ctx

log = logging.getLogger("server.alerts")

NOTIFIER = web.AppKey("alerts_notifier", Notifier)
# Users whose usage crossed a threshold, waiting for the consumer; a full queue drops (the sweep
# catches up), it never blocks the listener.
QUEUE_SIZE = 10_000


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(alerts_ctx)
    app.cleanup_ctx.append(periodic_ctx("alerts-checks", lambda app: max(1.0, app[SETTINGS].alert_check_interval),
                                        check_once))


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[NOTIFIER] = Notifier(settings, app[DB], app[MAIL], app[HTTP])
    queue: asyncio.Queue[uuid.UUID] = asyncio.Queue(QUEUE_SIZE)
    tasks = [
        asyncio.create_task(usage.listen(settings.database_url, queue), name="alerts-usage-listener"),
        asyncio.create_task(consume(app, queue), name="alerts-usage-mailer"),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def consume(app: web.Application, queue: "asyncio.Queue[uuid.UUID]") -> None:
    while True:
        user_id = await queue.get()
        try:
            await usage.notify_crossings(app[DB], app[MAIL], app[SETTINGS], user_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("usage mail round failed; the sweep tries again")


async def check_once(app: web.Application) -> None:
    """One periodic round; tests call it to run a round now."""
    settings, pool = app[SETTINGS], app[DB]
    await usage.sweep(pool, app[MAIL], settings)
    bank = app.get(KEYBANK)
    if bank is None:
        return
    state, _ = await keybank_watch.check(bank, pool, settings, app[NOTIFIER])
    await export_gauges(app, state)


async def export_gauges(app: web.Application, state: dict[str, keybank_watch.ProviderState]) -> None:
    metrics, settings = app[METRICS], app[SETTINGS]
    for p in state.values():
        for name, count in p.states.items():
            metrics.keybank_keys.labels(p.provider, name).set(count)
        if p.remaining is not None:
            metrics.pool_remaining.labels(p.provider).set(p.remaining)
        metrics.pool_burn.labels(p.provider).set(p.burn_per_day)
    provider_of = {k.id: k.provider for p in state.values() for k in p.keys}
    units: dict[str, int] = {}
    for key_id, n in (await repo.upstream_units_this_month(app[DB])).items():
        # A removed key's generations were ElevenLabs', the provider every generation uses today.
        provider = provider_of.get(key_id, "elevenlabs") if key_id is not None else "elevenlabs"
        units[provider] = units.get(provider, 0) + n
    prices = settings.upstream_price_per_1000
    for provider, n in units.items():
        metrics.upstream_cost.labels(provider).set(cost_cents({provider: n}, prices) / 100)
