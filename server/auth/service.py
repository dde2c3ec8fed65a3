"""Accounts and sign-in: the rules, independent of HTTP.

Every other domain authenticates through `authenticate(request)` / `require_admin(request)`.
The rest takes a pool (or connection) and settings, so it runs the same from a handler, the
CLI or a test.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import email_validator
from aiohttp import web

from server.appkeys import DB, SETTINGS
from server.audit import audit
from server.auth import VERIFIED_TOKENS, passwords, repo
from server.auth.throttle import LoginThrottle
from server.auth.tokens import (
    AccessClaims,
    BearerRejected,
    InvalidToken,
    decode_access_token,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
)
from server.settings import Settings
from server.web.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed, fields_message

log = logging.getLogger("server.auth")

ROLES = ("user", "admin")
STATUSES = ("active", "suspended")
MAX_EMAIL_LENGTH = 320
MAX_DEVICE_NAME = 100
MAX_USER_AGENT = 300
DEFAULT_DEVICE_NAME = "Unnamed device"


# --- errors ---------------------------------------------------------------------

class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class AccountSuspended(BearerRejected):
    code = "account_suspended"


class SessionRevoked(BearerRejected):
    code = "session_revoked"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"


class EmailTaken(Conflict):
    code = "email_taken"


class EmailNotVerified(Forbidden):
    code = "email_not_verified"


class WrongPassword(Exception):
    """The current password, asked again before a sensitive change, was wrong."""


class PolicyViolation(ValidationFailed):
    """422 whose details list the failing fields, like a request-model validation error."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__(fields_message(problems), details={"fields": problems})
        self.problems = problems


# --- values -----------------------------------------------------------------------

@dataclass(frozen=True)
class CurrentUser:
    id: uuid.UUID
    email: str
    role: str
    status: str
    session_id: uuid.UUID | None
    # Generation waits for a proven address (see require_verified_email).
    email_verified: bool = field(default=False, compare=False)
    # The account's plan when the request was authenticated (None where it was not read).
    plan_code: str | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    role: str
    status: str
    created_at: datetime
    last_login_at: datetime | None
    email_verified: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Account":
        return cls(row["id"], row["email"], row["role"], row["status"], row["created_at"], row["last_login_at"],
                   row["email_verified_at"] is not None)


@dataclass(frozen=True)
class DeviceInfo:
    """What we record about the device a session is opened from."""

    name: str = DEFAULT_DEVICE_NAME
    user_agent: str | None = None
    ip: str | None = None

    @classmethod
    def build(cls, name: str | None, user_agent: str | None, ip: str | None) -> "DeviceInfo":
        return cls(
            name=(name or "").strip()[:MAX_DEVICE_NAME] or DEFAULT_DEVICE_NAME,
            user_agent=(user_agent or "").strip()[:MAX_USER_AGENT] or None,
            ip=_valid_ip(ip),
        )


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: uuid.UUID
    account: Account


@dataclass(frozen=True)
class Device:
    id: uuid.UUID
    name: str
    user_agent: str | None
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


def _valid_ip(raw: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(raw)) if raw else None
    except ValueError:
        return None


# --- emails and accounts ------------------------------------------------------------

def normalise_email(raw: str, settings: Settings, *, strict: bool) -> str:
    """Lower-cased canonical form. `strict` raises PolicyViolation for a malformed address; sign-in
    uses strict=False so a malformed address just matches nobody."""
    raw = raw.strip()
    try:
        if len(raw) > MAX_EMAIL_LENGTH:
            raise email_validator.EmailNotValidError("The email address is too long")
        info = email_validator.validate_email(
            raw, check_deliverability=False, test_environment=not settings.is_production
        )
        return info.normalized.lower()
    except email_validator.EmailNotValidError as exc:
        if strict:
            raise PolicyViolation([{"field": "email", "location": "body", "message": str(exc), "type": "email_invalid"}]) from None
        return raw.lower()


async def create_user(
    db: repo.Db, settings: Settings, email: str, password: str, role: str = "user", *, verified: bool = False
) -> uuid.UUID:
    """A new active account. PolicyViolation (422) for a bad email or password, EmailTaken (409).
    `verified` is for accounts an operator vouches for (create-admin, demo accounts)."""
    account = await _create_account(db, settings, email, password, role, verified=verified)
    return account.id


async def _create_account(
    db: repo.Db, settings: Settings, email: str, password: str, role: str, *, verified: bool = False
) -> Account:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    problems = []
    try:
        email = normalise_email(email, settings, strict=True)
    except PolicyViolation as exc:
        problems.extend(exc.problems)
    problems.extend(passwords.policy_problems(password, email))
    if problems:
        raise PolicyViolation(problems)
    password_hash = await passwords.hash_password(password, settings.bcrypt_cost)
    try:
        row = await repo.insert_user(db, email, password_hash, role, verified)
    except asyncpg.UniqueViolationError:
        raise EmailTaken("An account with this email already exists", details={"field": "email"}) from None
    log.info("account created", extra={"user_id": str(row["id"]), "role": role})
    return Account.from_row(row)


async def get_account(db: repo.Db, user_id: uuid.UUID) -> Account | None:
    row = await repo.user_by_id(db, user_id)
    return Account.from_row(row) if row else None


async def find_account(db: repo.Db, settings: Settings, email: str) -> Account | None:
    row = await repo.user_by_email(db, normalise_email(email, settings, strict=False))
    return Account.from_row(row) if row else None


async def set_role(db: repo.Db, user_id: uuid.UUID, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not await repo.set_role(db, user_id, role):
        raise NotFound("No such user")


async def set_status(db: repo.Db, user_id: uuid.UUID, status: str) -> None:
    """Suspension takes effect at the next request: authenticate() reads the status every time."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    if not await repo.set_status(db, user_id, status):
        raise NotFound("No such user")
    log.info("account status changed", extra={"user_id": str(user_id), "status": status})


async def set_password(db: repo.Db, settings: Settings, user_id: uuid.UUID, password: str) -> None:
    """New password (policy-checked); every device session is signed out, as after a reset."""
    row = await repo.user_by_id(db, user_id)
    if row is None:
        raise NotFound("No such user")
    problems = passwords.policy_problems(password, row["email"])
    if problems:
        raise PolicyViolation(problems)
    await repo.set_password_hash(db, user_id, await passwords.hash_password(password, settings.bcrypt_cost))
    revoked = await repo.revoke_user_sessions(db, user_id, "password_change")
    log.info("password changed", extra={"user_id": str(user_id), "sessions_revoked": revoked})


async def check_password(db: repo.Db, settings: Settings, user_id: uuid.UUID, password: str) -> None:
    """WrongPassword unless `password` is the account's current one."""
    row = await repo.user_by_id(db, user_id)
    if not await passwords.check_password(password, row["password_hash"] if row else None, settings.bcrypt_cost):
        raise WrongPassword()


async def change_password(pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, current: str, new: str) -> None:
    """Self-service: the current password first; every device is signed out (browsers are the caller's)."""
    await check_password(pool, settings, user_id, current)
    async with pool.acquire() as conn, conn.transaction():
        await set_password(conn, settings, user_id, new)
        await audit(conn, user_id, "user.password_changed", "user", user_id, {})


async def change_email(
    pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, new_email: str, password: str
) -> tuple[str, str]:
    """Returns (old, new); the new address starts unverified. Raises WrongPassword, PolicyViolation
    (bad address), ValidationFailed (unchanged) or EmailTaken."""
    await check_password(pool, settings, user_id, password)
    email = normalise_email(new_email, settings, strict=True)
    async with pool.acquire() as conn, conn.transaction():
        old = (await repo.user_by_id(conn, user_id))["email"]
        if email == old:
            raise ValidationFailed("That is already your email", details={"field": "email"})
        if await repo.email_taken(conn, email, user_id):
            raise EmailTaken("An account with this email already exists", details={"field": "email"})
        try:
            await repo.set_email(conn, user_id, email)
        except asyncpg.UniqueViolationError:
            raise EmailTaken("An account with this email already exists", details={"field": "email"}) from None
        # No addresses in the audit trail: it outlives account deletion.
        await audit(conn, user_id, "user.email_changed", "user", user_id, {})
    return old, email


def anonymous_email(user_id: uuid.UUID) -> str:
    return f"deleted-{user_id.hex}@deleted.invalid"


async def anonymise(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """The row stays (ledger and invoices point at it); nothing in it identifies the person any more,
    and no device, token or password can sign in to it again."""
    await repo.delete_user_sessions(conn, user_id)
    await repo.anonymise_user(conn, user_id, anonymous_email(user_id))


# --- credentials ---------------------------------------------------------------------

async def verify_credentials(db: repo.Db, settings: Settings, email: str, password: str) -> CurrentUser:
    """The account for this email and password, or InvalidCredentials; the same answer and about
    the same time whether or not the email exists. A suspended account is refused only once its
    password has been proven, so the refusal reveals nothing to a guesser."""
    row = await repo.user_by_email(db, normalise_email(email, settings, strict=False))
    live = row is not None and row["status"] != "deleted"
    stored_hash = row["password_hash"] if live else None
    if not await passwords.check_password(password, stored_hash, settings.bcrypt_cost):
        raise InvalidCredentials("The email or password is incorrect")
    if row["status"] == "suspended":
        raise AccountSuspended("This account is suspended; contact support")
    await repo.record_login(db, row["id"])
    if passwords.needs_rehash(stored_hash, settings.bcrypt_cost):
        await repo.replace_password_hash(db, row["id"], stored_hash, await passwords.hash_password(password, settings.bcrypt_cost))
    return CurrentUser(row["id"], row["email"], row["role"], row["status"], None, row["email_verified_at"] is not None)


async def login(
    pool: asyncpg.Pool, settings: Settings, throttle: LoginThrottle, email: str, password: str, device: DeviceInfo
) -> IssuedTokens:
    """Throttled sign-in that opens a device session. Unknown email and wrong password count alike."""
    email = normalise_email(email, settings, strict=False)
    await throttle.check(email, device.ip)
    try:
        user = await verify_credentials(pool, settings, email, password)
    except InvalidCredentials:
        await throttle.failed(email, device.ip)
        log.info("sign-in failed", extra={"ip": device.ip})
        raise
    await throttle.succeeded(email, device.ip)
    account = await get_account(pool, user.id)
    tokens = await open_session(pool, settings, account, device)
    log.info("signed in", extra={"user_id": str(user.id), "session_id": str(tokens.session_id), "ip": device.ip})
    return tokens



# --- sessions and tokens ----------------------------------------------------------------

async def open_session(pool: asyncpg.Pool, settings: Settings, account: Account, device: DeviceInfo) -> IssuedTokens:
    refresh_token = new_refresh_token()
    async with pool.acquire() as conn, conn.transaction():
        session_id = await repo.insert_session(
            conn, account.id, device.name, device.user_agent, device.ip, settings.refresh_token_ttl
        )
        await repo.insert_refresh_token(conn, session_id, hash_refresh_token(refresh_token), settings.refresh_token_ttl)
    return _issue(settings, account, session_id, refresh_token)


def _issue(settings: Settings, account: Account, session_id: uuid.UUID, refresh_token: str) -> IssuedTokens:
    return IssuedTokens(
        access_token=issue_access_token(settings, account.id, session_id),
        access_expires_in=settings.access_token_ttl,
        refresh_token=refresh_token,
        refresh_expires_in=settings.refresh_token_ttl,
        session_id=session_id,
        account=account,
    )


async def refresh(
    pool: asyncpg.Pool, settings: Settings, refresh_token: str, *, user_agent: str | None = None, ip: str | None = None
) -> IssuedTokens:
    """Trades a refresh token for a new pair; the old one is spent. Spending is a conditional
    update, so two concurrent refreshes with one token cannot both succeed; the loser is treated
    like any reuse of a spent token: the whole device session is revoked."""
    token_hash = hash_refresh_token(refresh_token)
    device = DeviceInfo.build(None, user_agent, ip)
    async with pool.acquire() as conn:
        async with conn.transaction():
            claimed = await repo.claim_refresh_token(conn, token_hash)
            if claimed is not None:
                return await _rotate(conn, settings, claimed["session_id"], device)
        raise await _why_unclaimable(conn, token_hash)


async def _rotate(conn: asyncpg.Connection, settings: Settings, session_id: uuid.UUID, device: DeviceInfo) -> IssuedTokens:
    # Raising here rolls the claim back: the token stays unspent for when the account is usable again.
    session = await repo.lock_session(conn, session_id)
    if session is None or session["revoked_at"] is not None:
        raise SessionRevoked("This device was signed out; sign in again")
    _require_usable_status(session["status"])
    new_token = new_refresh_token()
    await repo.insert_refresh_token(conn, session_id, hash_refresh_token(new_token), settings.refresh_token_ttl)
    await repo.touch_session(conn, session_id, device.user_agent, device.ip, settings.refresh_token_ttl)
    account = Account.from_row(await repo.user_by_id(conn, session["user_id"]))
    return _issue(settings, account, session_id, new_token)


async def _why_unclaimable(conn: asyncpg.Connection, token_hash: bytes) -> Unauthorized:
    """The error for a token that could not be spent; a spent one also costs its session."""
    state = await repo.refresh_token_state(conn, token_hash)
    if state is None or state["used_at"] is None:
        return InvalidToken("The refresh token is not valid or has expired; sign in again")
    revoked_now = await repo.revoke_session(conn, state["session_id"], "reuse")
    log.warning(
        "spent refresh token presented again; device session revoked",
        extra={"session_id": str(state["session_id"]), "revoked_now": revoked_now},
    )
    return RefreshTokenReused("This refresh token was already used; the device has been signed out for safety")


def _require_usable_status(status: str) -> None:
    if status == "suspended":
        raise AccountSuspended("This account is suspended; contact support")
    if status != "active":
        raise InvalidToken("This account no longer exists")


async def logout(pool: asyncpg.Pool, settings: Settings, *, refresh_token: str | None, access_token: str | None) -> None:
    """Ends the device session named by the refresh token, else by the access token. Signing out
    twice is not an error; a bad access token (with no refresh token) is."""
    if refresh_token:
        state = await repo.refresh_token_state(pool, hash_refresh_token(refresh_token))
        if state is not None:
            await repo.revoke_session(pool, state["session_id"], "logout")
        return
    if not access_token:
        raise Unauthorized("Send the refresh token or an access token to sign out")
    claims = decode_access_token(settings, access_token)
    await repo.revoke_session(pool, claims.session_id, "logout", user_id=claims.user_id)


async def list_devices(db: repo.Db, user: CurrentUser) -> list[Device]:
    return [
        Device(
            id=r["id"], name=r["name"], user_agent=r["user_agent"], ip=r["ip"], created_at=r["created_at"],
            last_used_at=r["last_used_at"], expires_at=r["expires_at"], current=r["id"] == user.session_id,
        )
        for r in await repo.active_sessions(db, user.id)
    ]


async def revoke_device(db: repo.Db, user: CurrentUser, device_id: uuid.UUID) -> None:
    """Signs one of the user's devices out; revoking an already revoked one is fine, another user's is 404."""
    if await repo.revoke_session(db, device_id, "user", user_id=user.id):
        log.info("device signed out", extra={"user_id": str(user.id), "session_id": str(device_id)})
        return
    if await repo.session_owner(db, device_id) != user.id:
        raise NotFound("No such device")


async def revoke_all_devices(db: repo.Db, user_id: uuid.UUID, reason: str = "admin") -> int:
    return await repo.revoke_user_sessions(db, user_id, reason)


async def prune_expired_tokens(db: repo.Db) -> int:
    """Expired refresh tokens can never be redeemed; their rows only cost space."""
    return await repo.delete_expired_refresh_tokens(db)


# --- request authentication ----------------------------------------------------------------

CURRENT_USER = web.RequestKey("current_user", CurrentUser)


async def authenticate(request: web.Request) -> CurrentUser:
    """The signed-in user behind `Authorization: Bearer <access token>`, or Unauthorized (401).
    Checked on every request: the token, that the device session is not revoked, and that the
    account is active. The result is kept on the request, so calling this twice costs one query."""
    cached = request.get(CURRENT_USER)
    if cached is not None:
        return cached
    verified = request.config_dict.get(VERIFIED_TOKENS)
    token = bearer_token(request)
    claims = verified.decode(token) if verified is not None else decode_access_token(request.config_dict[SETTINGS], token)
    user = await user_for_claims(request.app[DB], claims)
    request[CURRENT_USER] = user
    return user


async def require_admin(request: web.Request) -> CurrentUser:
    user = await authenticate(request)
    if not user.is_admin:
        raise Forbidden("This needs an administrator account", code="admin_only")
    return user


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Sign in first: send Authorization: Bearer <access token>",
            headers={"WWW-Authenticate": 'Bearer realm="sfx-studio"'},
        )
    return token.strip()


async def user_for_claims(db: repo.Db, claims: AccessClaims) -> CurrentUser:
    row = await repo.principal(db, claims.user_id, claims.session_id)
    if row is None:
        raise InvalidToken("The access token is not valid")
    _require_usable_status(row["status"])
    if row["session_id"] is None or row["revoked_at"] is not None:
        raise SessionRevoked("This device was signed out; sign in again")
    return CurrentUser(row["id"], row["email"], row["role"], row["status"], row["session_id"], row["email_verified"],
                       row["plan_code"])


async def require_verified_email(request: web.Request) -> CurrentUser:
    """`authenticate`, and 403 email_not_verified until the account's address is proven: work that
    costs money (generation, assists) is not given to throwaway or mistyped addresses."""
    user = await authenticate(request)
    if not user.email_verified:
        raise EmailNotVerified(
            f"Confirm your email address first: open the link we sent to {user.email}. No mail? Sign in at "
            f"{request.app[SETTINGS].public_url.rstrip('/')}/dashboard and choose 'Resend verification'.",
            details={"email": user.email},
        )
    return user
