"""Values and errors of the credits domain, shared by the service, the handlers and other domains."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.web.errors import Conflict, NotFound, PaymentRequired


@dataclass(frozen=True)
class PlanFeatures:
    voice: bool
    max_sfx_seconds: int
    max_variations: int
    max_voice_chars: int
    retention_days: int
    formats: tuple[str, ...]
    assist: tuple[str, ...] = ()  # prompt assistance features (server/assist)


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    price_cents: int
    currency: str
    monthly_credits: int | None  # None: unlimited
    calendar_periods: bool
    requests_per_minute: int
    requests_per_hour: int
    features: PlanFeatures
    sort_order: int

    @property
    def unlimited(self) -> bool:
        return self.monthly_credits is None

    @classmethod
    def from_row(cls, row: Any) -> "Plan":
        return cls(
            code=row["code"],
            name=row["name"],
            price_cents=row["price_cents"],
            currency=row["currency"],
            monthly_credits=row["monthly_credits"],
            calendar_periods=row["calendar_periods"],
            requests_per_minute=row["requests_per_minute"],
            requests_per_hour=row["requests_per_hour"],
            features=PlanFeatures(
                voice=row["voice"],
                max_sfx_seconds=row["max_sfx_seconds"],
                max_variations=row["max_variations"],
                max_voice_chars=row["max_voice_chars"],
                retention_days=row["retention_days"],
                formats=tuple(row["formats"]),
                assist=tuple(row["assist_features"]),
            ),
            sort_order=row["sort_order"],
        )


@dataclass(frozen=True)
class Hold:
    """Credits set aside for one request until it is captured or released."""

    id: uuid.UUID
    user_id: uuid.UUID
    amount: int
    key: str
    status: str = "held"
    expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> "Hold":
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            amount=row["amount"],
            key=row["key"],
            status=row["status"],
            expires_at=row["expires_at"],
        )


@dataclass(frozen=True)
class CreditSummary:
    plan: Plan
    allowance: int
    used: int
    reserved: int
    remaining: int | None  # spendable credits; None on unlimited plans
    topup: int  # the part of remaining that does not expire at period end
    period_start: datetime
    period_end: datetime
    unlimited: bool
    past_due_since: datetime | None


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    kind: str
    amount: int
    credits: int
    balance_after: int
    hold_id: uuid.UUID | None
    idempotency_key: str
    reason: str | None
    actor: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> "LedgerEntry":
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class InsufficientCredits(PaymentRequired):
    code = "insufficient_credits"

    def __init__(self, *, needed: int, remaining: int, upgrade_url: str) -> None:
        super().__init__(
            f"This needs {needed} credit(s) and {remaining} remain",
            details={"needed": needed, "remaining": remaining, "upgrade_url": upgrade_url},
        )


class PaymentPastDue(PaymentRequired):
    code = "payment_past_due"

    def __init__(self, *, past_due_since: datetime, upgrade_url: str) -> None:
        super().__init__(
            "The last payment failed and the grace period is over; update the payment method to continue",
            details={"past_due_since": past_due_since.isoformat(), "upgrade_url": upgrade_url},
        )


class HoldNotFound(NotFound):
    code = "hold_not_found"


class HoldClosed(Conflict):
    """A capture arrived for a hold that was already released (by the caller or the sweep)."""

    code = "hold_closed"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
