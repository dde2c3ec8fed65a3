"""Each LLM provider through its official SDK against the LLM simulator, one fault at a time.

Every scenario banks two keys of one provider: "first" (heavier, so it is leased first) carries
the fault, "second" is healthy. The request must still be answered, by the second key, charged
once for the tokens the simulator reported for that answer, while the first key gets what its
fault deserves: a cooldown (busy, server error, timeout, unusable reply), parking until its quota
resets, or being disabled with a readable reason.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from server.keybank.cli import format_table
from assist_support import (  # noqa: F401  (fixtures)
    LLMS,
    add_llm_key,
    api,
    ask,
    assist_env,
    assist_settings,
    bank,
    books_balance,
    leaks,
    llm,
    no_secret_in_logs_or_responses,
    user_with,
)

SFX_IDEA = {"idea": "heavy wooden door", "context": "an old farmhouse at night"}


async def first_faulted(provider, fault, add_llm_key, llm, **options):  # noqa: F811
    first, first_secret = await add_llm_key(provider, "first", weight=3)
    second, second_secret = await add_llm_key(provider, "second", weight=1)
    llm.state.inject(first_secret, fault, **options)
    return first, second, first_secret, second_secret


def answer_of(llm, secret):  # noqa: F811
    answered = [r for r in llm.answered() if r["key"] == secret[-4:] and r["status"] == 200]
    assert len(answered) == 1, answered
    return answered[0]["usage"]


async def charged_for(api, db, user, llm, secret, body):  # noqa: F811
    """The request succeeds; returns (response body, the simulator's usage for the answering key)."""
    resp, data = await ask(api, "/v1/assist/sfx-prompt", user, SFX_IDEA)
    assert resp.status == 200, data
    usage = answer_of(llm, secret)
    tokens = usage["input_tokens"] + usage["output_tokens"]
    assert data["usage"]["input_tokens"] == usage["input_tokens"]
    assert data["usage"]["output_tokens"] == usage["output_tokens"]
    assert data["usage"]["credits_charged"] == math.ceil(tokens / 2000)
    assert data["usage"]["credits_remaining"] == 100 - data["usage"]["credits_charged"]
    row = await db.fetchrow("SELECT * FROM assist_requests")
    assert (row["input_tokens"], row["output_tokens"], row["credits_charged"]) == (
        usage["input_tokens"], usage["output_tokens"], data["usage"]["credits_charged"])
    return data, row


@pytest.mark.parametrize("provider", LLMS)
async def test_a_healthy_key_answers_with_three_valid_prompts_charged_by_its_tokens(provider, api, bank, db, add_llm_key, llm):  # noqa: F811
    key_id, secret = await add_llm_key(provider)
    user = await user_with(api, db, 100)
    data, row = await charged_for(api, db, user, llm, secret, SFX_IDEA)
    assert len(data["prompts"]) == 3 and all("heavy wooden door" in p["prompt"] for p in data["prompts"])
    assert data["usage"]["provider"] == provider and row["provider"] == provider and row["upstream_attempts"] == 1
    assert data["usage"]["prompt_version"] == "sfx_prompt/1"
    # The key's own usage is counted in tokens, as an ElevenLabs key's is in characters.
    tokens = row["input_tokens"] + row["output_tokens"]
    view = await bank.get_key(key_id)
    assert view.quota_used == tokens and view.quota_limit is None
    assert f"{tokens} used, limit unknown" in format_table([view])


@pytest.mark.parametrize("provider", LLMS)
async def test_busy_with_retry_after_cools_the_key_for_that_long_and_the_next_key_answers(provider, api, bank, db, add_llm_key, llm):  # noqa: F811
    first, second, _, second_secret = await first_faulted(provider, "busy", add_llm_key, llm, retry_after=40)
    user = await user_with(api, db, 100)
    _, row = await charged_for(api, db, user, llm, second_secret, SFX_IDEA)
    assert row["upstream_key_id"] == second and row["upstream_attempts"] == 2
    view = await bank.get_key(first)
    assert view.status == "active" and view.cooldown_until is not None
    assert 35 <= (view.cooldown_until - datetime.now(timezone.utc)).total_seconds() <= 41


@pytest.mark.parametrize("provider", LLMS)
async def test_quota_gone_parks_the_key_until_its_reset(provider, api, bank, db, add_llm_key, llm):  # noqa: F811
    first, second, _, second_secret = await first_faulted(provider, "quota", add_llm_key, llm)
    user = await user_with(api, db, 100)
    await charged_for(api, db, user, llm, second_secret, SFX_IDEA)
    view = await bank.get_key(first)
    assert view.status == "exhausted" and view.quota_reset_at > datetime.now(timezone.utc)


@pytest.mark.parametrize("provider", LLMS)
async def test_an_invalid_key_is_disabled_with_a_readable_reason(provider, api, bank, db, add_llm_key, llm):  # noqa: F811
    first, second, _, second_secret = await first_faulted(provider, "invalid", add_llm_key, llm)
    user = await user_with(api, db, 100)
    await charged_for(api, db, user, llm, second_secret, SFX_IDEA)
    view = await bank.get_key(first)
    assert view.status == "disabled"
    # The provider's own words survive: the scrubber takes secrets, not the word "invalid".
    assert view.last_error.startswith("invalid_key 40") and "[REDACTED]" not in view.last_error
    assert view.last_error == view.disabled_reason


@pytest.mark.parametrize("provider", LLMS)
@pytest.mark.parametrize("fault", ["500", "timeout", "malformed", "off_schema", "corrupt"])
async def test_a_failing_or_unusable_answer_cools_the_key_and_is_never_charged(provider, fault, api, bank, db, add_llm_key, llm):  # noqa: F811
    first, second, first_secret, second_secret = await first_faulted(provider, fault, add_llm_key, llm)
    user = await user_with(api, db, 100)
    data, row = await charged_for(api, db, user, llm, second_secret, SFX_IDEA)
    assert row["upstream_key_id"] == second and row["upstream_attempts"] == 2
    view = await bank.get_key(first)
    assert view.status == "active" and view.cooldown_until is not None and view.consecutive_failures == 1
    assert view.last_error.split()[0].rstrip(":") in ("server_error", "timeout")
    # The faulty answer was not charged: one capture, of the healthy answer's tokens.
    captures = await db.fetch("SELECT credits FROM credit_ledger WHERE kind = 'capture'")
    assert [c["credits"] for c in captures] == [data["usage"]["credits_charged"]]


@pytest.mark.parametrize("provider", LLMS)
async def test_a_key_the_provider_rejects_is_not_banked(provider, bank, llm, leaks):  # noqa: F811
    secret = "never-registered-" + provider
    leaks.values.append(secret)
    with pytest.raises(Exception) as refused:
        await bank.add_key(provider=provider, label="bad", secret=secret, max_concurrency=2)
    assert getattr(refused.value, "code", None) == "invalid_provider_key"
    assert await bank.list_keys(provider) == []
