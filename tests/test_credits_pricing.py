"""Plans and prices are data: seeded by the migration, quoted by pure functions, served to all."""

import pytest

from server.credits import service
from server.credits.pricing import quote_sfx, quote_voice


@pytest.fixture
async def pricing(db):
    return await service.load_pricing(db)


async def test_the_four_plans_are_seeded_with_their_prices_and_allowances(db):
    plans = {p.code: p for p in await service.plans(db)}

    assert list(plans) == ["free", "basic", "pro", "enterprise"]
    assert {c: (p.price_cents, p.monthly_credits) for c, p in plans.items()} == {
        "free": (0, 20), "basic": (999, 500), "pro": (1999, 2000), "enterprise": (4999, None),
    }
    assert plans["enterprise"].unlimited and not plans["pro"].unlimited
    assert plans["free"].calendar_periods and not plans["basic"].calendar_periods
    free = plans["free"].features
    assert (free.voice, free.max_sfx_seconds, free.max_variations, free.max_voice_chars) == (True, 10, 1, 500)
    for plan in plans.values():
        assert 0 < plan.requests_per_minute <= plan.requests_per_hour
        assert "wav" in plan.features.formats and plan.features.retention_days > 0


async def test_sfx_costs_one_credit_per_started_ten_seconds_per_variation(pricing):
    assert quote_sfx(pricing, duration_seconds=0.5) == 1
    assert quote_sfx(pricing, duration_seconds=10) == 1
    assert quote_sfx(pricing, duration_seconds=10.5) == 2
    assert quote_sfx(pricing, duration_seconds=30) == 3
    assert quote_sfx(pricing, duration_seconds=25, variations=4) == 12


async def test_automatic_sfx_duration_reserves_the_maximum_and_captures_the_real_length(pricing):
    reserved = quote_sfx(pricing, duration_seconds=None, variations=2)
    captured = quote_sfx(pricing, duration_seconds=7.4, variations=2)
    assert (reserved, captured) == (6, 2)


async def test_a_few_milliseconds_of_codec_padding_do_not_cost_another_block(pricing):
    assert quote_sfx(pricing, duration_seconds=10.02) == 1
    assert quote_sfx(pricing, duration_seconds=20.04) == 2


async def test_voice_costs_one_credit_per_started_250_characters(pricing):
    assert quote_voice(pricing, characters=1) == 1
    assert quote_voice(pricing, characters=250) == 1
    assert quote_voice(pricing, characters=251) == 2
    assert quote_voice(pricing, characters=5000) == 20


async def test_reusing_a_cached_result_is_free(pricing):
    assert quote_sfx(pricing, duration_seconds=None, variations=4, reuse=True) == 0
    assert quote_voice(pricing, characters=2000, reuse=True) == 0


async def test_impossible_requests_are_programming_errors(pricing):
    with pytest.raises(ValueError):
        quote_sfx(pricing, duration_seconds=5, variations=0)
    with pytest.raises(ValueError):
        quote_sfx(pricing, duration_seconds=-1)
    with pytest.raises(ValueError):
        quote_voice(pricing, characters=-1)


async def test_changing_a_rule_in_the_table_changes_the_quote(db):
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("UPDATE pricing_rules SET unit_size = 5 WHERE code = 'sfx'")
            assert quote_sfx(await service.load_pricing(conn), duration_seconds=10) == 2
        finally:
            await tx.rollback()  # the seed rows survive between tests
    assert quote_sfx(await service.load_pricing(db), duration_seconds=10) == 1


async def test_the_per_process_plan_catalogue_reads_postgres_once_per_ttl_and_for_unknown_codes(db):
    catalogue = service.PlanCatalog(db, ttl=3600)
    assert (await catalogue.get("pro")).monthly_credits == 2000
    await db.execute("""INSERT INTO plans SELECT (jsonb_populate_record(p, '{"code": "studio", "monthly_credits": 3000}')).*
                          FROM plans p WHERE code = 'pro'""")
    try:
        await db.execute("UPDATE plans SET monthly_credits = 2100 WHERE code = 'pro'")
        assert (await catalogue.get("pro")).monthly_credits == 2000  # within its TTL: from memory
        assert (await catalogue.get("studio")).monthly_credits == 3000  # a code it never saw: read again
        assert (await catalogue.get("pro")).monthly_credits == 2100  # and that read refreshed the rest
        assert await catalogue.get("no-such-plan") is None
    finally:
        await db.execute("DELETE FROM plans WHERE code = 'studio'")
        await db.execute("UPDATE plans SET monthly_credits = 2000 WHERE code = 'pro'")


async def test_pricing_is_public_over_http(client):
    resp = await client.get("/v1/pricing")

    assert resp.status == 200
    body = await resp.json()
    assert [p["code"] for p in body["plans"]] == ["free", "basic", "pro", "enterprise"]
    pro = body["plans"][2]
    assert (pro["price_cents"], pro["monthly_credits"], pro["renews"]) == (1999, 2000, "billing_period")
    assert body["plans"][3]["unlimited"] is True and body["plans"][3]["monthly_credits"] is None
    assert set(pro["features"]) == {"voice", "max_sfx_seconds", "max_variations", "max_voice_chars",
                                    "retention_days", "formats", "assist"}
    rules = {r["code"]: r for r in body["rules"]}
    assert (rules["sfx"]["unit"], rules["sfx"]["unit_size"], rules["sfx"]["reserve_units"]) == ("second", 10, 30)
    assert (rules["voice"]["unit"], rules["voice"]["unit_size"]) == ("character", 250)
    assert rules["reuse"]["credits_per_block"] == 0
    assert (rules["assist"]["unit"], rules["assist"]["unit_size"], rules["assist"]["minimum_credits"]) == ("token", 2000, 1)
