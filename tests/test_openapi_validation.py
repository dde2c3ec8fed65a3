"""The OpenAPI document and the validation say the same thing: every constraint the document
declares for a request body or query parameter is enforced, nothing it allows is refused, and a
refusal names the field in its message."""

from __future__ import annotations

import pytest

from openapi_support import boundaries, example, resolve, violations
from server.appkeys import ENDPOINTS
from server.web.api import parse_model
from server.web.errors import ValidationFailed
from server.web.health import openapi_document


def declared_inputs(app):
    """(endpoint, location, model, object schema) for every body and query the document declares."""
    doc = openapi_document(app)
    for ep in app[ENDPOINTS]:
        if ep.body is not None:
            yield ep, "body", ep.body, resolve({"$ref": f"#/components/schemas/{ep.body.__name__}"}, doc), doc
        if ep.query is not None:
            op = doc["paths"][ep.path][ep.method.lower()]
            params = [p for p in op["parameters"] if p["in"] == "query"]
            schema = {"type": "object", "properties": {p["name"]: p["schema"] for p in params},
                      "required": [p["name"] for p in params if p["required"]]}
            yield ep, "query", ep.query, schema, doc


def as_sent(value, location: str):
    """Query strings carry text; bodies carry JSON values."""
    if location == "body" or value is None:
        return value
    return str(value).lower() if isinstance(value, bool) else str(value)


def valid_input(schema, doc, location):
    data = {name: as_sent(example(prop, doc), location) for name, prop in schema["properties"].items()}
    return {k: v for k, v in data.items() if v is not None}


def test_the_document_declares_the_rules_the_issue_found_missing(app):
    doc = openapi_document(app)
    assert "U+0000" in doc["info"]["description"]  # refused everywhere, so said once for all strings
    schemas = doc["components"]["schemas"]
    assert schemas["RegisterRequest"]["properties"]["password"]["minLength"] == 10
    assert schemas["SfxRequest"]["properties"]["prompt"]["pattern"] == r"\S"
    assert schemas["SfxRequest"]["properties"]["reuse"]["type"] == "boolean"


def test_every_declared_constraint_is_enforced_and_every_boundary_accepted(app):
    checked = 0
    for ep, location, model, schema, doc in declared_inputs(app):
        base = valid_input(schema, doc, location)
        parse_model(model, base, location=location)  # the example itself is valid
        for name, prop in schema["properties"].items():
            for constraint, value in violations(prop, doc):
                if location == "query" and (constraint.startswith("type") or value is None):
                    continue  # a query string has no types: everything in it is text
                with pytest.raises(ValidationFailed) as refused:
                    parse_model(model, {**base, name: as_sent(value, location)}, location=location)
                fields = refused.value.details["fields"]
                assert fields[0]["field"].split(".")[0] == name, (ep.path, name, constraint, fields)
                assert refused.value.message.startswith(f"{fields[0]['field']}: "), refused.value.message
                checked += 1
            for constraint, value in boundaries(prop, doc):
                data = {**base, name: as_sent(value, location)}
                if value is None and location == "query":
                    del data[name]
                parse_model(model, data, location=location)  # raises if the documented limit is refused
                checked += 1
        for name in schema.get("required", []):
            with pytest.raises(ValidationFailed):
                parse_model(model, {k: v for k, v in base.items() if k != name}, location=location)
        if resolve(schema, doc).get("additionalProperties") is False:
            with pytest.raises(ValidationFailed):
                parse_model(model, {**base, "not_declared": 1}, location=location)
    assert checked > 80, checked  # every model was walked, not silently skipped


async def test_a_validation_error_names_the_field_and_the_problem_in_its_message(client):
    resp = await client.post("/v1/auth/register", json={"email": "new@example.com", "password": "short"})
    body = await resp.json()
    assert resp.status == 422
    assert body["error"]["message"] == "password: String should have at least 10 characters"
    assert body["error"]["details"]["fields"][0]["field"] == "password"


async def test_reuse_0_is_not_a_boolean(client):
    from helpers import sign_up

    user = await sign_up(client)
    resp = await client.post("/v1/sfx", json={"prompt": "door slam", "reuse": 0}, headers=user.headers)
    body = await resp.json()
    assert resp.status == 422
    assert body["error"]["message"] == "reuse: Input should be a valid boolean"


async def test_a_whitespace_only_prompt_is_called_blank_not_too_short(client):
    from helpers import sign_up

    user = await sign_up(client)
    resp = await client.post("/v1/sfx", json={"prompt": "   \n "}, headers=user.headers)
    body = await resp.json()
    assert resp.status == 422
    assert body["error"]["message"] == "prompt: must contain more than spaces"
    assert body["error"]["details"]["fields"][0]["type"] == "blank"
