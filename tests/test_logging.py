"""Logs are JSON lines with the request id, and secrets never reach them."""

import io
import json
import logging

from server.web.logs import JsonFormatter, Redactor


def log_line(redactor, message, *args, **extra):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(redactor))
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info(message, *args, extra=extra)
    return stream.getvalue()


def test_a_log_line_is_json_with_extra_fields():
    line = log_line(Redactor(), "hello %s", "world", user_id="u1")
    entry = json.loads(line)
    assert entry["msg"] == "hello world"
    assert entry["user_id"] == "u1"
    assert entry["level"] == "INFO"


def test_known_secrets_and_secret_shapes_are_redacted():
    redactor = Redactor()
    redactor.add(["my-literal-master-key-123"])
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    line = log_line(
        redactor,
        "key=%s auth=Bearer abc.def.ghi token %s password=hunter2hunter2 xi-api-key: sk_0123456789abcdef0123 "
        "db postgresql://app:s3cretpw@db/x stripe sk_live_ABCDEFGH12345678",
        "my-literal-master-key-123",
        jwt,
    )
    for secret in ("my-literal-master-key-123", "abc.def.ghi", jwt, "hunter2hunter2", "sk_0123456789abcdef0123",
                   "s3cretpw", "sk_live_ABCDEFGH12345678"):
        assert secret not in line
    assert "[REDACTED]" in line


def test_provider_error_words_are_not_mistaken_for_secrets():
    """A key's last_error read "invalid_api_key: [REDACTED] API key": the word after a key-like
    name is only a secret when it looks like one."""
    redactor = Redactor()
    for text in ("invalid_key 401 invalid_api_key: Invalid API key", "api_key: Invalid",
                 "authentication_error: invalid x-api-key", "token: expired"):
        assert redactor.scrub(text) == text


def test_llm_provider_key_shapes_are_redacted():
    redactor = Redactor()
    for secret in ("sk-proj-" + "Ab3" * 12, "sk-ant-api03-" + "x9Y" * 12, "AIzaSy" + "Q1w" * 11, "api_key=abc123def"):
        scrubbed = redactor.scrub(f"the provider said: {secret} was rejected")
        assert secret not in scrubbed and "[REDACTED]" in scrubbed
