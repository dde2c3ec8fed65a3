"""Forgotten passwords: one-time, expiring reset links, stored only as hashes.

Requesting a link answers the same way whether or not the email has an account, so the
form cannot be used to find out who is a customer.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid

import asyncpg

from portal import repo
from server.audit import audit
from server.auth import passwords as auth_passwords
from server.auth import service as auth
from server.mail import MailSender
from server.settings import Settings

log = logging.getLogger("portal.passwords")

RESET_TTL = 3600
# More requests than this per account and hour send nothing new: the inbox is not a target.
MAX_RESETS_PER_HOUR = 3


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def request_reset(pool: asyncpg.Pool, settings: Settings, mail: MailSender, email: str) -> None:
    account = await auth.find_account(pool, settings, email)
    if account is None or account.status != "active":
        log.info("password reset requested for no usable account")
        return
    if await repo.recent_reset_requests(pool, account.id, 3600) >= MAX_RESETS_PER_HOUR:
        log.info("password reset request ignored: too many this hour", extra={"user_id": str(account.id)})
        return
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        # Only the newest link works: an older one sitting in a mailbox is worthless.
        await repo.retire_reset_tokens(conn, account.id)
        await repo.insert_reset_token(conn, account.id, hash_token(token), RESET_TTL)
    link = f"{settings.public_url.rstrip('/')}/reset-password?token={token}"
    await mail.send(account.email, "Reset your SFX Studio password", reset_mail_body(link))
    log.info("password reset link sent", extra={"user_id": str(account.id)})


def reset_mail_body(link: str) -> str:
    minutes = RESET_TTL // 60
    return (
        "Hello,\n\n"
        "Someone (hopefully you) asked to reset the password of your SFX Studio account.\n"
        f"Open this link within {minutes} minutes to choose a new password:\n\n"
        f"{link}\n\n"
        "The link works once. If you did not ask for it, ignore this message: your password stays as it is.\n\n"
        "— SFX Studio\n"
    )


async def token_email(pool: asyncpg.Pool, token: str) -> str | None:
    """The account email a live token belongs to, or None when the token is unknown, used or expired."""
    if not token:
        return None
    row = await repo.live_reset_token(pool, hash_token(token))
    return row["email"] if row else None


class ResetTokenInvalid(Exception):
    pass


async def reset_password(pool: asyncpg.Pool, settings: Settings, token: str, password: str) -> uuid.UUID:
    """Spends the token and sets the password (policy-checked, every device signed out).
    Raises ResetTokenInvalid, or auth.PolicyViolation with the token left unspent."""
    email = await token_email(pool, token)
    if email is None:
        raise ResetTokenInvalid()
    problems = auth_passwords.policy_problems(password, email)
    if problems:
        raise auth.PolicyViolation(problems)
    async with pool.acquire() as conn, conn.transaction():
        user_id = await repo.claim_reset_token(conn, hash_token(token))
        if user_id is None:
            raise ResetTokenInvalid()
        await auth.set_password(conn, settings, user_id, password)
        await repo.retire_reset_tokens(conn, user_id)
        await audit(conn, user_id, "user.password_reset", "user", user_id, {})
    return user_id
