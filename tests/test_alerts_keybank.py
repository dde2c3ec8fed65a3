"""Key-bank alerts: admins are told once when a key is disabled as invalid, runs out of quota,
when the pool will run dry within ALERT_POOL_MIN_DAYS at the last week's rate, or when every key
is cooling down; and once more when it clears. The same figures are exported for Prometheus."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    add_key, api, bank, books_balance, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import post, user_with
from helpers import make_admin, sign_up
from server.alerts import check_once
from server.app import create_app

SFX = {"prompt": "thunder", "duration_seconds": 2}


@pytest.fixture
async def chat(aiohttp_server):
    """A chat tool's incoming webhook: keeps what it was sent."""
    posts: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/{token}", hook)
    server = await aiohttp_server(app)
    return posts, str(server.make_url("/hooks/"))


@pytest.fixture
def gen_env(test_env, sim, chat, leaks) -> dict[str, str]:
    # The webhook's path is its secret, as with Slack's: it must never reach a log line.
    return {**test_env, "ELEVENLABS_BASE_URL": sim.url, "UPSTREAM_DEADLINE": "5", "UPSTREAM_ATTEMPT_TIMEOUT": "2",
            "ALERT_WEBHOOK_URL": chat[1] + leaks.key(), "ALERT_POOL_MIN_DAYS": "5"}


async def admin_and_customer(api, db):
    admin = await sign_up(api)
    await make_admin(db, admin.user_id)
    customer = await user_with(api, db, 100)
    api.leaks.values += [admin.access_token, admin.refresh_token]
    return admin, customer


async def alert_mails(db, email: str) -> list[str]:
    return [r["subject"] for r in await db.fetch(
        "SELECT subject FROM mail_outbox WHERE to_address = $1 AND subject LIKE '[SFX Studio]%' ORDER BY id", email)]


async def test_an_invalid_key_is_alerted_once_across_workers_and_cleared_once(
    api, db, add_key, sim, bank, chat, aiohttp_client, gen_settings, leaks
):
    posts, _ = chat
    second_worker = await aiohttp_client(create_app(gen_settings))
    admin, customer = await admin_and_customer(api, db)
    key_id, secret = await add_key("main")
    sim.state.inject(secret, "401_invalid")
    resp, _ = await post(api, "/v1/sfx", customer, SFX)
    assert resp.status >= 500
    assert (await bank.get_key(key_id)).status == "disabled"

    for _ in range(2):  # both workers check at the same moment, twice
        await asyncio.gather(check_once(api.server.app), check_once(second_worker.server.app))
    assert await alert_mails(db, admin.email) == ["[SFX Studio] ALERT: Provider key disabled as invalid"]
    assert await alert_mails(db, customer.email) == []
    body = await db.fetchval("SELECT body FROM mail_outbox WHERE to_address = $1 AND subject LIKE '[SFX Studio]%'",
                             admin.email)
    assert f"“main” (…{secret[-4:]}, #{key_id}, elevenlabs)" in body and "invalid_key" in body
    assert len(posts) == 1 and "ALERT: Provider key disabled as invalid" in posts[0]["text"]

    sim.state.clear_faults(secret)
    await bank.enable(key_id)
    for _ in range(2):
        await asyncio.gather(check_once(api.server.app), check_once(second_worker.server.app))
    assert await alert_mails(db, admin.email) == ["[SFX Studio] ALERT: Provider key disabled as invalid",
                                                  "[SFX Studio] CLEARED: Provider key disabled as invalid"]
    assert len(posts) == 2 and "CLEARED" in posts[1]["text"]
    incidents = await db.fetch("SELECT kind, subject, cleared_at FROM ops_incidents")
    assert [(r["kind"], r["subject"], r["cleared_at"] is not None) for r in incidents] == [("key_invalid", str(key_id), True)]

    # An operator's own disable is not an incident: they know.
    await bank.disable(key_id, "rotating it")
    await check_once(api.server.app)
    assert len(await alert_mails(db, admin.email)) == 2 and len(posts) == 2


async def test_exhausted_keys_a_pool_running_dry_and_every_key_cooling_each_open_an_incident_and_a_gauge(
    api, db, add_key, sim, bank
):
    admin, customer = await admin_and_customer(api, db)
    spent_id, spent_secret = await add_key("spent")
    sim.state.inject(spent_secret, "401_quota")
    resp, _ = await post(api, "/v1/sfx", customer, SFX)
    assert resp.status >= 500
    busy_id, busy_secret = await add_key("busy", limit=100_000)
    sim.state.inject(busy_secret, "503", retry_after=120)
    resp, _ = await post(api, "/v1/sfx", customer, {**SFX, "prompt": "rain"})
    assert resp.status >= 500
    # A week of heavy use on the busy key: 210,000 units, 30,000 a day, against 100,000 left.
    await db.execute(
        """INSERT INTO generations (user_id, kind, status, params, request_hash, upstream_cost, upstream_key_id, created_at)
           SELECT $1, 'sfx', 'succeeded', '{}'::jsonb, 'h', 30000, $2, now() - make_interval(days => d)
             FROM generate_series(0, 6) AS d""",
        admin.user_id, busy_id,
    )

    await check_once(api.server.app)
    subjects = await alert_mails(db, admin.email)
    assert sorted(subjects) == sorted([
        "[SFX Studio] ALERT: Provider key out of quota",
        "[SFX Studio] ALERT: Provider quota running out",
        "[SFX Studio] ALERT: Every provider key cooling down",
    ])
    pool_low = await db.fetchrow("SELECT details FROM ops_incidents WHERE kind = 'pool_low'")
    assert '"burn_per_day": 30000.0' in pool_low["details"] and '"remaining": 100000' in pool_low["details"]
    await check_once(api.server.app)
    assert len(await alert_mails(db, admin.email)) == 3

    metrics = await (await api.get("/metrics")).text()
    assert 'keybank_keys{provider="elevenlabs",state="exhausted"} 1.0' in metrics
    assert 'keybank_keys{provider="elevenlabs",state="cooling"} 1.0' in metrics
    assert 'keybank_keys{provider="elevenlabs",state="active"} 0.0' in metrics
    assert 'keybank_pool_remaining_units{provider="elevenlabs"} 100000.0' in metrics
    assert 'keybank_pool_burn_units_per_day{provider="elevenlabs"} 30000.0' in metrics
    # The week's rows that fall in this calendar month (UTC), at $0.30 per 1,000 units.
    month_units = await db.fetchval(
        """SELECT coalesce(sum(upstream_cost), 0)::bigint FROM generations
            WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""")
    assert f'upstream_cost_month_dollars{{provider="elevenlabs"}} {month_units * 0.3 / 1000}' in metrics
    assert spent_id != busy_id
