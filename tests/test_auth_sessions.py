"""Device sessions: login, refresh rotation, theft detection, logout, and the device list."""

import asyncio

import pytest

from helpers import sign_in, sign_up
from server.auth import service
from server.auth.tokens import hash_refresh_token


async def refresh(client, token, **headers):
    return await client.post("/v1/auth/refresh", json={"refresh_token": token}, headers=headers)


async def error_code(resp):
    return (await resp.json())["error"]["code"]


async def test_login_opens_a_new_device_session_with_its_own_tokens(client, db):
    user = await sign_up(client, device_name="Laptop")
    resp = await client.post(
        "/v1/auth/login",
        json={"email": user.email.upper(), "password": user.password, "device_name": "  Edit Suite 3  "},
        headers={"User-Agent": "Premiere Pro CEP/12"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["user"]["id"] == str(user.user_id)
    assert body["device_id"] != str(user.device_id)
    assert body["refresh_token"] != user.refresh_token
    assert resp.headers["Cache-Control"] == "no-store"
    row = await db.fetchrow("SELECT name, user_agent, host(ip) AS ip FROM device_sessions WHERE id = $1::uuid", body["device_id"])
    assert dict(row) == {"name": "Edit Suite 3", "user_agent": "Premiere Pro CEP/12", "ip": "127.0.0.1"}


async def test_login_with_a_wrong_password_or_unknown_email_gets_the_same_401(client):
    user = await sign_up(client)
    wrong = await client.post("/v1/auth/login", json={"email": user.email, "password": "wrong password!", "device_name": "A"})
    unknown = await client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong password!", "device_name": "A"})
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()
    assert (await wrong.json())["error"]["code"] == "invalid_credentials"


async def test_login_requires_a_device_name(client):
    user = await sign_up(client)
    resp = await client.post("/v1/auth/login", json={"email": user.email, "password": user.password, "device_name": "   "})
    assert resp.status == 422
    assert [f["field"] for f in (await resp.json())["error"]["details"]["fields"]] == ["device_name"]


async def test_refresh_returns_a_new_pair_and_spends_the_old_refresh_token(client, db):
    user = await sign_up(client)
    resp = await refresh(client, user.refresh_token, **{"User-Agent": "Panel/2"})
    assert resp.status == 200
    body = await resp.json()
    assert body["refresh_token"] != user.refresh_token
    assert body["access_token"] != user.access_token
    assert body["device_id"] == str(user.device_id)
    assert resp.headers["Cache-Control"] == "no-store"
    new_headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/v1/devices", headers=new_headers)).status == 200

    # Only digests are stored; the spent one is marked used.
    stored = {bytes(r["token_hash"]): r["used_at"] for r in await db.fetch("SELECT token_hash, used_at FROM refresh_tokens")}
    assert stored.keys() == {hash_refresh_token(user.refresh_token), hash_refresh_token(body["refresh_token"])}
    assert stored[hash_refresh_token(user.refresh_token)] is not None
    assert stored[hash_refresh_token(body["refresh_token"])] is None
    assert await db.fetchval("SELECT user_agent FROM device_sessions WHERE id = $1", user.device_id) == "Panel/2"

    again = await refresh(client, body["refresh_token"])
    assert again.status == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_device_session(client, db):
    user = await sign_up(client)
    other_device = await sign_in(client, user.email, device_name="Other machine")
    rotated = await (await refresh(client, user.refresh_token)).json()

    stolen = await refresh(client, user.refresh_token)  # the old token, replayed by a thief
    assert stolen.status == 401
    assert await error_code(stolen) == "refresh_token_reused"

    # The legitimate holder's newer tokens die with the session...
    after = await refresh(client, rotated["refresh_token"])
    assert after.status == 401 and await error_code(after) == "session_revoked"
    resp = await client.get("/v1/devices", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert resp.status == 401 and await error_code(resp) == "session_revoked"
    assert await db.fetchval("SELECT revoked_reason FROM device_sessions WHERE id = $1", user.device_id) == "reuse"
    # ...while the account's other devices carry on.
    assert (await client.get("/v1/devices", headers=other_device.headers)).status == 200


async def test_concurrent_refreshes_with_one_token_never_both_succeed(client, db, settings):
    """Rotation is a conditional update: of racing refreshes exactly one wins, and the loser counts as reuse."""
    user = await sign_up(client)
    results = await asyncio.gather(
        *(service.refresh(db, settings, user.refresh_token) for _ in range(8)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, service.IssuedTokens)]
    losers = [r for r in results if not isinstance(r, service.IssuedTokens)]
    assert len(winners) == 1
    assert all(isinstance(e, service.RefreshTokenReused) for e in losers), losers
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE session_id = $1", user.device_id) == 2
    assert await db.fetchval("SELECT revoked_reason FROM device_sessions WHERE id = $1", user.device_id) == "reuse"


async def test_unknown_and_expired_refresh_tokens_are_401_without_revoking_anything(client, db):
    user = await sign_up(client)
    resp = await refresh(client, "not-a-real-token")
    assert resp.status == 401 and await error_code(resp) == "invalid_token"

    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    resp = await refresh(client, user.refresh_token)
    assert resp.status == 401 and await error_code(resp) == "invalid_token"
    assert await db.fetchval("SELECT revoked_at FROM device_sessions WHERE id = $1", user.device_id) is None


async def test_logout_with_the_refresh_token_ends_that_device_session(client):
    user = await sign_up(client)
    resp = await client.post("/v1/auth/logout", json={"refresh_token": user.refresh_token})
    assert resp.status == 204
    assert (await client.get("/v1/devices", headers=user.headers)).status == 401
    assert (await refresh(client, user.refresh_token)).status == 401
    again = await client.post("/v1/auth/logout", json={"refresh_token": user.refresh_token})
    assert again.status == 204, "signing out twice is not an error"


async def test_logout_with_only_the_access_token_ends_the_current_device(client, db):
    user = await sign_up(client)
    other = await sign_in(client, user.email, device_name="Second")
    resp = await client.post("/v1/auth/logout", json={}, headers=user.headers)
    assert resp.status == 204
    assert await db.fetchval("SELECT revoked_reason FROM device_sessions WHERE id = $1", user.device_id) == "logout"
    assert (await client.get("/v1/devices", headers=other.headers)).status == 200
    anonymous = await client.post("/v1/auth/logout", json={})
    assert anonymous.status == 401


async def test_devices_lists_the_accounts_live_sessions_newest_use_first(client):
    user = await sign_up(client, device_name="Laptop")
    desk = await sign_in(client, user.email, device_name="Desk")
    gone = await sign_in(client, user.email, device_name="Old tower")
    await client.post("/v1/auth/logout", json={"refresh_token": gone.refresh_token})
    stranger = await sign_up(client, device_name="Not mine")

    resp = await client.get("/v1/devices", headers=desk.headers)
    assert resp.status == 200
    devices = (await resp.json())["devices"]
    assert [d["name"] for d in devices] == ["Desk", "Laptop"]
    assert [d["current"] for d in devices] == [True, False]
    assert {d["id"] for d in devices} == {str(desk.device_id), str(user.device_id)}
    assert str(stranger.device_id) not in {d["id"] for d in devices}
    assert set(devices[0]) == {"id", "name", "user_agent", "ip", "created_at", "last_used_at", "expires_at", "current"}


async def test_deleting_a_device_signs_it_out_everywhere(client):
    user = await sign_up(client, device_name="Laptop")
    desk = await sign_in(client, user.email, device_name="Desk")
    resp = await client.delete(f"/v1/devices/{user.device_id}", headers=desk.headers)
    assert resp.status == 204
    assert (await client.get("/v1/devices", headers=user.headers)).status == 401
    assert (await refresh(client, user.refresh_token)).status == 401
    listed = await (await client.get("/v1/devices", headers=desk.headers)).json()
    assert [d["name"] for d in listed["devices"]] == ["Desk"]
    again = await client.delete(f"/v1/devices/{user.device_id}", headers=desk.headers)
    assert again.status == 204


async def test_another_accounts_device_or_a_bad_id_is_404(client):
    alice = await sign_up(client)
    bob = await sign_up(client)
    for device_id in (bob.device_id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        resp = await client.delete(f"/v1/devices/{device_id}", headers=alice.headers)
        assert resp.status == 404, device_id
        assert await error_code(resp) == "not_found"
    assert (await client.get("/v1/devices", headers=bob.headers)).status == 200


async def test_changing_the_password_signs_every_device_out(client, db, settings):
    user = await sign_up(client)
    await service.set_password(db, settings, user.user_id, "a brand new password")
    assert (await client.get("/v1/devices", headers=user.headers)).status == 401
    assert (await refresh(client, user.refresh_token)).status == 401
    await sign_in(client, user.email, "a brand new password")
    with pytest.raises(service.PolicyViolation):
        await service.set_password(db, settings, user.user_id, user.email)


async def test_expired_refresh_tokens_are_pruned(client, db):
    user = await sign_up(client)
    fresh = await (await refresh(client, user.refresh_token)).json()
    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 day' WHERE used_at IS NOT NULL")
    assert await service.prune_expired_tokens(db) == 1
    assert (await refresh(client, fresh["refresh_token"])).status == 200
