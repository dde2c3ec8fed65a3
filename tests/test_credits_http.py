"""GET /v1/me: who is signed in, on which plan, with how many credits."""

from datetime import datetime, timedelta

from helpers import sign_up
from server.credits import service


async def test_me_needs_a_signed_in_user(client):
    resp = await client.get("/v1/me")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_me_shows_a_new_user_on_free_with_this_months_credits(client, db):
    user = await sign_up(client)

    resp = await client.get("/v1/me", headers=user.headers)

    assert resp.status == 200
    body = await resp.json()
    assert body["user"]["id"] == str(user.user_id)
    assert body["user"]["email"] == user.email
    assert set(body["user"]) == {"id", "email", "role", "status", "created_at", "email_verified"}
    assert body["user"]["email_verified"] is True, "sign_up follows the confirmation link"
    assert body["plan"]["code"] == "free" and body["plan"]["renews"] == "calendar_month"
    credits = body["credits"]
    assert (credits["allowance"], credits["used"], credits["reserved"], credits["remaining"]) == (20, 0, 0, 20)
    assert credits["unlimited"] is False and credits["past_due"] is False
    next_month = await db.fetchval(
        "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'")
    assert datetime.fromisoformat(credits["period_end"]) == next_month


async def test_me_shows_credits_held_and_spent(client, db):
    user = await sign_up(client)
    spent = await service.reserve(db, user.user_id, 2, "spent")
    await service.capture(db, spent.id, 2)
    await service.reserve(db, user.user_id, 3, "in-flight")

    body = await (await client.get("/v1/me", headers=user.headers)).json()

    assert {k: body["credits"][k] for k in ("used", "reserved", "remaining")} == {"used": 2, "reserved": 3, "remaining": 15}


async def test_me_on_enterprise_is_unlimited(client, db):
    user = await sign_up(client)
    now = await db.fetchval("SELECT now()")
    await service.set_plan(db, user.user_id, "enterprise")
    await service.grant_period(db, user.user_id, now, now + timedelta(days=30), None, key="in_ent")

    body = await (await client.get("/v1/me", headers=user.headers)).json()

    assert body["plan"]["code"] == "enterprise" and body["plan"]["unlimited"] is True
    assert body["credits"]["unlimited"] is True and body["credits"]["remaining"] is None


async def test_the_openapi_document_describes_me_and_pricing(client):
    doc = await (await client.get("/v1/openapi.json")).json()
    me = doc["paths"]["/v1/me"]["get"]
    assert me["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/MeResponse"}
    assert me["security"] == [{"bearerAuth": []}]
    pricing = doc["paths"]["/v1/pricing"]["get"]
    assert "security" not in pricing
    assert set(doc["components"]["schemas"]["MeResponse"]["properties"]) == {"user", "plan", "credits"}
