"""Behaviour every /v1 route shares: the error envelope, request ids, body limits, health."""

import json
import logging

import pydantic
import pytest

from server.app import create_app
from server.web.api import ApiModel, ApiRoutes, json_response


class Echo(ApiModel):
    name: str = pydantic.Field(min_length=2, max_length=20)
    count: int = pydantic.Field(ge=1, le=5)


def app_with_echo(settings):
    app = create_app(settings)
    api = ApiRoutes("test")

    @api.post("/v1/echo", summary="echo", body=Echo, auth=False)
    async def echo(request, body: Echo):
        return json_response(body)

    @api.get("/v1/boom", summary="fails", auth=False)
    async def boom(request):
        raise RuntimeError("database password=hunter2hunter2 leaked")

    api.register(app)
    return app


@pytest.fixture
async def echo_client(aiohttp_client, settings):
    return await aiohttp_client(app_with_echo(settings))


def assert_envelope(body, code):
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_valid_json_reaches_the_handler(echo_client):
    resp = await echo_client.post("/v1/echo", json={"name": "door", "count": 2})
    assert resp.status == 200
    assert await resp.json() == {"name": "door", "count": 2}


async def test_invalid_fields_get_422_with_field_details(echo_client):
    resp = await echo_client.post("/v1/echo", json={"name": "x", "count": 9, "extra": 1})
    assert resp.status == 422
    body = await resp.json()
    assert_envelope(body, "validation_failed")
    fields = {f["field"] for f in body["error"]["details"]["fields"]}
    assert fields == {"name", "count", "extra"}


async def test_malformed_json_is_400(echo_client):
    resp = await echo_client.post("/v1/echo", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_json")


async def test_wrong_content_type_is_415(echo_client):
    resp = await echo_client.post("/v1/echo", data="name=door", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415
    assert_envelope(await resp.json(), "unsupported_media_type")


async def test_json_over_the_limit_is_413(echo_client, settings):
    big = json.dumps({"name": "a" * (settings.max_json_bytes + 10), "count": 1})
    resp = await echo_client.post("/v1/echo", data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert_envelope(await resp.json(), "payload_too_large")


async def test_chunked_json_over_the_limit_is_413(echo_client, settings):
    async def gen():
        yield b'{"name": "'
        for _ in range(settings.max_json_bytes // 1000 + 2):
            yield b"a" * 1000
        yield b'", "count": 1}'

    resp = await echo_client.post("/v1/echo", data=gen(), headers={"Content-Type": "application/json"})
    assert resp.status == 413


async def test_unknown_v1_path_is_a_json_404(echo_client):
    resp = await echo_client.get("/v1/nothing-here")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert_envelope(await resp.json(), "not_found")


async def test_wrong_method_is_a_json_405(echo_client):
    resp = await echo_client.delete("/v1/echo")
    assert resp.status == 405
    assert_envelope(await resp.json(), "method_not_allowed")


async def test_unhandled_error_is_a_500_envelope_without_internals(echo_client, caplog):
    caplog.set_level(logging.ERROR)
    resp = await echo_client.get("/v1/boom")
    assert resp.status == 500
    text = await resp.text()
    body = json.loads(text)
    assert_envelope(body, "internal_error")
    assert "Traceback" not in text and "RuntimeError" not in text and "hunter2" not in text
    assert body["error"]["details"]["request_id"] == resp.headers["X-Request-Id"]


async def test_request_id_is_echoed_when_valid_and_generated_otherwise(echo_client):
    resp = await echo_client.get("/healthz", headers={"X-Request-Id": "abc-12345678"})
    assert resp.headers["X-Request-Id"] == "abc-12345678"
    resp = await echo_client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert resp.headers["X-Request-Id"] != "bad id\twith spaces"
    assert len(resp.headers["X-Request-Id"]) == 32
    resp = await echo_client.get("/v1/nothing")
    assert len(resp.headers["X-Request-Id"]) == 32


async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_readyz_is_503_with_retry_after_when_redis_is_down(aiohttp_client, settings):
    app = create_app(settings.replace(redis_url="redis://127.0.0.1:1/0"))
    client = await aiohttp_client(app)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    body = await resp.json()
    assert body["error"]["details"]["checks"]["redis"] == "down"
    assert body["error"]["details"]["checks"]["postgres"] == "ok"


async def test_metrics_count_requests_per_route_and_status(echo_client):
    await echo_client.post("/v1/echo", json={"name": "door", "count": 2})
    await echo_client.get("/v1/nothing-here")
    text = await (await echo_client.get("/metrics")).text()
    assert 'http_requests_total{method="POST",route="/v1/echo",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "http_request_duration_seconds_bucket" in text


async def test_v1_answers_cross_origin_requests_from_the_panel(echo_client):
    """The panel runs from a file:// page inside Premiere: preflights pass and errors stay readable."""
    preflight = await echo_client.options(
        "/v1/echo",
        headers={"Origin": "null", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Idempotency-Key" in preflight.headers["Access-Control-Allow-Headers"]

    error = await echo_client.post("/v1/echo", json={"name": "x", "count": 1}, headers={"Origin": "null"})
    assert error.status == 422
    assert error.headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in error.headers["Access-Control-Expose-Headers"]


async def test_pages_outside_v1_get_no_cors_headers(echo_client):
    resp = await echo_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
