"""Outgoing mail behind one small interface: SMTP in production, an outbox table elsewhere.

`SMTP_URL` looks like `smtp://user:password@host:587` (STARTTLS when the server offers it)
or `smtps://user:password@host:465` (TLS from the start). An optional `?from=` query sets
the sender; by default it is no-reply at the host of `PUBLIC_URL`. With `SMTP_URL` empty,
messages are written to the `mail_outbox` table, which admins read in the portal.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from aiohttp import web

from server.settings import Settings, SettingsError

log = logging.getLogger("server.mail")

PRODUCT_NAME = "SFX Studio"


class MailSender(ABC):
    @abstractmethod
    async def send(self, to: str, subject: str, body: str) -> None:
        """Deliver a plain-text message; raises on failure so callers can decide what to tell the user."""


MAIL = web.AppKey("mail", MailSender)


class OutboxMailSender(MailSender):
    """Dev and test: the outbox table is the mailbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def send(self, to: str, subject: str, body: str) -> None:
        await self.pool.execute(
            "INSERT INTO mail_outbox (to_address, subject, body) VALUES ($1, $2, $3)", to, subject, body
        )
        log.info("mail kept in outbox", extra={"subject": subject})


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    sender: str

    @classmethod
    def from_url(cls, url: str, default_sender: str) -> "SmtpConfig":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise SettingsError("SMTP_URL must look like smtp://user:pass@host:port or smtps://...")
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=parts.scheme == "smtps",
            sender=query.get("from", [default_sender])[0],
        )


class SmtpMailSender(MailSender):
    """Production: smtplib is blocking, so each message is sent from the default executor."""

    def __init__(self, config: SmtpConfig, timeout: float = 20.0) -> None:
        self.config = config
        self.timeout = timeout

    async def send(self, to: str, subject: str, body: str) -> None:
        message = build_message(self.config.sender, to, subject, body)
        await asyncio.get_running_loop().run_in_executor(None, self._deliver, message)
        log.info("mail sent", extra={"subject": subject})

    def _deliver(self, message: EmailMessage) -> None:
        c = self.config
        context = ssl.create_default_context()
        if c.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            if not c.implicit_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, c.password or "")
            smtp.send_message(message)


def build_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((PRODUCT_NAME, sender))
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message.set_content(body)
    return message


def mail_sender_for(settings: Settings, pool: asyncpg.Pool) -> MailSender:
    if not settings.smtp_url:
        return OutboxMailSender(pool)
    host = urlsplit(settings.public_url).hostname or "localhost"
    return SmtpMailSender(SmtpConfig.from_url(settings.smtp_url, default_sender=f"no-reply@{host}"))


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    to_address: str
    subject: str
    body: str
    created_at: datetime


async def outbox(conn_or_pool: asyncpg.Pool | asyncpg.Connection, *, to: str | None = None, limit: int = 50) -> list[OutboxMessage]:
    rows = await conn_or_pool.fetch(
        """SELECT id, to_address::text AS to_address, subject, body, created_at FROM mail_outbox
            WHERE ($1::text IS NULL OR to_address ILIKE '%' || $1 || '%')
            ORDER BY id DESC LIMIT $2""",
        to or None,
        limit,
    )
    return [OutboxMessage(**dict(r)) for r in rows]


async def outbox_message(conn_or_pool: asyncpg.Pool | asyncpg.Connection, message_id: int) -> OutboxMessage | None:
    row = await conn_or_pool.fetchrow(
        "SELECT id, to_address::text AS to_address, subject, body, created_at FROM mail_outbox WHERE id = $1",
        message_id,
    )
    return OutboxMessage(**dict(row)) if row else None
