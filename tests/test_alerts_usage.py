"""Usage mails: a customer is told once when a period's credits reach 80% and once at 100%, by
whichever worker hears it first, with a link to top up; never when they turned the mails off.
The dashboard shows the burn rate and the day the credits run out; /v1/me gives the panel what
its low-credit banner needs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from generation_support import (  # noqa: F401 (fixtures, used by name; the secret check is autouse)
    add_key, api, bank, gen_settings, leaks, no_secret_in_logs_or_responses, service, sim,
)
from generation_support import assert_books_balance, post, user_with
from server.alerts import check_once, usage
from server.app import create_app
from server.credits import service as credits
from helpers import DEFAULT_PASSWORD
from server.auth.service import create_user
from server.credits.models import CreditSummary, Plan
from server.credits.service import crossed_threshold
from server.mail import OutboxMailSender

SFX = {"prompt": "door knock", "duration_seconds": 2}  # 1 credit


@pytest.fixture
def gen_env(test_env, sim) -> dict[str, str]:
    # 50 syntheses at once on two shared cores take seconds: generous deadlines, so every one succeeds.
    return {**test_env, "ELEVENLABS_BASE_URL": sim.url, "UPSTREAM_DEADLINE": "60", "UPSTREAM_ATTEMPT_TIMEOUT": "45"}


async def mails_to(db, email: str) -> list[dict]:
    """The usage mails sent to `email` (not the sign-up confirmation)."""
    return [dict(r) for r in await db.fetch(
        "SELECT subject, body FROM mail_outbox WHERE to_address = $1 AND subject LIKE 'SFX Studio: %' ORDER BY id", email)]


async def wait_for_mails(db, email: str, count: int, timeout: float = 15.0) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found := await mails_to(db, email)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"expected {count} mail(s), got {found}"
        await asyncio.sleep(0.05)
    return found


async def spend(db, user_id, credits_: int, tag: str) -> None:
    """Charge credits the way a generation does: reserve, then capture."""
    hold = await credits.reserve(db, user_id, credits_, f"{tag}:{credits_}")
    await credits.capture(db, hold.id, credits_)


async def test_80_percent_mail_goes_out_exactly_once_when_50_concurrent_generations_on_two_workers_cross_it(
    api, db, add_key, aiohttp_client, gen_settings, leaks
):
    second_worker = await aiohttp_client(create_app(gen_settings))
    second_worker.leaks = leaks
    await add_key(max_concurrency=50)
    user = await user_with(api, db, 60)  # 50 generations of 1 credit: 83%, past 80% but short of 100%

    results = await asyncio.gather(*(
        post(api if n % 2 else second_worker, "/v1/sfx", user, {**SFX, "prompt": f"door knock {n}"})
        for n in range(50)
    ))
    assert [resp.status for resp, _ in results] == [200] * 50
    [mail] = await wait_for_mails(db, user.email, 1)

    # Every later way in finds the crossing recorded: the sweeps of both workers, in parallel.
    await asyncio.gather(check_once(api.server.app), check_once(second_worker.server.app))
    await asyncio.sleep(0.3)
    assert await mails_to(db, user.email) == [mail]
    assert "80% of this period's credits used" in mail["subject"]
    assert "Top up: http://127.0.0.1:8080/billing" in mail["body"]
    assert "Upgrade: http://127.0.0.1:8080/pricing" in mail["body"]
    [row] = await db.fetch("SELECT threshold, status, used, allowance FROM usage_alerts WHERE user_id = $1", user.user_id)
    assert (row["threshold"], row["status"], row["allowance"]) == (80, "mailed", 60)
    # The use as the mail was written: at least the 48 that crossed 80%, at most all 50.
    assert 48 <= row["used"] <= 50
    assert f"You have used {row['used']} of the 60 credits" in mail["body"]
    await assert_books_balance(db)


async def test_each_threshold_mails_once_per_period_and_a_new_period_mails_again(client, db, settings):
    user = await sign_up_user(client)
    await grant(db, user, 10, days_ago=1, key="p1")
    await spend(db, user["id"], 7, "a")
    await asyncio.sleep(0.3)
    assert await mails_to(db, user["email"]) == []  # 70%: nothing yet
    await spend(db, user["id"], 1, "b")
    [first] = await wait_for_mails(db, user["email"], 1)
    await spend(db, user["id"], 1, "c")  # 90%: already told
    await spend(db, user["id"], 1, "d")  # 100%
    first, second = await wait_for_mails(db, user["email"], 2)
    assert "80%" in first["subject"] and "used all of this period's credits" in second["subject"]

    # The next period starts over.
    await grant(db, user, 10, days_ago=0, key="p2")
    await spend(db, user["id"], 8, "e")
    mails = await wait_for_mails(db, user["email"], 3)
    assert "80%" in mails[2]["subject"]


async def test_an_allowance_near_the_integer_limit_is_charged_and_alerted_without_overflow(client, db):
    user = await sign_up_user(client)
    await grant(db, user, 2_000_000_000, days_ago=1, key="big")
    await spend(db, user["id"], 1_600_000_000, "a")
    [mail] = await wait_for_mails(db, user["email"], 1)
    assert "You have used 1,600,000,000 of the 2,000,000,000 credits" in mail["body"]


async def test_no_mail_when_the_customer_turned_usage_mails_off(client, db):
    user = await sign_up_user(client)
    await usage.set_mails_enabled(db, user["id"], False)
    await grant(db, user, 10, days_ago=1, key="p1")
    await spend(db, user["id"], 8, "a")
    await spend(db, user["id"], 2, "b")
    await check_once(client.server.app)
    await asyncio.sleep(0.3)
    assert await mails_to(db, user["email"]) == []
    statuses = {r["threshold"]: r["status"] for r in await db.fetch(
        "SELECT threshold, status FROM usage_alerts WHERE user_id = $1", user["id"])}
    assert statuses[100] == "opted_out" and statuses[80] in ("opted_out", "skipped")


async def test_a_crossing_nobody_heard_is_mailed_once_by_the_sweep_however_many_run_at_once(db, settings):
    # No app is running, so nobody listens to the capture's announcement.
    user = await user_without_app(db, settings)
    await grant(db, user, 10, days_ago=1, key="p1")
    await spend(db, user["id"], 9, "a")
    assert await mails_to(db, user["email"]) == []
    sent = await asyncio.gather(*(usage.sweep(db, OutboxMailSender(db), settings) for _ in range(20)))
    assert sum(sent) == 1
    assert len(await mails_to(db, user["email"])) == 1


async def test_a_failed_mail_is_tried_again_by_the_sweep(db, settings):
    user = await user_without_app(db, settings)
    await grant(db, user, 10, days_ago=1, key="p1")

    class Broken:
        async def send(self, to, subject, body):
            raise ConnectionError("smtp down")

    await spend(db, user["id"], 8, "a")
    assert await usage.sweep(db, Broken(), settings) == 0
    assert await db.fetchval("SELECT status FROM usage_alerts WHERE user_id = $1", user["id"]) == "failed"
    assert await usage.sweep(db, OutboxMailSender(db), settings) == 0  # not before its retry time
    await db.execute("UPDATE usage_alerts SET claimed_at = now() - interval '10 minutes' WHERE user_id = $1", user["id"])
    assert await usage.sweep(db, OutboxMailSender(db), settings) == 1
    assert len(await mails_to(db, user["email"])) == 1
    assert await db.fetchval("SELECT attempts FROM usage_alerts WHERE user_id = $1", user["id"]) == 2


def test_a_capture_announces_only_the_charge_that_crosses_a_threshold():
    assert not crossed_threshold(0, 79, 100)
    assert crossed_threshold(79, 80, 100) and crossed_threshold(70, 95, 100)
    assert not crossed_threshold(80, 99, 100)  # 80% was announced by an earlier charge
    assert crossed_threshold(99, 100, 100) and crossed_threshold(50, 140, 100)
    assert not crossed_threshold(100, 120, 100)
    assert not crossed_threshold(0, 50, 0)  # no allowance (unlimited, or nothing granted)
    assert crossed_threshold(1_599_999_999, 1_600_000_000, 2_000_000_000)


async def test_me_tells_the_panel_the_share_used_whether_credits_are_low_and_where_to_top_up(client, db):
    user = await sign_up_user(client)
    await grant(db, user, 100, days_ago=1, key="p1")
    await spend(db, user["id"], 79, "a")
    body = await (await client.get("/v1/me", headers=user["headers"])).json()
    assert body["credits"]["used_percent"] == 79.0 and body["credits"]["low"] is False
    assert body["credits"]["topup_url"] == "http://127.0.0.1:8080/billing"
    assert body["credits"]["upgrade_url"] == "http://127.0.0.1:8080/pricing"
    await spend(db, user["id"], 2, "b")
    body = await (await client.get("/v1/me", headers=user["headers"])).json()
    assert body["credits"]["used_percent"] == 81.0 and body["credits"]["low"] is True


def summary(plan: Plan, *, used: int, allowance: int, start: datetime, end: datetime) -> CreditSummary:
    return CreditSummary(plan=plan, allowance=allowance, used=used, reserved=0,
                         remaining=None if plan.unlimited else allowance - used, topup=0, period_start=start,
                         period_end=end, unlimited=plan.unlimited, past_due_since=None)


async def test_the_forecast_divides_use_by_the_days_elapsed(db):
    plans = {p.code: p for p in await credits.plans(db)}
    now = datetime(2026, 3, 11, tzinfo=timezone.utc)
    start, end = datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 4, 1, tzinfo=timezone.utc)
    f = usage.forecast(summary(plans["basic"], used=300, allowance=500, start=start, end=end), now)
    # 30 a day; the 200 left last 6.67 more days.
    assert f.per_day == 30 and f.used_percent == 60.0
    assert f.runs_out_at == now + timedelta(days=200 / 30) and not f.lasts_period
    slow = usage.forecast(summary(plans["basic"], used=10, allowance=500, start=start, end=end), now)
    assert slow.lasts_period and slow.runs_out_at is None
    idle = usage.forecast(summary(plans["basic"], used=0, allowance=500, start=start, end=end), now)
    assert idle.per_day == 0 and idle.lasts_period
    assert usage.forecast(summary(plans["enterprise"], used=5, allowance=0, start=start, end=end), now) is None


# --- helpers ---------------------------------------------------------------------------------------


async def user_without_app(db, settings) -> dict:
    from helpers import unique_email

    email = unique_email("nolistener")
    return {"id": await create_user(db, settings, email, DEFAULT_PASSWORD), "email": email}


async def sign_up_user(client) -> dict:
    from helpers import sign_up

    signed = await sign_up(client)
    return {"id": signed.user_id, "email": signed.email, "headers": signed.headers}


async def grant(db, user, allowance: int, *, days_ago: int, key: str) -> None:
    now = await db.fetchval("SELECT now()")
    await credits.set_plan(db, user["id"], "pro")
    await credits.grant_period(db, user["id"], now - timedelta(days=days_ago, seconds=1), now + timedelta(days=29),
                               allowance, key=f"{key}:{user['id']}")
