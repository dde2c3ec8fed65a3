"""How upstream failures are read: the kind decides cooldown, parking, disabling or a user error."""

import asyncio
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from elevenlabs.core.api_error import ApiError as ProviderApiError
from elevenlabs.core.parse_error import ParsingError

from server.providers.base import (
    MAX_RETRY_AFTER,
    Failure,
    FailureKind,
    RetryOnAnotherKey,
    UpstreamUserError,
    parse_retry_after,
)
from server.providers.elevenlabs import ElevenLabs
from server.settings import Settings

ELEVENLABS = ElevenLabs(Settings())
classify = ELEVENLABS.classify
user_error = ELEVENLABS.user_error


def provider_error(status, code=None, message="", headers=None, body=None):
    if body is None:
        body = {"detail": {"status": code, "message": message}}
    return ProviderApiError(status_code=status, headers=headers or {}, body=body)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, "too_many_concurrent_requests", FailureKind.CONCURRENCY),
        (429, "concurrent_limit_exceeded", FailureKind.CONCURRENCY),
        (429, "system_busy", FailureKind.BUSY),
        (429, "rate_limit_exceeded", FailureKind.BUSY),
        (401, "quota_exceeded", FailureKind.QUOTA),
        (401, "invalid_api_key", FailureKind.INVALID_KEY),
        (401, "missing_permissions", FailureKind.PERMISSIONS),
        (400, "voice_not_found", FailureKind.USER),
        (400, "max_character_limit_exceeded", FailureKind.USER),
        (422, None, FailureKind.USER),
        (500, "internal_server_error", FailureKind.SERVER),
        (503, "service_unavailable", FailureKind.SERVER),
        (502, None, FailureKind.SERVER),
    ],
)
def test_provider_answers_are_sorted_by_status_and_detail_code(status, code, kind):
    failure = classify(provider_error(status, code, "some message"))
    assert failure.kind is kind
    assert failure.status == status


def test_a_code_given_in_the_code_field_is_read_too():
    body = {"detail": {"code": "too_many_concurrent_requests", "message": "busy"}}
    assert classify(provider_error(429, body=body)).kind is FailureKind.CONCURRENCY


def test_an_unknown_401_disables_rather_than_retrying_forever():
    assert classify(provider_error(401, "detected_unusual_activity")).kind is FailureKind.INVALID_KEY


def test_a_text_body_is_tolerated():
    failure = classify(provider_error(503, body="<html>Bad gateway</html>"))
    assert failure.kind is FailureKind.SERVER


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectTimeout("connect timed out"), FailureKind.TIMEOUT),
        (httpx.ReadTimeout("read timed out"), FailureKind.TIMEOUT),
        (asyncio.TimeoutError(), FailureKind.TIMEOUT),
        (httpx.ConnectError("refused"), FailureKind.CONNECTION),
        (httpx.ReadError("reset by peer"), FailureKind.CONNECTION),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), FailureKind.CONNECTION),
        (ConnectionResetError(), FailureKind.CONNECTION),
        (RetryOnAnotherKey("empty audio"), FailureKind.SERVER),
        (ParsingError(status_code=200, headers={}, body={"unexpected": True}), FailureKind.SERVER),
    ],
)
def test_network_trouble_is_a_transient_failure_that_cools_the_key(exc, kind):
    failure = classify(exc)
    assert failure.kind is kind
    assert failure.kind.cools_down


def test_exceptions_that_are_not_upstream_failures_are_not_classified():
    assert classify(ValueError("a bug in our code")) is None
    assert classify(KeyError("x")) is None


def test_retry_after_in_seconds_is_read_case_insensitively():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"Retry-After": "2.5"}) == 2.5
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None


def test_retry_after_as_an_http_date_is_seconds_from_now():
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    seconds = parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)})
    assert 115 <= seconds <= 121


def test_retry_after_is_bounded_and_never_negative():
    assert parse_retry_after({"Retry-After": "999999"}) == MAX_RETRY_AFTER
    past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)
    assert parse_retry_after({"Retry-After": past}) == 0.0


def test_classified_failures_carry_retry_after():
    failure = classify(provider_error(429, "system_busy", headers={"retry-after": "9"}))
    assert failure.retry_after == 9.0


def test_a_voice_not_found_becomes_a_400_invalid_request_with_a_safe_message():
    err = user_error(classify(provider_error(400, "voice_not_found", "A voice with voice_id abc does not exist.")))
    assert isinstance(err, UpstreamUserError)
    assert err.status == 400
    assert err.code == "invalid_request"
    assert "voice" in err.message.lower()
    assert err.details["upstream_code"] == "voice_not_found"


def test_a_provider_422_becomes_a_422_naming_the_field():
    body = {"detail": [{"loc": ["body", "duration_seconds"], "msg": "Input should be less than or equal to 30", "type": "x"}]}
    err = user_error(classify(provider_error(422, body=body)))
    assert err.status == 422
    assert err.code == "validation_failed"
    assert "duration_seconds" in err.message


def test_failure_descriptions_are_one_bounded_line():
    text = Failure(FailureKind.SERVER, 500, "internal_server_error", "line one\nline two " + "x" * 1000).describe()
    assert "\n" not in text
    assert len(text) <= 300
    assert text.startswith("server_error 500")
