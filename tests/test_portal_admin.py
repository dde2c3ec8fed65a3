"""Admin pages: every action needs the admin role, goes through the owning domain, and lands in the audit log."""

from __future__ import annotations

import logging
import re
import secrets

import pytest

from helpers import sign_in
from server.audit import audit
from server.credits import service as credits
from server.keybank import KEYBANK
from server.simulator import SimulatorState, create_simulator_app
from test_portal_support import admin, browser_factory, customer, visitor  # noqa: F401 (fixtures)


async def audit_rows(db, action: str | None = None):
    return await db.fetch(
        "SELECT actor_id, action, object_type, object_id, details FROM audit_log WHERE $1::text IS NULL OR action = $1 ORDER BY id",
        action,
    )


async def test_non_admins_cannot_use_admin_actions(customer, db):
    portal, user = customer
    attempts = [
        (f"/admin/users/{user.id}/credits", {"amount": "500", "reason": "free money"}),
        (f"/admin/users/{user.id}/plan", {"plan": "enterprise"}),
        (f"/admin/users/{user.id}/status", {"action": "suspend"}),
        ("/admin/keys", {"provider": "elevenlabs", "label": "mine", "secret": "sk_" + "x" * 20, "max_concurrency": "2"}),
        ("/admin/keys/1/disable", {}),
    ]
    for path, form in attempts:
        resp = await portal.post(path, form)
        assert resp.status == 403, path
    summary = await credits.summary(db, user.id)
    assert summary.remaining == 20 and summary.plan.code == "free"
    assert await audit_rows(db) == []


async def test_admin_adjusts_credits_with_a_reason_through_the_ledger(admin, customer, db):
    portal, me = admin
    _, user = customer
    resp = await portal.post(f"/admin/users/{user.id}/credits", {"amount": "25", "reason": ""})
    assert resp.status == 303
    assert (await credits.summary(db, user.id)).remaining == 20, "no reason, no adjustment"

    await portal.post(f"/admin/users/{user.id}/credits", {"amount": "25", "reason": "Support ticket 42"})
    await portal.post(f"/admin/users/{user.id}/credits", {"amount": "-100", "reason": "Chargeback"})
    assert (await credits.summary(db, user.id)).remaining == 0, "a removal never takes the balance below zero"
    entries = await db.fetch("SELECT amount, reason, actor FROM credit_ledger WHERE user_id = $1 AND kind = 'adjust' ORDER BY id", user.id)
    assert [(e["amount"], e["reason"]) for e in entries] == [(25, "Support ticket 42"), (-45, "Chargeback")]
    assert entries[0]["actor"] == f"admin:{me.email}"
    rows = await audit_rows(db, "credits.adjusted")
    assert [(r["actor_id"], r["object_id"]) for r in rows] == [(me.id, str(user.id))] * 2
    text = await portal.page(f"/admin/users/{user.id}")
    assert "Support ticket 42" in text and "Chargeback" in text


async def test_admin_comps_a_plan_and_the_audit_log_says_from_what(admin, customer, db):
    portal, me = admin
    _, user = customer
    resp = await portal.post(f"/admin/users/{user.id}/plan", {"plan": "basic"})
    assert resp.status == 303
    assert (await credits.plan_for(db, user.id)).code == "basic"
    (row,) = await audit_rows(db, "user.plan_changed")
    assert row["actor_id"] == me.id
    assert '"from": "free"' in row["details"] and '"to": "basic"' in row["details"] and '"comped": true' in row["details"]
    await portal.post(f"/admin/users/{user.id}/plan", {"plan": "platinum"})
    assert (await credits.plan_for(db, user.id)).code == "basic"


async def test_suspension_ends_every_session_and_reactivation_restores_sign_in(client, admin, customer, db, browser_factory):
    portal, me = admin
    user_portal, user = customer
    panel = await sign_in(client, user.email)
    resp = await portal.post(f"/admin/users/{user.id}/status", {"action": "suspend", "reason": "abuse report"})
    assert resp.status == 303
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", user.id) == "suspended"
    assert (await user_portal.get("/dashboard")).status == 303
    assert (await client.get("/v1/me", headers=panel.headers)).status == 401

    await portal.post(f"/admin/users/{user.id}/status", {"action": "reactivate"})
    again = await browser_factory()
    assert (await again.sign_in(user.email, user.password)).status == 303
    assert [r["action"] for r in await audit_rows(db)] == ["user.suspended", "user.reactivated"]

    resp = await portal.post(f"/admin/users/{me.id}/status", {"action": "suspend"})
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", me.id) == "active", "no locking yourself out"


async def test_user_search_finds_by_email_fragment_and_filters_by_status(admin, customer, db):
    portal, _ = admin
    _, user = customer
    fragment = user.email.split("@")[0][-8:]
    text = await portal.page(f"/admin/users?q={fragment}")
    assert user.email in text and "1 account match" in text
    text = await portal.page(f"/admin/users?q={fragment}&status=suspended")
    assert user.email not in text


@pytest.fixture
async def simulator(aiohttp_server):
    state = SimulatorState()
    server = await aiohttp_server(create_simulator_app(state))
    return state, str(server.make_url("")).rstrip("/")


@pytest.fixture
def settings(settings, simulator):
    return settings.replace(elevenlabs_base_url=simulator[1])


async def test_admin_adds_a_validated_key_whose_secret_is_never_shown_again(client, admin, db, simulator, caplog):
    caplog.set_level(logging.DEBUG)
    portal, me = admin
    state, _ = simulator
    good, bad = "sk_" + secrets.token_hex(24), "sk_" + secrets.token_hex(24)
    state.add_key(good, character_limit=50_000, max_concurrency=3)

    resp = await portal.post("/admin/keys", {"provider": "elevenlabs", "label": "Main", "secret": bad, "max_concurrency": "3"})
    text = await resp.text()
    assert resp.status == 422, "a key the provider refuses is not stored"
    assert bad not in text
    assert await db.fetchval("SELECT count(*) FROM provider_keys") == 0

    resp = await portal.post("/admin/keys", {"provider": "elevenlabs", "label": "Main", "secret": good, "max_concurrency": "3"})
    assert resp.status == 303
    text = await portal.page("/admin/keys")
    assert "Main" in text and f"…{good[-4:]}" in text and good not in text
    assert "50,000" in text, "the quota read from the provider is shown"
    key_id = await db.fetchval("SELECT id FROM provider_keys WHERE label = 'Main'")

    await portal.post(f"/admin/keys/{key_id}/disable")
    assert (await client.server.app[KEYBANK].get_key(key_id)).status == "disabled"
    await portal.post(f"/admin/keys/{key_id}/enable")
    assert (await client.server.app[KEYBANK].get_key(key_id)).status == "active"
    await portal.post(f"/admin/keys/{key_id}/remove")
    assert await db.fetchval("SELECT count(*) FROM provider_keys") == 0
    rows = await audit_rows(db)
    assert [r["action"] for r in rows] == ["key.added", "key.disabled", "key.enabled", "key.removed"]
    assert all(good not in r["details"] for r in rows)
    assert good not in caplog.text and bad not in caplog.text


async def test_audit_log_filters_by_actor_action_and_object(admin, customer, db):
    portal, me = admin
    _, user = customer
    await portal.post(f"/admin/users/{user.id}/credits", {"amount": "5", "reason": "filter me"})
    await portal.post(f"/admin/users/{user.id}/plan", {"plan": "pro"})

    text = await portal.page("/admin/audit?action=credits.")
    assert "credits.adjusted" in text and "user.plan_changed" not in text
    text = await portal.page(f"/admin/audit?actor={me.email}&object_type=user&object_id={user.id}")
    assert "credits.adjusted" in text and "user.plan_changed" in text
    text = await portal.page("/admin/audit?actor=nobody-at-all")
    assert "No entries match" in text


async def test_outbox_viewer_shows_dev_mail_and_records_who_read_it(admin, visitor, customer, db):
    portal, me = admin
    _, user = customer
    await visitor.post("/forgot-password", {"email": user.email})
    await visitor.settled()
    message_id = await db.fetchval("SELECT id FROM mail_outbox WHERE to_address = $1 AND subject LIKE 'Reset%'", user.email)
    text = await portal.page("/admin/outbox")
    assert "Reset your SFX Studio password" in text and user.email in text
    text = await portal.page(f"/admin/outbox/{message_id}")
    assert "/reset-password?token=" in text
    (row,) = await audit_rows(db, "mail.viewed")
    assert row["actor_id"] == me.id and row["object_id"] == str(message_id)
    assert (await portal.get("/admin/outbox/999999")).status == 404


async def test_users_list_shows_each_users_plan_and_balance(admin, customer, db):
    portal, me = admin
    _, user = customer
    await credits.set_plan(db, user.id, "basic")
    await credits.adjust(db, user.id, 40, "goodwill", "admin:test")
    text = await portal.page(f"/admin/users?q={user.email}")
    row = text.split(f">{user.email}</a>")[1].split("</tr>")[0]
    assert 'data-label="Plan">Basic<' in row
    balance = re.sub(r"<[^>]+>", "", row.split('data-label="Balance">')[1].split("</td>")[0]).strip()
    assert balance == "40 (40 top-up)", "a basic plan opens no period until paid; the adjustment is spendable"
    mine = (await portal.page(f"/admin/users?q={me.email}")).split(f">{me.email}</a>")[1].split("</tr>")[0]
    assert 'data-label="Plan">Free<' in mine and ">20<" in mine


async def test_the_audit_log_names_users_keys_and_releases_instead_of_bare_ids(client, admin, customer, db, simulator):
    portal, me = admin
    _, user = customer
    state, _ = simulator
    secret = "sk_" + secrets.token_hex(24)
    state.add_key(secret, character_limit=50_000, max_concurrency=3)
    await portal.post(f"/admin/users/{user.id}/credits", {"amount": "5", "reason": "goodwill"})
    await portal.post("/admin/keys", {"provider": "elevenlabs", "label": "Primary pool", "secret": secret, "max_concurrency": "3"})
    key_id = await db.fetchval("SELECT id FROM provider_keys")
    await portal.post(f"/admin/keys/{key_id}/remove")  # a removed key is still named, from its entry
    await audit(db, me.id, "release.published", "release", "7f3c2a10-0000-4000-8000-000000000001", {"version": "1.4.0"})

    text = await portal.page("/admin/audit")
    objects = [re.sub(r"<[^>]+>", "", o).strip() for o in re.findall(r'data-testid="audit-object">(.*?)</td>', text, re.S)]
    assert objects == ["release: 1.4.0", "provider key: Primary pool", "provider key: Primary pool", f"user: {user.email}"]
    assert str(user.id)[:8] + "…" not in text
