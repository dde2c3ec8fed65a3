"""Accounts: registration, the password policy, bcrypt hashes, and the create-admin command."""

import asyncio
import io
import logging
import sys

import asyncpg
import bcrypt
import pytest

from helpers import DEFAULT_PASSWORD, sign_up, unique_email
from server import cli
from server.auth import passwords, service
from server.auth.cli import create_admin


async def test_register_creates_an_unverified_user_and_mails_a_link_instead_of_signing_in(client, db):
    resp = await client.post(
        "/v1/auth/register",
        json={"email": "  Editor.One@Example.COM ", "password": DEFAULT_PASSWORD, "device_name": "Edit Suite 2"},
    )
    assert resp.status == 202
    body = await resp.json()
    assert set(body) == {"message"} and "Check your inbox" in body["message"]
    assert resp.headers["Cache-Control"] == "no-store"

    row = await db.fetchrow("SELECT email::text AS email, password_hash, status, role, email_verified_at FROM users")
    assert row["email"] == "editor.one@example.com"
    assert row["password_hash"].startswith("$2b$04$")  # tests run at BCRYPT_COST=4
    assert DEFAULT_PASSWORD not in row["password_hash"]
    assert row["email_verified_at"] is None
    assert await db.fetchval("SELECT count(*) FROM device_sessions") == 0, "no device until the address is confirmed"
    mail = await db.fetchrow("SELECT to_address::text AS to_address, subject, body FROM mail_outbox")
    assert mail["to_address"] == "editor.one@example.com"
    assert mail["subject"] == "Confirm your email for SFX Studio"
    assert "/verify-email?token=" in mail["body"]


async def test_registering_a_taken_email_answers_exactly_like_a_new_one_and_mails_the_holder(client, db):
    """Sign-up must not tell an outsider who is a customer: same status, same body, and the mail
    goes to the address's owner, who already knows."""
    await sign_up(client, email="dup@example.com")
    fresh = await client.post("/v1/auth/register", json={"email": unique_email("new"), "password": "another good password"})
    taken = await client.post("/v1/auth/register", json={"email": "DUP@example.com", "password": "another good password"})
    assert (taken.status, await taken.json()) == (fresh.status, await fresh.json()) == (202, await fresh.json())
    assert "another good password" not in await taken.text()
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = 'dup@example.com'") == 1
    mail = await db.fetchrow("SELECT subject, body FROM mail_outbox WHERE to_address = 'dup@example.com' ORDER BY id DESC LIMIT 1")
    assert mail["subject"] == "You already have an SFX Studio account"
    assert "/forgot-password" in mail["body"] and "token=" not in mail["body"]


@pytest.mark.parametrize(
    ("email", "password", "field", "kind"),
    [
        ("short@example.com", "nine char", "password", "string_too_short"),
        ("Same.As.Email@example.com", "same.as.EMAIL@example.com", "password", "password_is_email"),
        ("not-an-email", "long enough password", "email", "email_invalid"),
    ],
)
async def test_password_policy_and_bad_emails_are_422_with_field_details(client, db, email, password, field, kind):
    resp = await client.post("/v1/auth/register", json={"email": email, "password": password})
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "validation_failed"
    problems = body["error"]["details"]["fields"]
    assert {"field": field, "location": "body", "type": kind} == {k: problems[0][k] for k in ("field", "location", "type")}
    assert problems[0]["message"]
    assert password not in await resp.text()
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_register_rejects_unknown_fields_and_missing_password(client):
    resp = await client.post("/v1/auth/register", json={"email": unique_email(), "role": "admin"})
    assert resp.status == 422
    fields = {f["field"] for f in (await resp.json())["error"]["details"]["fields"]}
    assert fields == {"password", "role"}


async def test_passwords_keep_surrounding_whitespace_and_every_character_counts(client):
    """The request models do not trim passwords, and long passphrases are not cut at bcrypt's 72 bytes."""
    long_a = "x" * 80 + "a"
    long_b = "x" * 80 + "b"
    user = await sign_up(client, password=long_a)
    wrong = await client.post("/v1/auth/login", json={"email": user.email, "password": long_b, "device_name": "A"})
    assert wrong.status == 401
    right = await client.post("/v1/auth/login", json={"email": user.email, "password": long_a, "device_name": "A"})
    assert right.status == 200

    spaced = await sign_up(client, password="  padded password  ")
    trimmed = await client.post("/v1/auth/login", json={"email": spaced.email, "password": "padded password", "device_name": "A"})
    assert trimmed.status == 401


async def test_create_user_normalises_the_email_and_refuses_duplicates(db, settings):
    user_id = await service.create_user(db, settings, " Mixed.Case@Example.com", "long enough password")
    assert await db.fetchval("SELECT email::text FROM users WHERE id = $1", user_id) == "mixed.case@example.com"
    with pytest.raises(service.EmailTaken):
        await service.create_user(db, settings, "mixed.case@EXAMPLE.com", "long enough password")


async def test_create_user_reports_every_policy_problem_at_once(db, settings):
    with pytest.raises(service.PolicyViolation) as caught:
        await service.create_user(db, settings, "nope", "short")
    assert {p["field"] for p in caught.value.problems} == {"email", "password"}
    assert caught.value.status == 422


async def test_verify_credentials_returns_the_user_and_records_the_login(db, settings):
    user_id = await service.create_user(db, settings, "v@example.com", "long enough password")
    user = await service.verify_credentials(db, settings, "V@example.com", "long enough password")
    assert (user.id, user.email, user.role, user.status, user.session_id) == (user_id, "v@example.com", "user", "active", None)
    assert await db.fetchval("SELECT last_login_at FROM users WHERE id = $1", user_id) is not None
    for email, password in (("v@example.com", "wrong password!"), ("ghost@example.com", "long enough password")):
        with pytest.raises(service.InvalidCredentials):
            await service.verify_credentials(db, settings, email, password)


async def test_a_hash_made_with_an_older_cost_is_upgraded_at_sign_in(db, settings):
    user_id = await service.create_user(db, settings, "old@example.com", "long enough password")
    stronger = settings.replace(bcrypt_cost=5)
    await service.verify_credentials(db, stronger, "old@example.com", "long enough password")
    new_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    assert new_hash.startswith("$2b$05$")
    await service.verify_credentials(db, stronger, "old@example.com", "long enough password")


async def test_bcrypt_runs_in_an_executor_not_on_the_event_loop(settings):
    """While a deliberately slow hash is computed, the loop keeps serving other tasks."""
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start
    started = asyncio.get_running_loop().time()
    hashed = await passwords.hash_password("long enough password", 12)
    elapsed = asyncio.get_running_loop().time() - started
    task.cancel()
    assert bcrypt.checkpw(passwords._prehash("long enough password"), hashed.encode())
    assert elapsed > 0.05  # cost 12 is slow enough to notice a blocked loop
    assert ticks >= 3


async def test_unknown_emails_cost_a_bcrypt_check_like_wrong_passwords(db, settings):
    """Response time must not tell whether an account exists: unknown emails are checked against a dummy hash."""
    slow = settings.replace(bcrypt_cost=10)
    await service.create_user(db, slow, "timed@example.com", "long enough password")

    async def fastest(email):
        times = []
        for _ in range(3):
            started = asyncio.get_running_loop().time()
            with pytest.raises(service.InvalidCredentials):
                await service.verify_credentials(db, slow, email, "wrong password!!")
            times.append(asyncio.get_running_loop().time() - started)
        return min(times)

    known = await fastest("timed@example.com")
    unknown = await fastest("nobody@example.com")
    assert known > 0.01
    assert unknown > 0.5 * known


# --- create-admin ----------------------------------------------------------------------

@pytest.fixture
def keep_logging():
    """server.cli.main configures process-wide logging; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_cli(monkeypatch, test_env, argv, stdin_text):
    for name, value in test_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    return cli.main(argv)


async def fetch_user(database_url, email):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT id, role, status, password_hash FROM users WHERE email = $1", email)
    finally:
        await conn.close()


def test_create_admin_command_creates_an_administrator_from_a_piped_password(monkeypatch, test_env, keep_logging, capsys):
    code = run_cli(monkeypatch, test_env, ["create-admin", "Boss@Example.com"], "admins long password\n")
    assert code == 0
    out = capsys.readouterr()
    assert "boss@example.com" in out.out
    assert "admins long password" not in out.out + out.err
    row = asyncio.run(fetch_user(test_env["DATABASE_URL"], "boss@example.com"))
    assert row["role"] == "admin" and row["status"] == "active"
    assert bcrypt.checkpw(passwords._prehash("admins long password"), row["password_hash"].encode())


def test_create_admin_command_promotes_an_existing_account_and_keeps_its_password(test_env, settings, capsys):
    async def scenario():
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            await service.create_user(pool, settings, "editor@example.com", "editor password 1")
        finally:
            await pool.close()
        return await create_admin(settings, "editor@example.com")

    assert asyncio.run(scenario()) == 0
    row = asyncio.run(fetch_user(test_env["DATABASE_URL"], "editor@example.com"))
    assert row["role"] == "admin"
    assert bcrypt.checkpw(passwords._prehash("editor password 1"), row["password_hash"].encode())
    assert "now an administrator" in capsys.readouterr().out


def test_create_admin_command_can_reset_the_password_of_an_existing_account(monkeypatch, test_env, keep_logging):
    assert run_cli(monkeypatch, test_env, ["create-admin", "ops@example.com"], "first long password\n") == 0
    assert run_cli(monkeypatch, test_env, ["create-admin", "ops@example.com", "--set-password"], "second long password\n") == 0
    row = asyncio.run(fetch_user(test_env["DATABASE_URL"], "ops@example.com"))
    assert bcrypt.checkpw(passwords._prehash("second long password"), row["password_hash"].encode())


def test_create_admin_command_refuses_a_weak_password_without_echoing_it(monkeypatch, test_env, keep_logging, capsys):
    code = run_cli(monkeypatch, test_env, ["create-admin", "weak@example.com"], "tiny\n")
    assert code == 1
    out = capsys.readouterr()
    assert "at least 10 characters" in out.err
    assert "tiny" not in out.out + out.err
    assert asyncio.run(fetch_user(test_env["DATABASE_URL"], "weak@example.com")) is None


def test_create_admin_command_refuses_an_empty_password(monkeypatch, test_env, keep_logging, capsys):
    assert run_cli(monkeypatch, test_env, ["create-admin", "empty@example.com"], "") == 1
    assert "no password" in capsys.readouterr().err
