"""Access tokens: what authenticate() accepts and what it refuses, with the codes the panel relies on."""

import base64
import json
import secrets
import time
import uuid

import jwt
import pytest

from helpers import make_admin, sign_up
from server.app import create_app
from server.auth import service, tokens
from server.auth.service import CurrentUser
from server.web.api import ApiRoutes, json_response


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(settings, user, **overrides):
    now = int(time.time())
    claims = {
        "sub": str(user.user_id), "sid": str(user.device_id), "jti": uuid.uuid4().hex, "iat": now,
        "exp": now + 600, "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def signed(settings, claims, *, kid="k1", key=None, algorithm="HS256"):
    return jwt.encode(claims, key or settings.jwt_keys[kid], algorithm=algorithm, headers={"kid": kid})


async def get_devices(client, token):
    return await client.get("/v1/devices", headers={"Authorization": f"Bearer {token}"})


async def assert_401(resp, code):
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == code, body
    return body


async def test_a_fresh_access_token_is_accepted(client, settings):
    user = await sign_up(client)
    header = jwt.get_unverified_header(user.access_token)
    assert header == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(user.access_token, settings.jwt_keys["k1"], algorithms=["HS256"], audience=settings.jwt_audience)
    assert set(claims) == {"sub", "sid", "jti", "iat", "exp", "iss", "aud"}
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl
    assert claims["sub"] == str(user.user_id) and claims["sid"] == str(user.device_id)
    resp = await get_devices(client, user.access_token)
    assert resp.status == 200


async def test_requests_without_a_bearer_token_are_401_unauthorized(client):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        resp = await client.get("/v1/devices", headers=headers)
        await assert_401(resp, "unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_expired_token_is_401_token_expired(client, settings):
    user = await sign_up(client)
    past = time.time() - 3600
    expired = tokens.issue_access_token(settings, user.user_id, user.device_id, now=past)
    await assert_401(await get_devices(client, expired), "token_expired")


async def test_a_token_signed_with_another_secret_is_401_invalid_token(client, settings):
    user = await sign_up(client)
    forged = signed(settings, claims_for(settings, user), key=secrets.token_urlsafe(32))
    await assert_401(await get_devices(client, forged), "invalid_token")


async def test_a_tampered_payload_is_401_invalid_token(client, settings):
    victim = await sign_up(client)
    attacker = await sign_up(client)
    header, _, signature = attacker.access_token.split(".")
    tampered = ".".join([header, b64(claims_for(settings, victim)), signature])
    await assert_401(await get_devices(client, tampered), "invalid_token")


@pytest.mark.parametrize("header", [
    "", "!!!!", "é", "bm90IGpzb24", "W10", "eyJ", b64({"alg": "HS256"})[:-3] + "*",  # not base64 / not JSON / a list
])
async def test_garbage_where_the_header_belongs_is_401_invalid_token(client, settings, header):
    user = await sign_up(client)
    _, payload, signature = user.access_token.split(".")
    await assert_401(await get_devices(client, f"{header}.{payload}.{signature}"), "invalid_token")


async def test_a_valid_header_on_a_garbled_payload_is_401_invalid_token(client, settings):
    user = await sign_up(client)
    header, payload, signature = user.access_token.split(".")
    await assert_401(await get_devices(client, f"{header}.{payload[:-2]}@@.{signature}"), "invalid_token")


async def test_an_alg_none_token_is_401_invalid_token(client, settings):
    user = await sign_up(client)
    claims = claims_for(settings, user)
    for alg in ("none", "None", "NONE"):
        unsigned = f"{b64({'alg': alg, 'kid': 'k1', 'typ': 'JWT'})}.{b64(claims)}."
        await assert_401(await get_devices(client, unsigned), "invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 wants a longer key; irrelevant here
async def test_a_token_with_another_algorithm_is_refused_even_with_the_right_secret(client, settings):
    user = await sign_up(client)
    other = signed(settings, claims_for(settings, user), algorithm="HS512")
    await assert_401(await get_devices(client, other), "invalid_token")


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "another-issuer"},
        {"sid": None},
        {"jti": None},
        {"exp": None},
        {"sub": "not-a-uuid"},
        {"iat": int(time.time()) + 3600},
    ],
    ids=["wrong-audience", "wrong-issuer", "no-session", "no-jti", "no-exp", "bad-subject", "issued-in-future"],
)
async def test_tokens_with_wrong_or_missing_claims_are_401_invalid_token(client, settings, overrides):
    user = await sign_up(client)
    token = signed(settings, claims_for(settings, user, **overrides))
    await assert_401(await get_devices(client, token), "invalid_token")


async def test_an_unknown_or_missing_kid_is_401_invalid_token(client, settings):
    user = await sign_up(client)
    claims = claims_for(settings, user)
    unknown = jwt.encode(claims, settings.jwt_keys["k1"], algorithm="HS256", headers={"kid": "k9"})
    no_kid = jwt.encode(claims, settings.jwt_keys["k1"], algorithm="HS256")
    for token in (unknown, no_kid, "not.a.jwt", "garbage"):
        await assert_401(await get_devices(client, token), "invalid_token")


async def test_kid_rotation_old_tokens_verify_until_the_old_kid_is_removed(aiohttp_client, settings):
    old_secret = settings.jwt_keys["k1"]
    new_secret = secrets.token_urlsafe(32)
    before = await aiohttp_client(create_app(settings))
    user = await sign_up(before)
    old_token = user.access_token
    assert jwt.get_unverified_header(old_token)["kid"] == "k1"

    both = settings.replace(jwt_secrets=f"k1={old_secret},k2={new_secret}", jwt_active_kid="k2")
    rotated = await aiohttp_client(create_app(both))
    assert (await get_devices(rotated, old_token)).status == 200
    new_token = tokens.issue_access_token(both, user.user_id, user.device_id)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert (await get_devices(rotated, new_token)).status == 200

    only_new = settings.replace(jwt_secrets=f"k2={new_secret}", jwt_active_kid="k2")
    retired = await aiohttp_client(create_app(only_new))
    await assert_401(await get_devices(retired, old_token), "invalid_token")
    assert (await get_devices(retired, new_token)).status == 200


async def test_a_suspended_user_is_refused_with_a_still_valid_token(client, db, settings):
    user = await sign_up(client)
    await service.set_status(db, user.user_id, "suspended")
    await assert_401(await get_devices(client, user.access_token), "account_suspended")
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    await assert_401(resp, "account_suspended")
    resp = await client.post("/v1/auth/login", json={"email": user.email, "password": user.password, "device_name": "X"})
    await assert_401(resp, "account_suspended")

    await service.set_status(db, user.user_id, "active")
    assert (await get_devices(client, user.access_token)).status == 200
    resp = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert resp.status == 200, "suspension must not burn the refresh token"


async def test_a_deleted_account_is_refused(client, db):
    user = await sign_up(client)
    await db.execute("UPDATE users SET status = 'deleted' WHERE id = $1", user.user_id)
    await assert_401(await get_devices(client, user.access_token), "invalid_token")
    resp = await client.post("/v1/auth/login", json={"email": user.email, "password": user.password, "device_name": "X"})
    await assert_401(resp, "invalid_credentials")


async def test_a_token_of_a_revoked_device_session_is_refused(client, db):
    user = await sign_up(client)
    await db.execute("UPDATE device_sessions SET revoked_at = now(), revoked_reason = 'admin' WHERE id = $1", user.device_id)
    await assert_401(await get_devices(client, user.access_token), "session_revoked")


async def test_a_token_already_verified_is_still_refused_once_its_device_is_revoked(client, db):
    """The process remembers a verified signature, never the answer to "is this session still signed in"."""
    user = await sign_up(client)
    assert (await get_devices(client, user.access_token)).status == 200  # verified and remembered
    await db.execute("UPDATE device_sessions SET revoked_at = now(), revoked_reason = 'admin' WHERE id = $1", user.device_id)
    await assert_401(await get_devices(client, user.access_token), "session_revoked")


def test_remembered_claims_are_verified_again_once_their_token_expires(settings, monkeypatch):
    verified = tokens.VerifiedTokens(settings)
    token = tokens.issue_access_token(settings, uuid.uuid4(), uuid.uuid4())
    checks = []
    real_decode = tokens.decode_access_token
    monkeypatch.setattr(tokens, "decode_access_token", lambda *a: checks.append(a) or real_decode(*a))
    verified.decode(token)
    verified.decode(token)
    assert len(checks) == 1  # the second answer came from memory
    # Past `exp` the memory no longer answers: the token goes through full verification again.
    later = time.time() + settings.access_token_ttl + 1
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    verified.decode(token)
    assert len(checks) == 2


def test_the_remembered_tokens_are_bounded_and_bad_tokens_are_not_kept(settings):
    verified = tokens.VerifiedTokens(settings, max_entries=2)
    issued = [tokens.issue_access_token(settings, uuid.uuid4(), uuid.uuid4()) for _ in range(3)]
    for token in issued:
        verified.decode(token)
    assert list(verified._claims) == issued[1:]
    with pytest.raises(tokens.InvalidToken):
        verified.decode(issued[0][:-2] + "xx")
    assert list(verified._claims) == issued[1:]


async def test_a_token_naming_another_users_session_is_refused(client, settings):
    alice = await sign_up(client)
    mallory = await sign_up(client)
    mixed = tokens.issue_access_token(settings, alice.user_id, mallory.device_id)
    await assert_401(await get_devices(client, mixed), "session_revoked")


def app_with_probe(settings):
    """An app with two extra routes that show what other domains get from authenticate/require_admin."""
    app = create_app(settings)
    probe = ApiRoutes("test")

    @probe.get("/v1/_probe/whoami", summary="who am I")
    async def whoami(request):
        first = await service.authenticate(request)
        second = await service.authenticate(request)
        assert first is second  # cached on the request
        return json_response({"id": str(first.id), "role": first.role, "session_id": str(first.session_id)})

    @probe.get("/v1/_probe/admin", summary="admins only")
    async def admin_only(request):
        user = await service.require_admin(request)
        return json_response({"id": str(user.id)})

    probe.register(app)
    return app


async def test_require_admin_is_403_for_users_and_lets_admins_through(aiohttp_client, settings, db):
    client = await aiohttp_client(app_with_probe(settings))
    user = await sign_up(client)
    who = await client.get("/v1/_probe/whoami", headers=user.headers)
    assert await who.json() == {"id": str(user.user_id), "role": "user", "session_id": str(user.device_id)}

    resp = await client.get("/v1/_probe/admin", headers=user.headers)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "admin_only"

    await make_admin(db, user.user_id)
    resp = await client.get("/v1/_probe/admin", headers=user.headers)
    assert resp.status == 200
    await assert_401(await client.get("/v1/_probe/admin"), "unauthorized")


async def test_user_for_claims_gives_other_domains_a_current_user(client, db, settings):
    user = await sign_up(client)
    claims = tokens.decode_access_token(settings, user.access_token)
    current = await service.user_for_claims(db, claims)
    assert current == CurrentUser(user.user_id, user.email, "user", "active", user.device_id)
