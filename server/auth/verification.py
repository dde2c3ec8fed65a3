"""Sign-up that does not tell who is a customer, and proof that an address belongs to its account.

Signing up answers the same way whether or not the address has an account: a new address gets
an account and a verification link, a registered one gets a "you already have an account" mail.
Both paths hash a password and send one mail, so neither the answer nor its timing tells them apart.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

import asyncpg

from server.auth import repo
from server.auth.service import EmailTaken, _create_account, get_account, normalise_email
from server.mail import MailSender
from server.settings import Settings

log = logging.getLogger("server.auth.verification")

VERIFY_TTL = 3 * 86400
# Links per account and hour; more send nothing (the inbox is not a target).
MAX_LINKS_PER_HOUR = 5

SIGNUP_ANSWER = (
    "Check your inbox: we sent a message to finish setting up your account. "
    "Follow its link to confirm the address."
)


@dataclass(frozen=True)
class Verified:
    user_id: uuid.UUID
    email: str


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _link(settings: Settings, path: str, **query: str) -> str:
    query = {k: v for k, v in query.items() if v}
    return f"{settings.public_url.rstrip('/')}{path}" + (f"?{urlencode(query)}" if query else "")


async def sign_up(pool: asyncpg.Pool, settings: Settings, mail: MailSender, email: str, password: str, *, plan: str = "") -> None:
    """Create the account and mail its verification link, or mail the holder of a registered address.
    PolicyViolation (422) for a bad email or password; nothing else tells the two cases apart.
    `plan` rides along in the link, so a plan chosen on /pricing reaches checkout after verification."""
    try:
        account = await _create_account(pool, settings, email, password, "user")
    except EmailTaken:
        await _mail_existing(pool, settings, mail, normalise_email(email, settings, strict=True), plan)
        return
    await send_link(pool, settings, mail, account.id, plan=plan, force=True)


async def _mail_existing(pool: asyncpg.Pool, settings: Settings, mail: MailSender, email: str, plan: str) -> None:
    row = await repo.user_by_email(pool, email)
    if row is None or row["status"] != "active":
        # A deleted or suspended account gets nothing; the answer to the form is unchanged.
        log.info("sign-up for an unusable registered address ignored")
        return
    if row["email_verified_at"] is None and await send_link(pool, settings, mail, row["id"], plan=plan):
        return
    body = (
        "Hello,\n\n"
        "Someone (hopefully you) tried to create an SFX Studio account with this address, but you already have one.\n\n"
        f"Sign in: {_link(settings, '/signin')}\n"
        f"Forgot the password? Choose a new one: {_link(settings, '/forgot-password')}\n\n"
        "If this was not you, ignore this message: nothing has changed.\n\n— SFX Studio\n"
    )
    await _send(mail, row["email"], "You already have an SFX Studio account", body)


async def send_link(
    pool: asyncpg.Pool, settings: Settings, mail: MailSender, user_id: uuid.UUID, *, plan: str = "", force: bool = False
) -> bool:
    """Mail a fresh verification link to the account's current address; False when none was sent
    (already verified, or MAX_LINKS_PER_HOUR reached unless `force`)."""
    account = await get_account(pool, user_id)
    if account is None or account.status != "active" or account.email_verified:
        return False
    if not force and await repo.recent_verification_tokens(pool, user_id, 3600) >= MAX_LINKS_PER_HOUR:
        log.info("verification link not sent: too many this hour", extra={"user_id": str(user_id)})
        return False
    token = secrets.token_urlsafe(32)
    await repo.insert_verification_token(pool, user_id, account.email, hash_token(token), VERIFY_TTL)
    body = (
        "Hello,\n\n"
        "Confirm that this is your address to start generating sound effects and voice-overs with SFX Studio:\n\n"
        f"{_link(settings, '/verify-email', token=token, plan=plan)}\n\n"
        f"The link works once, for {VERIFY_TTL // 86400} days. If you did not sign up, ignore this message.\n\n"
        "— SFX Studio\n"
    )
    await _send(mail, account.email, "Confirm your email for SFX Studio", body)
    log.info("verification link sent", extra={"user_id": str(user_id)})
    return True


async def _send(mail: MailSender, to: str, subject: str, body: str) -> None:
    try:
        await mail.send(to, subject, body)
    except Exception:
        # The sign-up stands either way; the account page offers a new link.
        log.exception("verification mail could not be sent")


async def verify(pool: asyncpg.Pool, token: str) -> Verified | None:
    """Spend a link: the account's current address is verified. None for an unknown, used or
    expired link, or one sent to an address the account no longer has."""
    if not token:
        return None
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.claim_verification_token(conn, hash_token(token))
        if row is None:
            return None
        await repo.mark_email_verified(conn, row["user_id"])
    log.info("email verified", extra={"user_id": str(row["user_id"])})
    return Verified(row["user_id"], row["email"])


async def mark_verified(db: repo.Db, user_id: uuid.UUID) -> None:
    """For accounts an operator vouches for (and tests): verified without a link."""
    await repo.mark_email_verified(db, user_id)

