"""The only place that talks to Stripe: the official SDK, async, pointed at settings.stripe_api_base.

Everything returned is a plain dict (`StripeObject.to_dict()`), the same shape webhook payloads
have, so the domain logic handles both with one set of functions. SDK errors become
`UpstreamError` with a message of our own: Stripe's messages can quote (masked) keys and
request details that do not belong in our responses.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

import stripe

from server.settings import Settings
from server.web.errors import UpstreamError

log = logging.getLogger("server.billing.stripe")

# Generous for Stripe, short enough that a webhook handler holding a row lock does not stall for long.
REQUEST_TIMEOUT = 20.0
PAGE_SIZE = 100


class StripeUnavailable(UpstreamError):
    code = "billing_unavailable"


class StripeGateway:
    def __init__(self, settings: Settings, *, page_size: int = PAGE_SIZE) -> None:
        # The SDK logs response bodies (customer emails) and Stripe's error messages (a masked key)
        # at INFO and DEBUG; whatever logging is configured, those lines stay out.
        sdk_log = logging.getLogger("stripe")
        sdk_log.setLevel(max(sdk_log.getEffectiveLevel(), logging.WARNING))
        self._http = stripe.AIOHTTPClient(timeout=REQUEST_TIMEOUT)
        self._client = stripe.StripeClient(
            api_key=settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=2,
        )
        self.page_size = page_size

    async def close(self) -> None:
        # The SDK only opens its aiohttp session on first use; closing an unused one is harmless.
        await self._http.close_async()

    # --- calls ---------------------------------------------------------------

    async def create_customer(self, *, email: str, user_id: str) -> dict:
        return await self._call("create customer", self._client.v1.customers.create_async(
            {"email": email, "metadata": {"user_id": user_id}},
            # Two clicks on "subscribe" must not make two Stripe customers for one user.
            {"idempotency_key": f"customer-{user_id}"},
        ))

    async def update_customer_email(self, customer_id: str, email: str) -> dict:
        return await self._call("update customer", self._client.v1.customers.update_async(customer_id, {"email": email}))

    async def create_checkout_session(self, params: dict[str, Any]) -> dict:
        return await self._call("create checkout session", self._client.v1.checkout.sessions.create_async(params))

    async def retrieve_checkout_session(self, session_id: str) -> dict:
        return await self._call("retrieve checkout session", self._client.v1.checkout.sessions.retrieve_async(session_id))

    async def create_portal_session(self, params: dict[str, Any]) -> dict:
        return await self._call("create portal session", self._client.v1.billing_portal.sessions.create_async(params))

    async def retrieve_subscription(self, subscription_id: str) -> dict:
        return await self._call("retrieve subscription", self._client.v1.subscriptions.retrieve_async(subscription_id))

    async def cancel_subscription(self, subscription_id: str) -> dict:
        return await self._call("cancel subscription", self._client.v1.subscriptions.cancel_async(subscription_id))

    async def retrieve_invoice(self, invoice_id: str) -> dict:
        return await self._call("retrieve invoice", self._client.v1.invoices.retrieve_async(invoice_id))

    async def retrieve_customer(self, customer_id: str) -> dict:
        return await self._call("retrieve customer", self._client.v1.customers.retrieve_async(customer_id))

    async def retrieve_price(self, price_id: str) -> dict:
        return await self._call("retrieve price", self._client.v1.prices.retrieve_async(price_id))

    def all_subscriptions(self, **filters: Any) -> AsyncIterator[dict]:
        """Every subscription, cancelled ones included, across as many pages as it takes."""
        return self._paginate("list subscriptions", self._client.v1.subscriptions.list_async,
                              {"status": "all", **filters})

    def all_invoices(self, **filters: Any) -> AsyncIterator[dict]:
        return self._paginate("list invoices", self._client.v1.invoices.list_async, filters)

    # --- plumbing -------------------------------------------------------------

    async def _call(self, what: str, pending) -> dict:
        try:
            result = await pending
        except stripe.StripeError as exc:
            raise self._unavailable(what, exc) from None
        return result.to_dict()

    async def _paginate(self, what: str, list_async, params: dict[str, Any]) -> AsyncIterator[dict]:
        try:
            page = await list_async({**params, "limit": self.page_size})
            async for item in page.auto_paging_iter():
                yield item.to_dict()
        except stripe.StripeError as exc:
            raise self._unavailable(what, exc) from None

    @staticmethod
    def _unavailable(what: str, exc: stripe.StripeError) -> StripeUnavailable:
        # Only the class, status and Stripe's error code are logged: never the message or the request.
        log.warning("stripe call failed", extra={"call": what, "error": type(exc).__name__,
                                                  "http_status": exc.http_status, "stripe_code": exc.code})
        return StripeUnavailable("Billing is unavailable right now; try again in a minute",
                                 details={"call": what})
