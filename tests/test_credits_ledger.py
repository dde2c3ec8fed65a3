"""The credit ledger, one caller at a time: holds, captures, releases, idempotency, periods,
top-ups, adjustments, payment state, and the database's own guarantees."""

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from server.credits import service
from server.credits.models import HoldClosed, HoldNotFound, IdempotencyConflict, InsufficientCredits, PaymentPastDue
from server.web.errors import NotFound, ValidationFailed


async def new_user(db) -> uuid.UUID:
    return await db.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", f"{uuid.uuid4().hex}@example.com"
    )


async def account_with(db, credits: int, plan: str = "basic") -> uuid.UUID:
    """A user on a paid plan whose current billing period granted `credits`."""
    user_id = await new_user(db)
    now = await db.fetchval("SELECT now()")
    await service.set_plan(db, user_id, plan)
    await service.grant_period(db, user_id, now - timedelta(days=1), now + timedelta(days=29), credits,
                               key=f"test-grant:{user_id}")
    return user_id


async def remaining(db, user_id) -> int:
    return (await service.summary(db, user_id)).remaining


async def entries(db, user_id) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM credit_ledger WHERE user_id = $1 ORDER BY id", user_id)


async def assert_consistent(db, user_id) -> None:
    row = await db.fetchrow("SELECT * FROM credit_consistency WHERE user_id = $1", user_id)
    assert row["consistent"], dict(row)


# --- holds ------------------------------------------------------------------------------


async def test_reserve_sets_credits_aside_and_records_the_hold(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 3, "req-1")

    assert (hold.user_id, hold.amount, hold.key, hold.status) == (user, 3, "req-1", "held")
    s = await service.summary(db, user)
    assert (s.allowance, s.reserved, s.remaining, s.used) == (10, 3, 7, 0)
    reserve = (await entries(db, user))[-1]
    assert (reserve["kind"], reserve["amount"], reserve["credits"], reserve["hold_id"]) == ("reserve", -3, 3, hold.id)
    assert reserve["balance_after"] == 7
    await assert_consistent(db, user)


async def test_capture_of_the_whole_hold_moves_it_to_used(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 3, "req-1")

    assert await service.capture(db, hold.id, 3) == 3

    s = await service.summary(db, user)
    assert (s.reserved, s.used, s.remaining) == (0, 3, 7)
    assert [e["kind"] for e in await entries(db, user)] == ["grant", "reserve", "capture"]
    await assert_consistent(db, user)


async def test_capture_less_than_held_gives_the_remainder_back(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 3, "auto-duration")

    assert await service.capture(db, hold.id, 1) == 1

    s = await service.summary(db, user)
    assert (s.reserved, s.used, s.remaining) == (0, 1, 9)
    capture, release = (await entries(db, user))[-2:]
    assert (capture["kind"], capture["credits"], capture["amount"]) == ("capture", 1, 0)
    assert (release["kind"], release["credits"], release["amount"], release["balance_after"]) == ("release", 2, 2, 9)
    await assert_consistent(db, user)


async def test_capture_twice_charges_once(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 3, "req-1")

    assert await service.capture(db, hold.id, 2) == 2
    assert await service.capture(db, hold.id, 3) == 2  # the first capture stands

    assert (await service.summary(db, user)).used == 2
    assert [e["kind"] for e in await entries(db, user)] == ["grant", "reserve", "capture", "release"]


async def test_a_capture_reports_the_balance_left_once_it_settles(db):
    user = await account_with(db, 10)
    other = await service.reserve(db, user, 4, "still-running")  # another request's hold stays set aside
    hold = await service.reserve(db, user, 3, "auto-duration")

    assert await service.capture_with_balance(db, hold.id, 1) == (1, 5)
    assert (await service.summary(db, user)).remaining == 5
    # A retried capture moved nothing, so it has no fresh balance to report.
    assert await service.capture_with_balance(db, hold.id, 1) == (1, None)
    await service.release(db, other.id)
    await assert_consistent(db, user)


async def test_capture_above_the_hold_charges_only_the_hold(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 2, "req-1")

    assert await service.capture(db, hold.id, 5) == 2
    assert await remaining(db, user) == 8
    await assert_consistent(db, user)


async def test_release_returns_the_credits_and_is_idempotent(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 4, "req-1")

    await service.release(db, hold.id)
    await service.release(db, hold.id)

    s = await service.summary(db, user)
    assert (s.reserved, s.used, s.remaining) == (0, 0, 10)
    assert [e["kind"] for e in await entries(db, user)] == ["grant", "reserve", "release"]
    await assert_consistent(db, user)


async def test_release_after_capture_changes_nothing(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 4, "req-1")
    await service.capture(db, hold.id, 4)

    await service.release(db, hold.id)

    s = await service.summary(db, user)
    assert (s.used, s.remaining) == (4, 6)


async def test_capture_after_release_is_refused(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 4, "req-1")
    await service.release(db, hold.id)

    with pytest.raises(HoldClosed) as caught:
        await service.capture(db, hold.id, 4)
    assert caught.value.status == 409
    assert await remaining(db, user) == 10


async def test_unknown_holds_are_reported(db):
    with pytest.raises(HoldNotFound):
        await service.capture(db, uuid.uuid4(), 1)
    with pytest.raises(HoldNotFound):
        await service.release(db, uuid.uuid4())


async def test_negative_amounts_are_programming_errors(db):
    user = await account_with(db, 10)
    with pytest.raises(ValueError):
        await service.reserve(db, user, -1, "neg")
    hold = await service.reserve(db, user, 1, "ok")
    with pytest.raises(ValueError):
        await service.capture(db, hold.id, -1)


# --- idempotency ---------------------------------------------------------------------------


async def test_the_same_key_twice_returns_the_same_hold_and_charges_once(db):
    user = await account_with(db, 10)
    first = await service.reserve(db, user, 3, "Idempotency-Key-abc")
    second = await service.reserve(db, user, 3, "Idempotency-Key-abc")

    assert second.id == first.id
    assert await remaining(db, user) == 7
    assert [e["kind"] for e in await entries(db, user)] == ["grant", "reserve"]


async def test_the_same_key_after_capture_returns_the_captured_hold_without_charging(db):
    user = await account_with(db, 10)
    first = await service.reserve(db, user, 3, "k")
    await service.capture(db, first.id, 3)

    again = await service.reserve(db, user, 3, "k")

    assert (again.id, again.status) == (first.id, "captured")
    assert await remaining(db, user) == 7


async def test_a_key_whose_hold_was_released_can_be_reserved_again_by_a_retry(db):
    user = await account_with(db, 10)
    first = await service.reserve(db, user, 3, "k")
    await service.release(db, first.id)

    retry = await service.reserve(db, user, 3, "k")

    assert retry.id != first.id and retry.status == "held"
    assert await remaining(db, user) == 7
    await assert_consistent(db, user)


async def test_the_same_key_for_another_amount_is_a_conflict(db):
    user = await account_with(db, 10)
    await service.reserve(db, user, 3, "k")

    with pytest.raises(IdempotencyConflict) as caught:
        await service.reserve(db, user, 4, "k")
    assert caught.value.code == "idempotency_conflict"
    assert await remaining(db, user) == 7


async def test_keys_belong_to_one_user(db):
    alice, bob = await account_with(db, 10), await account_with(db, 10)
    a = await service.reserve(db, alice, 2, "shared-key")
    b = await service.reserve(db, bob, 2, "shared-key")
    assert a.id != b.id
    assert (await remaining(db, alice), await remaining(db, bob)) == (8, 8)


async def test_an_empty_or_oversized_key_is_rejected(db):
    user = await account_with(db, 10)
    for key in ("", "k" * 201):
        with pytest.raises(ValidationFailed):
            await service.reserve(db, user, 1, key)


# --- refusals ----------------------------------------------------------------------------


async def test_not_enough_credits_is_402_with_what_is_needed_and_where_to_upgrade(db, settings):
    user = await account_with(db, 5)
    await service.reserve(db, user, 4, "first")

    with pytest.raises(InsufficientCredits) as caught:
        await service.reserve(db, user, 3, "second", settings=settings)

    err = caught.value
    assert (err.status, err.code) == (402, "insufficient_credits")
    assert err.details == {"needed": 3, "remaining": 1, "upgrade_url": settings.upgrade_url}
    assert [e["kind"] for e in await entries(db, user)] == ["grant", "reserve"]
    await assert_consistent(db, user)


async def test_payment_past_due_keeps_working_through_the_grace_period(db, settings):
    user = await account_with(db, 10)
    now = await db.fetchval("SELECT now()")
    await service.set_payment_state(db, user, now - timedelta(days=settings.payment_grace_days - 1))

    hold = await service.reserve(db, user, 1, "in-grace", settings=settings)
    assert hold.status == "held"
    assert (await service.summary(db, user)).past_due_since is not None


async def test_payment_past_due_beyond_grace_is_402_payment_past_due(db, settings):
    user = await account_with(db, 10)
    now = await db.fetchval("SELECT now()")
    await service.set_payment_state(db, user, now - timedelta(days=settings.payment_grace_days, minutes=1))

    with pytest.raises(PaymentPastDue) as caught:
        await service.reserve(db, user, 1, "late", settings=settings)
    assert (caught.value.status, caught.value.code) == (402, "payment_past_due")
    assert caught.value.details["upgrade_url"] == settings.upgrade_url

    await service.set_payment_state(db, user, None)
    assert (await service.reserve(db, user, 1, "paid-again", settings=settings)).status == "held"


async def test_a_user_that_does_not_exist_is_not_found(db):
    with pytest.raises(NotFound) as caught:
        await service.reserve(db, uuid.uuid4(), 1, "k")
    assert caught.value.code == "user_not_found"


# --- plans ---------------------------------------------------------------------------------


async def test_a_new_user_is_on_free_with_this_months_allowance(db):
    user = await new_user(db)
    s = await service.summary(db, user)
    month_start = await db.fetchval("SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")

    assert (s.plan.code, s.allowance, s.remaining, s.unlimited) == ("free", 20, 20, False)
    assert s.period_start == month_start
    assert [(e["kind"], e["idempotency_key"]) for e in await entries(db, user)] == [
        ("grant", f"period:{user}:{month_start:%Y-%m}")
    ]
    assert (await service.plan_for(db, user)).code == "free"


async def test_enterprise_is_unlimited_but_every_hold_is_recorded(db):
    user = await account_with(db, 0, plan="enterprise")

    hold = await service.reserve(db, user, 1000, "big-job")
    await service.capture(db, hold.id, 900)

    s = await service.summary(db, user)
    assert (s.unlimited, s.remaining, s.used, s.reserved) == (True, None, 900, 0)
    kinds = [(e["kind"], e["credits"], e["amount"]) for e in await entries(db, user)]
    assert kinds[-3:] == [("reserve", 1000, 0), ("capture", 900, 0), ("release", 100, 0)]
    await assert_consistent(db, user)


async def test_set_plan_changes_the_plan_and_rejects_unknown_codes(db):
    user = await new_user(db)
    plan = await service.set_plan(db, user, "pro")
    assert (plan.code, plan.monthly_credits, plan.price_cents) == ("pro", 2000, 1999)
    assert (await service.plan_for(db, user)).code == "pro"
    with pytest.raises(NotFound):
        await service.set_plan(db, user, "platinum")


# --- periods ------------------------------------------------------------------------------


async def test_grant_period_replaces_the_allowance_and_expires_the_rest(db):
    user = await account_with(db, 500)
    hold = await service.reserve(db, user, 100, "used-some")
    await service.capture(db, hold.id, 100)
    now = await db.fetchval("SELECT now()")

    granted = await service.grant_period(db, user, now, now + timedelta(days=30), 2000, key="in_renewal")

    assert granted is True
    s = await service.summary(db, user)
    assert (s.allowance, s.used, s.remaining) == (2000, 0, 2000)
    expire, grant = (await entries(db, user))[-2:]
    assert (expire["kind"], expire["amount"], grant["kind"], grant["amount"]) == ("expire", -400, "grant", 2000)
    await assert_consistent(db, user)


async def test_grant_period_is_idempotent_on_its_key(db):
    user = await account_with(db, 500)
    now = await db.fetchval("SELECT now()")
    assert await service.grant_period(db, user, now, now + timedelta(days=30), 500, key="in_1") is True
    await service.reserve(db, user, 7, "spend")
    assert await service.grant_period(db, user, now, now + timedelta(days=30), 500, key="in_1") is False
    assert await remaining(db, user) == 493


async def test_a_late_grant_for_an_older_period_changes_nothing(db):
    user = await account_with(db, 500)
    now = await db.fetchval("SELECT now()")
    await service.grant_period(db, user, now, now + timedelta(days=30), 500, key="in_new")

    late = await service.grant_period(db, user, now - timedelta(days=60), now - timedelta(days=30), 500, key="in_old")

    assert late is False
    assert (await service.summary(db, user)).period_start == now


async def free_account_from_last_month(db, *, spend: int = 0) -> tuple[uuid.UUID, object]:
    """A free account granted last month, which spent `spend` credits before the month ended."""
    user = await new_user(db)
    last_month, this_month, soon = await db.fetchrow(
        """SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month') AT TIME ZONE 'UTC',
                  date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                  now() + interval '1 hour'"""
    )
    await db.execute("INSERT INTO credit_accounts (user_id, period_start, period_end) VALUES ($1, $2, $2)",
                     user, last_month)
    await service.grant_period(db, user, last_month, soon, 20, key=f"period:{user}:{last_month:%Y-%m}")
    if spend:
        hold = await service.reserve(db, user, spend, "last-month")
        await service.capture(db, hold.id, spend)
    # The clock moves on: last month is over.
    await db.execute("UPDATE credit_accounts SET period_end = $2 WHERE user_id = $1", user, this_month)
    return user, this_month


async def test_free_accounts_roll_over_lazily_at_the_calendar_month(db):
    user, this_month = await free_account_from_last_month(db, spend=3)

    await service.reserve(db, user, 1, "first-use-this-month")

    s = await service.summary(db, user)
    assert (s.period_start, s.allowance, s.used, s.reserved, s.remaining) == (this_month, 20, 0, 1, 19)
    tail = [(e["kind"], e["amount"], e["idempotency_key"]) for e in (await entries(db, user))[-3:]]
    assert tail[0][:2] == ("expire", -17)
    assert tail[1] == ("grant", 20, f"period:{user}:{this_month:%Y-%m}")
    assert tail[2][:2] == ("reserve", -1)
    await assert_consistent(db, user)


async def test_a_month_rolls_over_once_however_many_requests_race_for_it(db):
    user, _ = await free_account_from_last_month(db)

    await asyncio.gather(*(service.reserve(db, user, 1, f"r{i}") for i in range(10)),
                         *(service.summary(db, user) for _ in range(10)))

    grants = [e for e in await entries(db, user) if e["kind"] == "grant"]
    assert len(grants) == 2  # last month's and this month's
    s = await service.summary(db, user)
    assert (s.allowance, s.reserved, s.remaining) == (20, 10, 10)
    await assert_consistent(db, user)


async def test_free_then_paid_then_free_in_one_month_gets_the_free_allowance_once(db):
    user = await new_user(db)
    await service.summary(db, user)  # this month's free 20
    now = await db.fetchval("SELECT now()")
    await service.set_plan(db, user, "basic")
    await service.grant_period(db, user, now - timedelta(hours=2), now - timedelta(hours=1), 500, key="in_short")
    await service.set_plan(db, user, "free")

    s = await service.summary(db, user)

    assert (s.plan.code, s.allowance, s.remaining) == ("free", 0, 0)
    assert s.period_end > now
    await assert_consistent(db, user)


async def test_paid_accounts_do_not_roll_over_by_themselves(db):
    user = await new_user(db)
    now = await db.fetchval("SELECT now()")
    await service.set_plan(db, user, "pro")
    await service.grant_period(db, user, now - timedelta(days=31), now - timedelta(minutes=1), 2000, key="in_prev")

    await service.reserve(db, user, 5, "webhook-not-here-yet")

    s = await service.summary(db, user)
    assert (s.allowance, s.remaining) == (2000, 1995)
    assert [e["kind"] for e in await entries(db, user)] == ["grant", "reserve"]


async def test_a_hold_from_the_previous_period_does_not_bring_old_allowance_back(db):
    user = await account_with(db, 10)
    hold = await service.reserve(db, user, 4, "spans-renewal")
    now = await db.fetchval("SELECT now()")
    await service.grant_period(db, user, now, now + timedelta(days=30), 10, key="in_next")

    await service.release(db, hold.id)

    s = await service.summary(db, user)
    assert (s.reserved, s.remaining) == (0, 10)
    await assert_consistent(db, user)


# --- top-ups and adjustments --------------------------------------------------------------------


async def test_top_ups_add_credits_that_outlive_the_period_and_are_spent_last(db):
    user = await account_with(db, 5)
    assert await service.top_up(db, user, 500, key="cs_pack_1") is True
    assert await service.top_up(db, user, 500, key="cs_pack_1") is False

    hold = await service.reserve(db, user, 8, "spend")  # 5 from the allowance, 3 from the pack
    await service.capture(db, hold.id, 8)
    now = await db.fetchval("SELECT now()")
    await service.grant_period(db, user, now, now + timedelta(days=30), 5, key="in_next")

    s = await service.summary(db, user)
    assert (s.remaining, s.topup) == (502, 497)
    await assert_consistent(db, user)


async def test_a_released_hold_gives_credits_back_to_where_they_came_from(db):
    user = await account_with(db, 2)
    await service.top_up(db, user, 10, key="pack")
    hold = await service.reserve(db, user, 5, "spend")  # 2 allowance + 3 pack
    await service.capture(db, hold.id, 3)  # charges the 2 allowance first, then 1 from the pack

    s = await service.summary(db, user)
    assert (s.remaining, s.topup) == (9, 9)
    await assert_consistent(db, user)


async def test_adjust_gives_and_takes_with_a_reason_and_an_actor(db):
    user = await account_with(db, 10)

    assert await service.adjust(db, user, 15, "support goodwill", "admin@example.com") == 15
    assert await service.adjust(db, user, -5, "duplicate grant", "admin@example.com") == -5

    assert await remaining(db, user) == 20
    last = (await entries(db, user))[-1]
    assert (last["kind"], last["amount"], last["reason"], last["actor"]) == (
        "adjust", -5, "duplicate grant", "admin@example.com")
    await assert_consistent(db, user)


async def test_a_claw_back_larger_than_the_balance_takes_what_is_left(db):
    user = await account_with(db, 3)
    await service.top_up(db, user, 500, key="pack")
    hold = await service.reserve(db, user, 400, "spent-most")
    await service.capture(db, hold.id, 400)

    applied = await service.adjust(db, user, -500, "refund of pack", "billing", key="re_1")
    again = await service.adjust(db, user, -500, "refund of pack", "billing", key="re_1")

    assert applied == again == -103
    assert await remaining(db, user) == 0
    await assert_consistent(db, user)


async def test_adjust_needs_a_reason(db):
    user = await account_with(db, 10)
    with pytest.raises(ValueError):
        await service.adjust(db, user, 5, "  ", "admin")


async def test_history_lists_entries_newest_first_in_pages(db):
    user = await account_with(db, 10)
    for i in range(3):
        hold = await service.reserve(db, user, 1, f"r{i}")
        await service.capture(db, hold.id, 1)

    first = await service.history(db, user, limit=4)
    rest = await service.history(db, user, limit=4, before_id=first[-1].id)

    kinds = [e.kind for e in first + rest]
    assert kinds == ["capture", "reserve"] * 3 + ["grant"]
    assert [e.balance_after for e in first + rest] == [7, 7, 8, 8, 9, 9, 10]


# --- composition -------------------------------------------------------------------------------


async def test_functions_join_the_callers_transaction(db):
    user = await account_with(db, 10)
    now = await db.fetchval("SELECT now()")
    async with db.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await service.set_plan(conn, user, "pro")
                await service.grant_period(conn, user, now, now + timedelta(days=30), 2000, key="in_rollback")
                raise RuntimeError("the webhook failed after granting")

    s = await service.summary(db, user)
    assert (s.plan.code, s.allowance) == ("basic", 10)


async def test_a_refusal_inside_the_callers_transaction_leaves_it_usable(db):
    user = await account_with(db, 1)
    async with db.acquire() as conn:
        async with conn.transaction():
            with pytest.raises(InsufficientCredits):
                await service.reserve(conn, user, 5, "too-much")
            hold = await service.reserve(conn, user, 1, "fits")
            await service.capture(conn, hold.id, 1)
    assert (await service.summary(db, user)).used == 1


# --- what the database itself guarantees ---------------------------------------------------------


async def test_the_ledger_is_append_only(db):
    user = await account_with(db, 10)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute("UPDATE credit_ledger SET amount = 1000 WHERE user_id = $1", user)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute("DELETE FROM credit_ledger WHERE user_id = $1", user)


async def test_a_balance_can_never_go_negative(db):
    user = await account_with(db, 10)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE credit_accounts SET period_balance = -1 WHERE user_id = $1", user)


async def test_ledger_keys_are_unique(db):
    user = await account_with(db, 10)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            """INSERT INTO credit_ledger (user_id, kind, amount, credits, balance_after, idempotency_key)
               VALUES ($1, 'grant', 1, 1, 11, $2)""", user, f"test-grant:{user}")
