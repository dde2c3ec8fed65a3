"""POST /webhooks/stripe: verify the signature on the raw body, then hand the event to the processor.

Not under /v1 (Stripe, not the panel, calls it), but errors are still the JSON envelope. The
response never echoes the payload, the signature or the secret.
"""

from __future__ import annotations

import json
import logging

import stripe
from aiohttp import web

from server.appkeys import METRICS, SETTINGS
from server.billing import WEBHOOKS
from server.web.api import json_response
from server.web.errors import BadRequest, PayloadTooLarge

log = logging.getLogger("server.billing.webhooks")

# Stripe's largest events (invoices with many lines) stay well under this.
MAX_WEBHOOK_BYTES = 1024 * 1024

routes = web.RouteTableDef()


@routes.post("/webhooks/stripe")
async def stripe_webhook(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge("Webhook bodies are limited to 1 MiB")
    raw = await request.read()
    try:
        event = verified_event(raw, request.headers.get("Stripe-Signature"), request.app[SETTINGS].stripe_webhook_secret)
    except BadRequest as err:
        metrics.webhooks.labels("unverified", err.code).inc()
        log.warning("webhook rejected", extra={"reason": err.code})
        raise
    try:
        outcome = await request.app[WEBHOOKS].process(event)
    except Exception:
        metrics.webhooks.labels(event["type"], "error").inc()
        log.exception("webhook failed; Stripe will retry", extra={"event_id": event["id"], "event_type": event["type"]})
        raise
    metrics.webhooks.labels(event["type"], outcome).inc()
    log.info("webhook", extra={"event_id": event["id"], "event_type": event["type"], "outcome": outcome})
    return json_response({"received": True, "outcome": outcome})


def verified_event(raw: bytes, signature: str | None, secret: str) -> dict:
    """The event as a plain dict, or BadRequest: invalid_signature, signature_expired or invalid_payload."""
    try:
        stripe.Webhook.construct_event(raw, signature, secret)
    except stripe.SignatureVerificationError:
        if _signed_but_old(raw, signature, secret):
            raise BadRequest("The signature timestamp is too old; replayed events are refused",
                             code="signature_expired") from None
        raise BadRequest("The Stripe-Signature header does not match this body", code="invalid_signature") from None
    except Exception:
        # The signature checked out (it is verified first), so what failed is reading the body:
        # not UTF-8, not JSON, or JSON that is not an event object.
        raise BadRequest("The body is not a JSON event", code="invalid_payload") from None
    # The SDK has parsed it already; a plain dict keeps the domain code free of SDK types.
    event = json.loads(raw)
    if not isinstance(event, dict) or not {"id", "type", "created", "data"} <= event.keys():
        raise BadRequest("The body is not a Stripe event", code="invalid_payload")
    return event


def _signed_but_old(raw: bytes, signature: str | None, secret: str) -> bool:
    try:
        return stripe.WebhookSignature.verify_header(raw, signature, secret, tolerance=None)
    except (stripe.SignatureVerificationError, ValueError):
        return False
