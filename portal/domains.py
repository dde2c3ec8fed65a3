"""The portal's view of the other domains: one module, so every cross-domain call is easy to find.

Pages only read and display; every change goes through the owning domain's service
(credits, billing, keybank, auth), never through SQL of ours.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from portal import repo
from server.billing import BILLING, BillingService
from server.credits import service as credits
from server.credits.models import CreditSummary, LedgerEntry, Plan
from server.credits.pricing import PricingRule

Db = asyncpg.Pool | asyncpg.Connection


# --- credits -----------------------------------------------------------------------------


async def plans(db: Db) -> list[Plan]:
    return sorted(await credits.plans(db), key=lambda p: (p.sort_order, p.code))


async def pricing_rules(db: Db) -> list[PricingRule]:
    pricing = await credits.load_pricing(db)
    order = {"sfx": 0, "voice": 1, "assist": 2, "reuse": 3}
    return sorted(pricing.rules.values(), key=lambda r: (order.get(r.code, 9), r.code))


async def plan_for(db: Db, user_id: uuid.UUID) -> Plan:
    return await credits.plan_for(db, user_id)


async def credit_summary(db: Db, user_id: uuid.UUID) -> CreditSummary:
    return await credits.summary(db, user_id)


async def credit_summaries(db: Db, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, CreditSummary]:
    return await credits.summaries(db, user_ids)


async def ledger(db: Db, user_id: uuid.UUID, limit: int = 50) -> list[LedgerEntry]:
    """Newest first; credits.history pages by at most 500, so longer reads (exports) page through."""
    entries: list[LedgerEntry] = []
    before = None
    while len(entries) < limit:
        want = min(500, limit - len(entries))
        page = await credits.history(db, user_id, limit=want, before_id=before)
        entries.extend(page)
        if len(page) < want:
            break
        before = page[-1].id
    return entries


async def adjust_credits(db: Db, user_id: uuid.UUID, amount: int, reason: str, actor: str) -> None:
    await credits.adjust(db, user_id, amount, reason, actor)


async def set_plan(db: Db, user_id: uuid.UUID, plan_code: str) -> None:
    await credits.set_plan(db, user_id, plan_code)


# --- billing -------------------------------------------------------------------------------


def billing(app: web.Application) -> BillingService | None:
    """The BillingService, or None where billing is not set up (pages then say so)."""
    return app.get(BILLING)


# --- releases ---------------------------------------------------------------------------------------


def releases(app: web.Application) -> Any:
    """The ReleaseService (publish, rollout, yank, minimum version; reads for the pages)."""
    from server.releases import RELEASES

    return app.get(RELEASES)


async def downloads_by_product(app: web.Application) -> list[dict[str, Any]]:
    """Per product with a live release: the latest stable one and the older live ones, newest first."""
    service = releases(app)
    if service is None:
        return []
    live = [r for r in await service.list() if r.yanked_at is None and r.channel == "stable"]
    products = []
    for product in ("cep", "uxp"):
        mine = sorted((r for r in live if r.product == product), key=lambda r: r.parsed, reverse=True)
        if mine:
            products.append({"product": product, "latest": mine[0], "older": mine[1:]})
    return products


def top_up_packs(app: web.Application) -> list[Any]:
    """Credit packs on sale (billing's catalog of `pack_<credits>` prices), smallest first.
    Their prices live at Stripe and are shown on its Checkout page."""
    billing_service = billing(app)
    if billing_service is None:
        return []
    return sorted(billing_service.catalog.packs.values(), key=lambda p: p.credits)


# --- key bank and audio storage -------------------------------------------------------------------


def keybank(app: web.Application) -> Any:
    from server.keybank import KEYBANK

    return app.get(KEYBANK)


def generation(app: web.Application) -> Any:
    """The GenerationService (deletes audio no one else uses), or None without it."""
    from server.generation import GENERATION

    return app.get(GENERATION)


def provider_names() -> tuple[str, ...]:
    from server.providers import Providers

    return Providers.names()


def audio_storage(app: web.Application) -> Any:
    """The BlobStorage generated audio lives in (stat/stream/delete), or None without it."""
    from server.storage import STORAGE

    return app.get(STORAGE)
