"""Business figures for the people running the service: MRR, subscriptions, churn, revenue,
upstream cost and gross margin, per plan and per month (UTC calendar months).

- MRR: subscriptions running at the moment asked for x their plan's monthly price.
- Churn of a month: subscriptions that ended in it / subscriptions running at its start.
- Revenue of a month: paid subscription invoices plus credit packs (less refunds) bought in it.
- Upstream cost: provider units (characters, tokens) x UPSTREAM_PRICES (dollars per 1,000).
- Gross margin: revenue - upstream cost.
Money is in cents; upstream cost is rounded to the cent per plan and month.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

from server.business import repo

Db = repo.Db
HISTORY_MONTHS = 6


def month_start(d: date) -> datetime:
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc)


def add_months(d: date, n: int) -> date:
    index = d.year * 12 + d.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def parse_month(text: str | None, today: date) -> date:
    """'YYYY-MM' or the current month; never a month after the current one."""
    current = today.replace(day=1)
    try:
        year, month = (int(p) for p in (text or "").split("-"))
        chosen = date(year, month, 1)
    except ValueError:
        return current
    return min(chosen, current) if chosen.year >= 2000 else current


@dataclass
class PlanMonth:
    month: date
    plan: str
    subscription_cents: int = 0
    pack_cents: int = 0
    packs: int = 0
    credits_used: int = 0
    units: dict[str, int] = field(default_factory=dict)  # provider -> units
    cost_cents: int = 0

    @property
    def revenue_cents(self) -> int:
        return self.subscription_cents + self.pack_cents

    @property
    def margin_cents(self) -> int:
        return self.revenue_cents - self.cost_cents

    @property
    def margin_percent(self) -> float | None:
        return round(100 * self.margin_cents / self.revenue_cents, 1) if self.revenue_cents else None

    @property
    def total_units(self) -> int:
        return sum(self.units.values())


@dataclass
class PlanCount:
    plan: str
    subscriptions: int
    mrr_cents: int
    at_start: int = 0
    new: int = 0
    cancelled: int = 0


@dataclass
class Report:
    month: date
    as_of: datetime
    mrr_cents: int
    plans: list[PlanCount]  # subscriptions by plan at as_of, with the month's movements
    at_start: int
    new: int
    cancelled: int
    churn: float | None  # None when nothing was running at the month's start
    by_plan: list[PlanMonth]  # the chosen month
    history: list[PlanMonth]  # one total per month, oldest first, ending with the chosen month
    rows: list[PlanMonth]  # every (month, plan) of the history, for the CSV

    @property
    def total(self) -> PlanMonth:
        return self.history[-1]

    @property
    def pack_revenue_cents(self) -> int:
        return self.total.pack_cents


def cost_cents(units: dict[str, int], prices: dict[str, float]) -> int:
    dollars = sum(Decimal(str(prices.get(p, 0.0))) * n / 1000 for p, n in units.items())
    return int((Decimal(dollars) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def report(db: Db, month: date, prices: dict[str, float], *, now: datetime | None = None) -> Report:
    now = now or datetime.now(timezone.utc)
    start, end = month_start(month), month_start(add_months(month, 1))
    as_of = min(now, end)
    first = month_start(add_months(month, 1 - HISTORY_MONTHS))

    cells: dict[tuple[date, str], PlanMonth] = {}

    def cell(m: date, plan: str) -> PlanMonth:
        return cells.setdefault((m, plan), PlanMonth(m, plan))

    for r in await repo.subscription_revenue(db, first, end):
        cell(r["month"], r["plan"]).subscription_cents += r["cents"]
    for r in await repo.pack_revenue(db, first, end):
        c = cell(r["month"], r["plan"])
        c.pack_cents += r["cents"]
        c.packs += r["packs"]
    for r in await repo.usage(db, first, end):
        c = cell(r["month"], r["plan"])
        c.credits_used += r["credits"]
        c.units[r["provider"]] = c.units.get(r["provider"], 0) + r["units"]
    for c in cells.values():
        c.cost_cents = cost_cents(c.units, prices)

    months = [add_months(first.date(), i) for i in range(HISTORY_MONTHS)]
    history = []
    for m in months:
        total = PlanMonth(m, "all")
        for c in (c for (cm, _), c in cells.items() if cm == m):
            total.subscription_cents += c.subscription_cents
            total.pack_cents += c.pack_cents
            total.packs += c.packs
            total.credits_used += c.credits_used
            total.cost_cents += c.cost_cents
            for p, n in c.units.items():
                total.units[p] = total.units.get(p, 0) + n
        history.append(total)

    counts = {r["plan"]: PlanCount(r["plan"], r["subscriptions"], r["mrr_cents"]) for r in await repo.active_by_plan(db, as_of)}
    for r in await repo.movements(db, start, end):
        pc = counts.setdefault(r["plan"], PlanCount(r["plan"], 0, 0))
        pc.at_start, pc.new, pc.cancelled = r["at_start"], r["new"], r["cancelled"]
    order = await repo.plan_prices(db)
    plans = sorted((pc for pc in counts.values() if pc.subscriptions or pc.at_start or pc.new or pc.cancelled),
                   key=lambda pc: (order.get(pc.plan, 10**9), pc.plan))
    at_start = sum(pc.at_start for pc in plans)
    cancelled = sum(pc.cancelled for pc in plans)
    by_plan = sorted((c for (m, _), c in cells.items() if m == month), key=lambda c: (order.get(c.plan, 10**9), c.plan))
    return Report(
        month=month, as_of=as_of, mrr_cents=sum(pc.mrr_cents for pc in plans), plans=plans,
        at_start=at_start, new=sum(pc.new for pc in plans), cancelled=cancelled,
        churn=(cancelled / at_start) if at_start else None,
        by_plan=by_plan, history=history,
        rows=sorted(cells.values(), key=lambda c: (c.month, order.get(c.plan, 10**9), c.plan)),
    )


CSV_COLUMNS = ("month", "plan", "subscription_revenue_cents", "pack_revenue_cents", "revenue_cents", "credits_used",
               "upstream_units", "upstream_cost_cents", "gross_margin_cents")


def to_csv(r: Report) -> str:
    """One row per month and plan, then the month's total (plan 'all'), oldest month first."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for total in r.history:
        for c in [c for c in r.rows if c.month == total.month] + [total]:
            w.writerow([f"{c.month:%Y-%m}", c.plan, c.subscription_cents, c.pack_cents, c.revenue_cents,
                        c.credits_used, c.total_units, c.cost_cents, c.margin_cents])
    return out.getvalue()
