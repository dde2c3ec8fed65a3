"""The billing page says what things cost and what was bought: pack prices before checkout, pack
purchases beside the invoices, and the plan's credits apart from top-up credits."""

from __future__ import annotations

import re

from billing_support import billing, fake, settings  # noqa: F401 (fixtures)
from fakes.stripe_fake import checkout_and_pay, fake_stripe, session_id_of  # noqa: F401 (fixture)
from server.auth.service import CurrentUser
from server.billing import BILLING
from test_portal_support import browser_factory, customer  # noqa: F401 (fixtures)


def as_user(user) -> CurrentUser:
    return CurrentUser(id=user.id, email=user.email, role="user", status="active", session_id=None)


def row_of(page: str, test_id: str) -> str:
    match = re.search(rf'data-testid="{test_id}"[^>]*>(.*?)</(dd|span)>', page, re.S)
    assert match, test_id
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


async def test_a_credit_pack_shows_its_stripe_price_before_checkout(customer, fake, client):
    portal, _ = customer
    page = await portal.page("/billing")
    assert row_of(page, "pack-price") == "$5.00", "the local Stripe prices pack_500 at one cent per credit"
    assert "Buy 500 credits for $5.00" in page

    # Stripe refusing us (and nothing cached): the page still renders and says where the price is shown.
    client.server.app[BILLING]._pack_prices = None
    fake.api_key = "sk_test_not_the_key"
    page = await portal.page("/billing")
    assert row_of(page, "pack-price") == "price shown at checkout"


async def test_a_pack_purchase_is_listed_with_the_invoices_and_its_credits_apart_from_the_plans(customer, fake, client):
    portal, user = customer
    await checkout_and_pay(billing(client), fake, as_user(user), "pro")
    url = await billing(client).checkout_top_up(as_user(user), "pack_500")
    await fake.complete_checkout(session_id_of(url))

    page = await portal.page("/billing")
    receipts = page.split('data-testid="invoices"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", receipts, re.S)[1:]
    assert len(rows) == 2, "the subscription invoice and the pack purchase"
    pack_row = next(r for r in rows if "Credit pack" in r)
    assert "500 credits" in pack_row and "$5.00" in pack_row and "paid" in pack_row
    assert any("Subscription" in r and "$19.99" in r for r in rows)

    assert row_of(page, "plan-credits") == "2,000 left of this period's 2,000"
    assert row_of(page, "topup-credits").startswith("500")
    assert "remaining of this period" not in page
