"""Helpers shared by the portal tests: a cookie-keeping client that fills in CSRF tokens.

(Named test_portal_* to sit with the portal's tests; it holds no tests itself.)
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

import aiohttp
import pytest

from helpers import DEFAULT_PASSWORD, make_admin, unique_email
from server.appkeys import DB

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


@dataclass
class PortalUser:
    id: uuid.UUID
    email: str
    password: str


class Portal:
    """One browser: its own cookie jar against the app under test; redirects are not followed."""

    def __init__(self, client) -> None:
        self.app = client.server.app
        self.client = aiohttp.ClientSession(
            base_url=client.make_url("/"), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )

    async def settled(self) -> None:
        """Wait for work the app does after answering (reset mails are sent that way)."""
        from portal.web import BACKGROUND

        while self.app[BACKGROUND]:
            await asyncio.gather(*self.app[BACKGROUND], return_exceptions=True)

    async def get(self, path: str, **kw):
        return await self.client.get(path, allow_redirects=False, **kw)

    async def page(self, path: str, status: int = 200) -> str:
        resp = await self.get(path)
        text = await resp.text()
        assert resp.status == status, (path, resp.status, text[:2000])
        return text

    async def csrf(self) -> str:
        # Every signed-in page carries the sign-out form; the sign-in page carries one for visitors.
        resp = await self.client.get("/account", allow_redirects=True)
        return csrf_in(await resp.text())

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True):
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = await self.csrf()
        return await self.client.post(path, data=form, allow_redirects=False)

    async def sign_up(self, email: str | None = None, password: str = DEFAULT_PASSWORD, plan: str = "") -> PortalUser:
        """Signs up and follows the mailed confirmation link in this browser, which signs it in."""
        email = email or unique_email("portal")
        resp = await self.post("/signup", {"email": email, "password": password, "password_confirm": password, "plan": plan})
        assert (resp.status, resp.headers.get("Location")) == (303, "/signup/check-inbox"), await resp.text()
        resp = await self.get(await self.mailed_link(email, "/verify-email"))
        assert resp.status == 303, await resp.text()
        return PortalUser(id=await self.user_id(email), email=email, password=password)

    async def mailed_link(self, email: str, path: str) -> str:
        """The local part (path and query) of the newest link to `path` mailed to `email`."""
        body = await self.app[DB].fetchval(
            "SELECT body FROM mail_outbox WHERE to_address = $1 ORDER BY id DESC LIMIT 1", email.lower())
        match = re.search(r"https?://[^/\s]+(" + re.escape(path) + r"\S*)", body or "")
        assert match, f"no {path} link mailed to {email}: {body!r}"
        return match.group(1)

    async def user_id(self, email: str) -> uuid.UUID:
        return await self.app[DB].fetchval("SELECT id FROM users WHERE email = $1", email.lower())

    async def sign_in(self, email: str, password: str = DEFAULT_PASSWORD):
        return await self.post("/signin", {"email": email, "password": password})

    async def sign_out(self):
        return await self.post("/signout")


@pytest.fixture
async def browser_factory(client):
    """`await new_portal()` gives a fresh browser; all are closed after the test."""
    made: list[Portal] = []

    async def new_portal() -> Portal:
        portal = Portal(client)
        made.append(portal)
        return portal

    yield new_portal
    for portal in made:
        await portal.client.close()


@pytest.fixture
async def visitor(browser_factory) -> Portal:
    return await browser_factory()


@pytest.fixture
async def customer(browser_factory) -> tuple[Portal, PortalUser]:
    portal = await browser_factory()
    return portal, await portal.sign_up()


@pytest.fixture
async def admin(browser_factory, db) -> tuple[Portal, PortalUser]:
    portal = await browser_factory()
    user = await portal.sign_up()
    await make_admin(db, user.id)
    return portal, user
