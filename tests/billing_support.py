"""Fixtures the billing test modules share: the app pointed at the local Stripe, which posts
its signed webhooks back to the app, and a plain user to bill."""

from __future__ import annotations

import pytest

from fakes.stripe_fake import fake_stripe  # noqa: F401 (fixture)
from helpers import unique_email
from server.auth.service import CurrentUser, create_user
from server.billing import BILLING


@pytest.fixture
def settings(settings, fake_stripe):
    return settings.replace(stripe_api_base=fake_stripe.base_url)


@pytest.fixture
async def fake(client, fake_stripe):
    fake_stripe.webhook_url = str(client.make_url("/webhooks/stripe"))
    return fake_stripe


async def new_user(db, settings) -> CurrentUser:
    email = unique_email("billing")
    user_id = await create_user(db, settings, email, "correct horse battery")
    return CurrentUser(id=user_id, email=email, role="user", status="active", session_id=None)


def billing(client):
    return client.server.app[BILLING]
