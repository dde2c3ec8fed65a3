"""`python -m server dev-up` seeds a usable product: a simulator key in the bank and demo accounts."""

import asyncpg
import stripe

from server import devtools
from server.credits import service as credits
from server.keybank import KeyBank


async def test_simulator_key_is_registered_once_and_survives_restarts(settings):
    for _ in range(2):  # a second dev-up finds the key already banked
        simulator = await devtools.start_local_simulator(0)
        try:
            dev_settings = settings.replace(elevenlabs_base_url=simulator.url, allow_simulator=True)
            async with KeyBank.open(dev_settings) as bank:
                assert not await devtools.has_real_elevenlabs_key(bank)
                await devtools.ensure_simulator_key(bank, dev_settings, simulator)
                keys = await bank.list_keys("elevenlabs")
        finally:
            await simulator.aclose()
        assert [(k.label, k.status) for k in keys] == [("simulator", "active")]


async def test_demo_accounts_are_seeded_idempotently_with_their_plans(settings):
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await devtools.seed_demo_accounts(pool, settings)
        await devtools.seed_demo_accounts(pool, settings)
        rows = await pool.fetch(
            "SELECT u.email, u.role, a.plan_code FROM users u JOIN credit_accounts a ON a.user_id = u.id ORDER BY u.email"
        )
    finally:
        await pool.close()
    assert [(r["email"], r["role"], r["plan_code"]) for r in rows] == sorted(
        (email, role, plan) for email, role, plan in devtools.DEMO_ACCOUNTS
    )


async def test_paid_demo_accounts_can_generate_right_away(settings, db):
    await devtools.seed_demo_accounts(db, settings)
    await devtools.seed_demo_accounts(db, settings)  # a restart grants nothing twice
    remaining = {
        r["email"]: (await credits.summary(db, r["id"])).remaining
        for r in await db.fetch("SELECT id, email FROM users")
    }
    assert remaining == {"demo@example.com": 20, "pro@example.com": 2000, "admin@example.com": None}
    assert await db.fetchval("SELECT count(*) FROM users WHERE email_verified_at IS NULL") == 0, \
        "demo accounts need no verification mail"


async def test_dev_without_a_stripe_test_key_runs_a_local_stripe_that_knows_the_plans(tmp_path):
    from server.settings import Settings

    dev = Settings.from_env({"APP_ENV": "dev", "DATA_DIR": str(tmp_path)})
    assert devtools.uses_generated_stripe_key(dev)
    assert not devtools.uses_generated_stripe_key(dev.replace(stripe_secret_key="sk_test_" + "a" * 24))

    fake, context = await devtools.start_local_stripe(dev, 0)
    try:
        client = stripe.StripeClient(dev.stripe_secret_key, base_addresses={"api": fake.base_url},
                                     http_client=stripe.AIOHTTPClient())
        prices = await client.v1.prices.list_async()
        assert {p.id for p in prices.data} >= {dev.price_ids["basic"], dev.price_ids["pro"]}
        assert fake.webhook_url == dev.public_url + "/webhooks/stripe"
    finally:
        await context.__aexit__(None, None, None)


async def test_without_a_real_llm_key_dev_banks_a_simulator_key_per_llm_provider(settings):
    """Prompt assistance works in dev out of the box: the LLM simulator and one key per provider,
    the same keys after a restart (the simulator forgets them, the bank keeps them)."""
    for _ in range(2):
        simulator = await devtools.start_local_llm_simulator(0)
        try:
            dev_settings = settings.replace(**simulator.base_urls(), allow_simulator=True)
            async with KeyBank.open(dev_settings) as bank:
                assert not await devtools.has_real_llm_key(bank)
                await devtools.ensure_llm_simulator_keys(bank, dev_settings, simulator)
                keys = [(k.provider, k.label, k.status) for p in devtools.LLM_PROVIDERS for k in await bank.list_keys(p)]
        finally:
            await simulator.aclose()
        assert keys == [(p, "simulator", "active") for p in devtools.LLM_PROVIDERS]
