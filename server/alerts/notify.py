"""Telling the people running the service: mail to the alert addresses (or every active admin)
and, when ALERT_WEBHOOK_URL is set, a JSON post a chat tool understands ({"text": ...})."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import aiohttp
import asyncpg

from server.alerts import repo
from server.mail import PRODUCT_NAME, MailSender
from server.settings import Settings

log = logging.getLogger("server.alerts.notify")

TITLES = {
    "key_invalid": "Provider key disabled as invalid",
    "key_exhausted": "Provider key out of quota",
    "pool_low": "Provider quota running out",
    "all_cooling": "Every provider key cooling down",
}


class Notifier:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, mail: MailSender, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.pool = pool
        self.mail = mail
        self.http = http

    async def recipients(self) -> list[str]:
        configured = [a.strip() for a in self.settings.alert_emails.split(",") if a.strip()]
        return configured or await repo.admin_addresses(self.pool)

    async def incident(self, row: asyncpg.Record, *, cleared: bool) -> None:
        subject, text = incident_text(row, cleared=cleared, admin_url=self.settings.public_url.rstrip("/") + "/admin/keys")
        # Each channel on its own: a broken webhook must not keep the mail from going out.
        for address in await self.recipients():
            try:
                await self.mail.send(address, subject, text)
            except Exception:
                log.error("alert mail failed", exc_info=True, extra={"kind": row["kind"]})
        if self.settings.alert_webhook_url:
            await self.post_webhook(f"*{subject}*\n{text}")

    async def post_webhook(self, text: str) -> None:
        try:
            async with asyncio.timeout(10):
                async with self.http.post(self.settings.alert_webhook_url, json={"text": text}) as resp:
                    if resp.status >= 300:
                        log.error("alert webhook refused", extra={"status": resp.status})
        except Exception as exc:
            # The URL carries the chat tool's token: never logged, not even in the exception.
            log.error("alert webhook failed", extra={"error": type(exc).__name__})


def incident_text(row: asyncpg.Record, *, cleared: bool, admin_url: str) -> tuple[str, str]:
    title = TITLES.get(row["kind"], row["kind"])
    opened: datetime = row["opened_at"]
    if cleared:
        lasted = (row["cleared_at"] or datetime.now(timezone.utc)) - opened
        minutes = max(1, round(lasted.total_seconds() / 60))
        subject = f"[{PRODUCT_NAME}] CLEARED: {title}"
        text = (f"Cleared: {row['summary']}\n"
                f"Opened {opened:%Y-%m-%d %H:%M} UTC, cleared {row['cleared_at']:%Y-%m-%d %H:%M} UTC "
                f"(about {minutes} min).\nKey bank: {admin_url}\n")
    else:
        subject = f"[{PRODUCT_NAME}] ALERT: {title}"
        text = (f"{row['summary']}\nSince {opened:%Y-%m-%d %H:%M} UTC. You will get one more message when it clears.\n"
                f"Key bank: {admin_url}\n")
    return subject, text
