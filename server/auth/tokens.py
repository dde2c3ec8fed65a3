"""Access tokens (short-lived JWTs) and refresh tokens (random, opaque, stored hashed).

The algorithm is fixed here, never read from the token: a token claiming `alg: none` or any
algorithm but HS256 is refused. The `kid` header picks the verifying secret among those
configured, so a new secret can sign while tokens signed by the previous one stay valid until
its kid is removed from JWT_SECRETS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from server.settings import Settings
from server.web.errors import Unauthorized

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "sid", "jti", "iat", "exp", "iss", "aud"]
# Servers' clocks may disagree by a few seconds; more than that is a bad token.
LEEWAY_SECONDS = 5
MAX_TOKEN_LENGTH = 4096


class BearerRejected(Unauthorized):
    """A 401 that tells RFC 6750 clients the bearer token itself is the problem."""

    def __init__(self, message: str, **kw) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(message, **kw)


class TokenExpired(BearerRejected):
    code = "token_expired"


class InvalidToken(BearerRejected):
    code = "invalid_token"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    token_id: str
    expires_at: int


def issue_access_token(settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "iat": issued,
        "exp": issued + settings.access_token_ttl,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    kid = settings.jwt_active_kid
    return jwt.encode(claims, settings.jwt_keys[kid], algorithm=ALGORITHM, headers={"kid": kid})


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verified claims, or TokenExpired / InvalidToken (one message for every kind of bad token)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("The access token is not valid")
    header = _unverified_header(token)
    key = settings.jwt_keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
    if key is None or header.get("alg") != ALGORITHM:
        raise InvalidToken("The access token is not valid")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired("The access token has expired; refresh it") from None
    except (jwt.InvalidTokenError, ValueError, TypeError, AttributeError):
        raise InvalidToken("The access token is not valid") from None


class VerifiedTokens:
    """Claims of access tokens this process has verified, kept until the token expires.

    A panel sends the same access token with every request for its lifetime; checking its
    signature and claims again each time was CPU spent on an answer already known. Only the
    signature check is remembered: revocation and the account's status are still read on every
    request (auth.service.user_for_claims). Bounded: the oldest entries go first.
    """

    def __init__(self, settings: Settings, max_entries: int = 10_000) -> None:
        self._settings = settings
        self._max = max_entries
        self._claims: dict[str, AccessClaims] = {}

    def decode(self, token: str) -> AccessClaims:
        claims = self._claims.get(token)
        if claims is not None:
            if time.time() < claims.expires_at:
                return claims
            del self._claims[token]
        claims = decode_access_token(self._settings, token)  # raises for a bad token: nothing kept
        if len(self._claims) >= self._max:
            del self._claims[next(iter(self._claims))]
        self._claims[token] = claims
        return claims


def _unverified_header(token: str) -> dict:
    """The header, only to pick the verifying secret; jwt.decode then checks the whole token.
    (PyJWT's own get_unverified_header validates every segment character by character in
    Python, which decode does again: twice per API request.)"""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidToken("The access token is not valid") from None
    if not isinstance(header, dict):
        raise InvalidToken("The access token is not valid")
    return header


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
