"""HTTP: the price list for everyone, and the signed-in user's plan and credits."""

from __future__ import annotations

import uuid
from datetime import datetime

import pydantic
from aiohttp import web

from server.appkeys import DB, SETTINGS
from server.auth.service import authenticate, get_account
from server.credits import service
from server.credits.models import CreditSummary, Plan
from server.credits.pricing import PricingRule
from server.settings import Settings
from server.web.api import ApiRoutes, json_response
from server.web.errors import Unauthorized

api = ApiRoutes("credits")


class PlanFeaturesInfo(pydantic.BaseModel):
    voice: bool = pydantic.Field(description="Voice-over generation allowed")
    max_sfx_seconds: int
    max_variations: int
    max_voice_chars: int
    retention_days: int = pydantic.Field(description="Days generated audio stays downloadable")
    formats: list[str]
    assist: list[str] = pydantic.Field(description="Prompt assistance features offered: sfx_prompt, spot, voice_script")


class PlanInfo(pydantic.BaseModel):
    code: str
    name: str
    price_cents: int = pydantic.Field(description="Monthly price in cents")
    currency: str
    monthly_credits: int | None = pydantic.Field(description="Credits granted per period; null when unlimited")
    unlimited: bool
    renews: str = pydantic.Field(description="calendar_month (free) or billing_period (paid)")
    requests_per_minute: int
    requests_per_hour: int
    features: PlanFeaturesInfo

    @classmethod
    def of(cls, plan: Plan) -> "PlanInfo":
        f = plan.features
        return cls(
            code=plan.code,
            name=plan.name,
            price_cents=plan.price_cents,
            currency=plan.currency,
            monthly_credits=plan.monthly_credits,
            unlimited=plan.unlimited,
            renews="calendar_month" if plan.calendar_periods else "billing_period",
            requests_per_minute=plan.requests_per_minute,
            requests_per_hour=plan.requests_per_hour,
            features=PlanFeaturesInfo(
                voice=f.voice,
                max_sfx_seconds=f.max_sfx_seconds,
                max_variations=f.max_variations,
                max_voice_chars=f.max_voice_chars,
                retention_days=f.retention_days,
                formats=list(f.formats),
                assist=list(f.assist),
            ),
        )


class PricingRuleInfo(pydantic.BaseModel):
    code: str = pydantic.Field(description="sfx, voice, reuse or assist")
    description: str
    unit: str = pydantic.Field(description="second, character, request or token")
    unit_size: int = pydantic.Field(description="Each started block of this many units costs credits_per_block")
    credits_per_block: int
    per_variation: bool
    minimum_credits: int
    reserve_units: int | None = pydantic.Field(description="Units reserved when the model picks the length")

    @classmethod
    def of(cls, rule: PricingRule) -> "PricingRuleInfo":
        return cls(**{name: getattr(rule, name) for name in cls.model_fields})


class PricingResponse(pydantic.BaseModel):
    plans: list[PlanInfo]
    rules: list[PricingRuleInfo]


class MeUser(pydantic.BaseModel):
    id: uuid.UUID
    email: str
    role: str
    status: str
    created_at: datetime
    email_verified: bool = pydantic.Field(description="False until the mailed link is followed; generation answers "
                                                      "403 email_not_verified until then")


class MeCredits(pydantic.BaseModel):
    allowance: int
    used: int
    reserved: int
    remaining: int | None = pydantic.Field(description="Credits that can be spent now; null when unlimited")
    topup: int = pydantic.Field(description="The part of remaining that does not expire at period end")
    period_start: datetime
    period_end: datetime
    unlimited: bool
    past_due: bool
    used_percent: float | None = pydantic.Field(
        None, description="Share of the period's allowance used, 0-100+; null when unlimited or without an allowance")
    low: bool = pydantic.Field(False, description="Fewer than 20% of the period's credits remain (the panel's low-credit banner)")
    topup_url: str = pydantic.Field("", description="Where to buy a credit pack")
    upgrade_url: str = pydantic.Field("", description="Where to move to a larger plan")

    @classmethod
    def of(cls, s: CreditSummary, settings: Settings | None = None) -> "MeCredits":
        total = (s.remaining or 0) + s.used + s.reserved  # what the dashboard's meter counts from
        return cls(
            used_percent=round(100 * s.used / s.allowance, 1) if s.allowance and not s.unlimited else None,
            low=not s.unlimited and total > 0 and (s.remaining or 0) * 5 < total,
            topup_url=settings.topup_link if settings else "",
            upgrade_url=settings.upgrade_url if settings else "",
            allowance=s.allowance,
            used=s.used,
            reserved=s.reserved,
            remaining=s.remaining,
            topup=s.topup,
            period_start=s.period_start,
            period_end=s.period_end,
            unlimited=s.unlimited,
            past_due=s.past_due_since is not None,
        )


class MeResponse(pydantic.BaseModel):
    user: MeUser
    plan: PlanInfo
    credits: MeCredits


@api.get("/v1/pricing", summary="Plans and pricing rules, as the panel and portal show them", response=PricingResponse,
         auth=False)
async def pricing(request: web.Request) -> web.Response:
    db = request.app[DB]
    plans = await service.plans(db)
    rules = await service.load_pricing(db)
    body = PricingResponse(
        plans=[PlanInfo.of(p) for p in plans],
        rules=[PricingRuleInfo.of(r) for r in sorted(rules.rules.values(), key=lambda r: r.code)],
    )
    return json_response(body, headers={"Cache-Control": "public, max-age=60"})


@api.get("/v1/me", summary="The signed-in user with their plan and credits", response=MeResponse)
async def me(request: web.Request) -> web.Response:
    user = await authenticate(request)
    db = request.app[DB]
    account = await get_account(db, user.id)
    if account is None:
        raise Unauthorized("This account no longer exists")
    credits = await service.summary(db, user.id)
    body = MeResponse(
        user=MeUser(id=account.id, email=account.email, role=account.role, status=account.status,
                    created_at=account.created_at, email_verified=account.email_verified),
        plan=PlanInfo.of(credits.plan),
        credits=MeCredits.of(credits, request.app[SETTINGS]),
    )
    return json_response(body, headers={"Cache-Control": "no-store"})

