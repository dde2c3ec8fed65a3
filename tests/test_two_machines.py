"""Nothing is per machine: two server processes with their own data folders, sharing only Postgres,
Redis and an S3 bucket, act as one service behind a load balancer. Whatever one of them did, the
other one knows: audio, history, portal sessions, rate limits, webhooks and the key bank."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from generation_support import (  # noqa: F401 (fixtures, used by name; two of them autouse)
    books_balance, leaks, no_secret_in_logs_or_responses, sim,
)
from server.credits import service as credits
from server.keybank import KeyBank
from server.settings import Settings
from server.simulator.stripe import running_fake_stripe
from test_storage_s3 import bucket_objects

PASSWORD = "correct horse battery"


@dataclass
class Machine:
    name: str
    url: str
    proc: asyncio.subprocess.Process
    log: Path
    data_dir: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_machine(name: str, env: dict[str, str], tmp_path: Path) -> Machine:
    port = free_port()
    data_dir = tmp_path / name
    data_dir.mkdir()
    log = tmp_path / f"{name}.log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--no-migrate",
        env={**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1", "DATA_DIR": str(data_dir), "LOG_LEVEL": "INFO"},
        stdout=asyncio.subprocess.DEVNULL, stderr=log.open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return Machine(name, url, proc, log, data_dir)
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    raise AssertionError(f"machine {name} did not start: " + log.read_text()[-2000:])


async def stop(machine: Machine) -> int:
    if machine.proc.returncode is None:
        machine.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(machine.proc.wait(), 40)
        except TimeoutError:
            machine.proc.kill()
            await machine.proc.wait()
    return machine.proc.returncode


@pytest.fixture
async def fake_stripe(test_env):
    async with running_fake_stripe(api_key=test_env["STRIPE_SECRET_KEY"], webhook_secret=test_env["STRIPE_WEBHOOK_SECRET"],
                                   price_ids=Settings.from_env(test_env).price_ids) as fake:
        yield fake


@pytest.fixture
async def machines(test_env, s3_env, sim, fake_stripe, tmp_path):
    env = {**test_env, **s3_env, "ELEVENLABS_BASE_URL": sim.url, "STRIPE_API_BASE": fake_stripe.base_url,
           "UPSTREAM_DEADLINE": "5", "UPSTREAM_ATTEMPT_TIMEOUT": "2"}
    a, b = await asyncio.gather(start_machine("a", env, tmp_path), start_machine("b", env, tmp_path))
    try:
        yield a, b
    finally:
        codes = [await stop(a), await stop(b)]
        # Both stop cleanly on SIGTERM, S3 client included (an abort at exit would show as -6).
        assert codes == [0, 0], [m.log.read_text()[-3000:] for m in (a, b)]


async def register(session, machine, email, db) -> dict:
    """Sign up on `machine`, confirm the address (as the mailed link does), sign in there."""
    from server.auth import verification

    async with session.post(machine.url + "/v1/auth/register", json={"email": email, "password": PASSWORD}) as resp:
        assert resp.status == 202, await resp.text()
    await verification.mark_verified(db, await db.fetchval("SELECT id FROM users WHERE email = $1", email))
    async with session.post(machine.url + "/v1/auth/login",
                            json={"email": email, "password": PASSWORD, "device_name": "suite"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return {"id": body["user"]["id"], "headers": {"Authorization": f"Bearer {body['access_token']}"}}


async def sfx(session, machine, user, prompt, key=None):
    headers = {**user["headers"], "Idempotency-Key": key or prompt}
    async with session.post(machine.url + "/v1/sfx", json={"prompt": prompt, "duration_seconds": 1},
                            headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_two_machines_share_everything_but_their_disks(machines, test_env, s3_env, sim, fake_stripe, db, leaks):
    a, b = machines
    settings = Settings.from_env({**test_env, **s3_env, "ELEVENLABS_BASE_URL": sim.url})
    secrets_ = [leaks.key(), leaks.key()]
    async with KeyBank.open(settings) as bank:  # keys added once, by an operator, for every machine
        for n, secret in enumerate(secrets_):
            sim.state.add_key(secret, character_limit=1_000_000, max_concurrency=4)
            # key-0 weighs more: a request takes it whenever it is free and not cooling down.
            await bank.add_key(provider="elevenlabs", label=f"key-{n}", secret=secret, max_concurrency=4,
                               weight=2 - n)

    async with aiohttp.ClientSession() as session:
        # --- generation on one machine, history and audio on the other ---------------------------
        alice = await register(session, a, "alice-two-machines@example.com", db)
        leaks.values.append(alice["headers"]["Authorization"].split()[1])
        status, headers, original = await sfx(session, a, alice, "rain on a tin roof")
        assert status == 200, original
        generation_id = headers["X-Generation-Id"]
        async with session.get(b.url + "/v1/generations", headers=alice["headers"]) as resp:
            assert [i["id"] for i in (await resp.json())["items"]] == [generation_id]
        async with session.get(f"{b.url}/v1/generations/{generation_id}/audio", headers=alice["headers"]) as resp:
            assert resp.status == 200 and await resp.read() == original
        async with session.get(f"{b.url}/v1/generations/{generation_id}/audio",
                               headers={**alice["headers"], "Range": "bytes=0-99"}) as resp:
            assert resp.status == 206 and await resp.read() == original[:100]
        # Neither machine wrote audio to its own disk: it is all in the bucket.
        assert [p for m in (a, b) for p in m.data_dir.rglob("*.wav")] == []
        assert len(bucket_objects(s3_env)) == 1
        # The same Idempotency-Key on the other machine replays the first answer, no second charge.
        status, headers, again = await sfx(session, b, alice, "rain on a tin roof")
        assert status == 200 and again == original and headers["Idempotent-Replayed"] == "true"
        assert (await credits.summary(db, alice["id"])).remaining == 19

        # --- the key bank: a key in trouble on one machine is avoided by the other -----------------
        # key-0 is overloaded from now on; the provider asks for 30 s of rest, longer than this test.
        sim.state.inject(secrets_[0], "429_busy", retry_after=30)
        healthy_calls = len(sim.calls(secrets_[0], "sound-generation"))
        status, _, body = await sfx(session, a, alice, "thunder clap")
        assert status == 200, body  # key-0 refused, key-1 answered
        failed_calls = len(sim.calls(secrets_[0], "sound-generation"))
        assert failed_calls == healthy_calls + 1
        async with KeyBank.open(settings) as bank:
            views = {v.label: v for v in await bank.list_keys()}
        assert views["key-0"].cooldown_until is not None and views["key-1"].cooldown_until is None
        for n in range(3):
            status, _, body = await sfx(session, b, alice, f"wind gust {n}")
            assert status == 200, body
        assert len(sim.calls(secrets_[0], "sound-generation")) == failed_calls  # B stayed off the cooling key
        sim.state.clear_faults(secrets_[0])

        # --- rate limits are counted for all machines together -------------------------------------
        bob = await register(session, b, "bob-two-machines@example.com", db)  # free: 10 requests a minute
        statuses = []
        for n in range(12):
            status, _, _ = await sfx(session, (a, b)[n % 2], bob, f"click {n}")
            statuses.append(status)
        assert statuses.count(200) == 10 and statuses.count(429) == 2, statuses

        # --- a portal session opened on one machine works on the other, and ends on both -----------
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            async with browser.get(a.url + "/signin") as resp:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text()).group(1)
            async with browser.post(a.url + "/signin", data={"email": "alice-two-machines@example.com",
                                                              "password": PASSWORD, "csrf_token": csrf},
                                    allow_redirects=False) as resp:
                assert resp.status in (302, 303), await resp.text()
            async with browser.get(b.url + "/dashboard", allow_redirects=False) as resp:
                assert resp.status == 200 and "alice-two-machines@example.com" in await resp.text()

            # --- webhooks: Checkout from one machine, Stripe's events to the other ------------------
            async with browser.get(b.url + "/billing") as resp:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text()).group(1)
            async with browser.post(b.url + "/billing/subscribe", data={"plan": "pro", "csrf_token": csrf},
                                    allow_redirects=False) as resp:
                assert resp.status in (302, 303), await resp.text()
                checkout_url = resp.headers["Location"]
            fake_stripe.webhook_url = a.url + "/webhooks/stripe"
            events = await fake_stripe.complete_checkout(checkout_url.rstrip("/").rsplit("/", 1)[1])
            assert fake_stripe.deliveries and all(d.status == 200 for d in fake_stripe.deliveries)
            async with session.get(b.url + "/v1/me", headers=alice["headers"]) as resp:
                me = await resp.json()
                assert me["plan"]["code"] == "pro" and me["credits"]["remaining"] == 2000, me
            paid = next(e for e in events if e["type"] == "invoice.paid")
            redelivered = await fake_stripe.deliver(paid, url=b.url + "/webhooks/stripe")
            assert json.loads(redelivered.body)["outcome"] == "duplicate"

            # Signing out on B ends the session A opened.
            async with browser.get(b.url + "/dashboard") as resp:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text()).group(1)
            async with browser.post(b.url + "/signout", data={"csrf_token": csrf}, allow_redirects=False) as resp:
                assert resp.status in (302, 303)
            async with browser.get(a.url + "/dashboard", allow_redirects=False) as resp:
                assert resp.status in (302, 303) and "/signin" in resp.headers["Location"]

    logs = a.log.read_text() + b.log.read_text()
    assert [s for s in leaks.values + [s3_env["S3_SECRET_ACCESS_KEY"]] if s in logs] == []
