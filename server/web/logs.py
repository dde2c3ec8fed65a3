"""Structured JSON logs with the request id, and secrets scrubbed before anything is written."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Iterable

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Shapes of secrets that may reach a log line through an exception or a URL.
SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    # A named value, when the value looks like a secret: "invalid_api_key: Invalid API key" is
    # a provider's error code and a word, not a key (hence the boundary and the shape).
    re.compile(
        r"(?i)((?<![a-z0-9_])(?:password|passwd|secret|token|api[_-]?key|xi-api-key|x-goog-api-key|authorization)"
        r"[\"']?\s*[:=]\s*[\"']?)(?:(?=[^\s\"',}]*[^a-z\s\"',}])[^\s\"',}]{6,}|[a-z]{20,})"
    ),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWTs
    re.compile(r"\b(?:sk|rk|pk|whsec)_[A-Za-z0-9_]{8,}"),  # Stripe-style keys
    re.compile(r"\bsk_[a-f0-9]{16,}\b"),  # ElevenLabs keys
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"),  # OpenAI and Anthropic keys
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),  # Google API keys
    re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+(@)"),
    re.compile(r"(redis://[^:/@\s]*:)[^@\s]+(@)"),
]


class Redactor:
    """Knows the literal secrets in use (settings, decrypted provider keys) plus secret shapes."""

    def __init__(self) -> None:
        self._literals: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        for v in values:
            if v and len(v) >= 6:
                self._literals.add(v)

    def scrub(self, text: str) -> str:
        for literal in sorted(self._literals, key=len, reverse=True):
            if literal in text:
                text = text.replace(literal, "[REDACTED]")
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(_replacement, text)
        return text


def _replacement(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) == 2:
        return f"{groups[0]}[REDACTED]{groups[1]}"
    if len(groups) == 1:
        return f"{groups[0]}[REDACTED]"
    return "[REDACTED]"


# One redactor per process: logging handlers are process-wide by nature.
REDACTOR = Redactor()

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.redactor.scrub(json.dumps(entry, default=str))


def configure_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The HTTP client libraries log request headers at debug level, API keys included.
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "elevenlabs", "openai", "anthropic", "google_genai",
                  "stripe", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.Formatter.converter = time.gmtime
