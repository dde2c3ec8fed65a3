"""Passwords and tokens never reach the logs or an error response, whatever the sign-in flow does."""

import io
import json
import logging

from helpers import sign_up
from server.web.logs import JsonFormatter


async def test_no_password_or_token_appears_in_logs_or_error_responses(client, caplog):
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    json_handler = logging.StreamHandler(stream)
    json_handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(json_handler)
    error_bodies = []

    async def call(method, path, **kw):
        resp = await getattr(client, method)(path, **kw)
        if resp.status >= 400:
            error_bodies.append(await resp.text())
        return resp

    try:
        user = await sign_up(client, password="first secret passphrase")
        await call("post", "/v1/auth/register", json={"email": "weak@example.com", "password": "weakpass1"})
        await call("post", "/v1/auth/register", json={"email": user.email, "password": "duplicate passphrase"})
        await call("post", "/v1/auth/login", json={"email": user.email, "password": "wrong guess passphrase", "device_name": "X"})
        await call("post", "/v1/auth/login", json={"email": "ghost@example.com", "password": "ghost guess passphrase", "device_name": "X"})
        await call("post", "/v1/auth/login", json={"email": user.email, "password": user.password, "extra": "x"})
        rotated = await (await call("post", "/v1/auth/refresh", json={"refresh_token": user.refresh_token})).json()
        await call("post", "/v1/auth/refresh", json={"refresh_token": user.refresh_token})  # reuse: logged as a warning
        await call("get", "/v1/devices", headers={"Authorization": f"Bearer {rotated['access_token']}"})
        await call("get", "/v1/devices", headers={"Authorization": f"Bearer {user.access_token}x"})
        await call("post", "/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    finally:
        logging.getLogger().removeHandler(json_handler)

    secrets = [
        "first secret passphrase", "weakpass1", "duplicate passphrase", "wrong guess passphrase", "ghost guess passphrase",
        user.access_token, user.refresh_token, rotated["access_token"], rotated["refresh_token"],
    ]
    raw_records = "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
    formatted = stream.getvalue()
    assert "sign-in failed" in raw_records and "refresh token presented again" in raw_records  # the flows did log
    assert len(error_bodies) == 7  # a taken email answers 202 like a new one
    for secret in secrets:
        assert secret not in raw_records, secret  # not even before redaction
        assert secret not in formatted, secret
        for body in error_bodies:
            assert secret not in body, (secret, body)
