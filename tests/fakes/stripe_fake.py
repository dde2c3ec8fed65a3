"""Test glue for the local Stripe in server/simulator/stripe.py: fixtures and checkout helpers."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from server.simulator.stripe import DAY, FakeStripe, make_event, running_fake_stripe  # noqa: F401 (re-exported)


@pytest.fixture
async def fake_stripe(test_env: dict[str, str]) -> AsyncIterator[FakeStripe]:
    """A running FakeStripe that accepts the test deployment's key and signs with its webhook secret.

    Point the app at it with `settings.replace(stripe_api_base=fake_stripe.base_url)` and set
    `fake_stripe.webhook_url` to the app's /webhooks/stripe.
    """
    from server.settings import Settings

    async with running_fake_stripe(
        api_key=test_env["STRIPE_SECRET_KEY"],
        webhook_secret=test_env["STRIPE_WEBHOOK_SECRET"],
        price_ids=Settings.from_env(test_env).price_ids,
    ) as fake:
        yield fake


def session_id_of(checkout_url: str) -> str:
    """The Checkout Session id at the end of a hosted Checkout (or portal) URL."""
    return checkout_url.rstrip("/").rsplit("/", 1)[1]


async def checkout_and_pay(service, fake: FakeStripe, user, plan: str = "pro", *, days_ago: int = 0) -> dict:
    """Subscribe `user` through the BillingService and pay on the fake Checkout; returns the
    subscription. `days_ago` backdates the start on Stripe's clock (for renewal tests)."""
    url = await service.checkout_subscription(user, plan)
    fake.clock_offset = -days_ago * DAY
    try:
        await fake.complete_checkout(session_id_of(url))
    finally:
        fake.clock_offset = 0
    session = fake.get("checkout.session", session_id_of(url))
    return fake.get("subscription", session["subscription"])
