"""Input no field may hold is refused at the edge, for every route: a NUL character anywhere
(Postgres cannot store it, so it used to surface as a 500), and form bodies that cannot be read."""

from __future__ import annotations

import re
import uuid

from helpers import sign_up
from openapi_support import example, resolve
from server.appkeys import ENDPOINTS
from server.web.health import openapi_document
from test_portal_support import admin, browser_factory, customer, visitor  # noqa: F401 (fixtures)

NUL = "\x00"


def concrete(path: str) -> str:
    return re.sub(r"\{\w+(:[^}]+)?\}", str(uuid.uuid4()), path)


async def test_a_nul_in_any_string_of_any_api_body_is_422_naming_the_field(client):
    user = await sign_up(client)
    app = client.server.app
    doc = openapi_document(app)
    checked = 0
    for ep in app[ENDPOINTS]:
        if ep.body is None:
            continue
        schema = resolve({"$ref": f"#/components/schemas/{ep.body.__name__}"}, doc)
        valid = example(schema, doc)
        for name, value in valid.items():
            if not isinstance(value, str):
                continue
            resp = await client.request(ep.method, concrete(ep.path), json={**valid, name: value[:2] + NUL + value[2:]},
                                        headers=user.headers)
            body = await resp.json()
            assert resp.status == 422, (ep.path, name, resp.status, body)
            assert body["error"]["code"] == "validation_failed"
            assert body["error"]["details"]["fields"][0] == {
                "field": name, "location": "body", "type": "nul_character",
                "message": "must not contain the NUL character (U+0000)",
            }
            assert body["error"]["message"].startswith(f"{name}: must not contain the NUL character")
            checked += 1
    assert checked >= 8, checked


async def test_a_nul_in_the_query_string_or_path_of_any_api_route_is_422(client):
    user = await sign_up(client)
    for ep in client.server.app[ENDPOINTS]:
        for url in (concrete(ep.path) + "?q=%00", concrete(ep.path) + "?a%00=1"):
            resp = await client.request(ep.method, url, headers=user.headers,
                                        json={} if ep.body is not None else None)
            body = await resp.json()
            assert resp.status == 422, (ep.method, url, resp.status, body)
            assert body["error"]["details"]["fields"][0]["location"] == "query"
    resp = await client.delete("/v1/devices/%00", headers=user.headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["fields"][0] == {
        "field": "device_id", "location": "path", "type": "nul_character",
        "message": "must not contain the NUL character (U+0000)",
    }


async def test_signing_in_with_a_nul_in_the_email_is_a_422_not_a_500(client):
    resp = await client.post("/v1/auth/login", json={"email": "a\x00@example.com", "password": "whatever it is",
                                                     "device_name": "Suite"})
    assert resp.status == 422
    assert (await resp.json())["error"]["message"] == "email: must not contain the NUL character (U+0000)"


def portal_routes(app, method: str) -> list[str]:
    found = []
    for route in app.router.routes():
        name = route.name or route.resource.name or ""
        if route.method == method and name.startswith("portal.") and name != "portal.static":
            found.append(route.resource.canonical)
    return found


async def test_a_nul_in_any_portal_form_is_refused_before_the_handler(client, admin, visitor):
    """Every form the portal accepts, posted by an admin (who may use them all) and by a visitor
    (whom most of them refuse) with a NUL in a field."""
    posts = portal_routes(client.server.app, "POST")
    assert len(posts) >= 15
    for portal in (admin[0], visitor):
        for path in posts:
            resp = await portal.post(concrete(path), {"email": "x\x00@example.com", "reason": "r\x00", "label": "l"})
            text = await resp.text()
            assert resp.status == 422, (path, resp.status, text[:500])
            assert "must not contain the NUL character" in text, (path, text)
            assert "Traceback" not in text


async def test_the_sign_in_form_shows_the_nul_error_beside_the_email_field(visitor):
    resp = await visitor.post("/signin", {"email": "someone\x00@example.com", "password": "a password"})
    text = await resp.text()
    assert resp.status == 422
    assert re.search(r'id="f-email"[^>]*aria-invalid="true"', text), text
    assert '<div class="error-text" id="f-email-error">must not contain the NUL character</div>' in text
    assert 'aria-invalid="true"' not in re.search(r'<input id="f-password"[^>]*>', text).group(0)


async def test_a_nul_in_any_portal_query_string_is_a_400_page(client, admin):
    portal, user = admin
    gets = portal_routes(client.server.app, "GET")
    assert len(gets) >= 15
    for path in gets:
        path = path.replace("{user_id}", str(user.id))
        for query in ("?q=%00", "?actor=%00&next=/x"):
            resp = await portal.get(concrete(path) + query)
            text = await resp.text()
            assert resp.status == 400, (path, query, resp.status, text[:300])
            assert "must not contain the NUL character" in text
    # The two the probe found first, and a NUL in the path itself.
    for path in ("/admin/users?q=%00", "/admin/audit?actor=%00", "/admin/users/%00", "/audio/a%00b"):
        assert (await portal.get(path)).status == 400, path


async def test_a_form_that_is_not_utf8_or_not_multipart_is_a_400(visitor):
    token = await visitor.csrf()
    bad = [
        (b"csrf_token=" + token.encode() + b"&email=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"garbage", "multipart/form-data; boundary=xyz"),
        (b"--xyz\r\nbroken header\r\n", "multipart/form-data; boundary=xyz"),
        (b"x", "multipart/form-data"),
        (b'--xyz\r\nContent-Disposition: form-data; name="email"\r\n\r\n\xff\r\n--xyz--\r\n', "multipart/form-data; boundary=xyz"),
    ]
    for body, content_type in bad:
        resp = await visitor.client.post("/signin", data=body, headers={"Content-Type": content_type},
                                         allow_redirects=False)
        text = await resp.text()
        assert resp.status == 400, (body, content_type, resp.status, text[:300])
        assert "Bad request" in text
