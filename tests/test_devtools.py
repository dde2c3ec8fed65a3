"""`python -m server dev-up` seeds a usable product: a simulator key in the bank and demo accounts."""

import asyncpg

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
