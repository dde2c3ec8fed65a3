"""The OpenAPI document describes exactly the /v1 routes the app serves."""

import re

from server.web.api import openapi_path
from server.web.health import openapi_document


def served_v1_routes(app):
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/v1") and route.method != "HEAD":
            routes.add((route.method.lower(), openapi_path(path)))
    return routes


def documented_routes(doc):
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


async def test_document_and_router_agree(client):
    resp = await client.get("/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    assert documented_routes(doc) == served_v1_routes(client.server.app)


def test_every_reference_resolves(app):
    doc = openapi_document(app)
    schemas = doc["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_every_operation_documents_the_error_envelope(app):
    doc = openapi_document(app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path)


async def test_routes_documented_as_authenticated_refuse_anonymous_callers_before_reading_the_body(client):
    """The document's `security` is enforced, not decoration: an anonymous malformed body is a 401, not a 422."""
    doc = await (await client.get("/v1/openapi.json")).json()
    checked = 0
    for path, ops in doc["paths"].items():
        concrete = re.sub(r"\{\w+\}", "00000000-0000-0000-0000-000000000000", path)
        for method, op in ops.items():
            resp = await client.request(method.upper(), concrete, data=b"{broken", headers={"Content-Type": "application/json"})
            if "security" in op:
                checked += 1
                assert resp.status == 401, (method, path, resp.status)
            else:
                assert resp.status != 401, (method, path)
    assert checked >= 10
