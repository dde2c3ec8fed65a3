"""Accounts and panel sign-in: users, device sessions, access and refresh tokens, login throttling.

Other domains use `authenticate(request)` and `require_admin(request)` (server.auth.service).
"""

import logging

from aiohttp import web

from server.appkeys import AUTHENTICATE, DB, SETTINGS
from server.auth.tokens import VerifiedTokens

# Access tokens this process has verified (auth.tokens.VerifiedTokens). Declared before the
# service module is imported: it reads this key.
VERIFIED_TOKENS = web.AppKey("verified_tokens", VerifiedTokens)

from server.auth.service import (  # noqa: E402
    CurrentUser,
    authenticate,
    create_user,
    require_admin,
    verify_credentials,
)
from server.auth.throttle import LoginThrottle, SignupThrottle  # noqa: E402
from server.periodic import periodic_ctx  # noqa: E402

__all__ = ["CurrentUser", "LoginThrottle", "SignupThrottle", "authenticate", "create_user", "require_admin",
           "setup", "verify_credentials"]

log = logging.getLogger("server.auth")

# Expired refresh tokens are deleted this often (every process does it; the delete is idempotent).
PRUNE_INTERVAL_SECONDS = 3600


def setup(app: web.Application) -> None:
    from server.auth.handlers import api
    from server.auth.service import prune_expired_tokens

    async def prune(app: web.Application) -> None:
        removed = await prune_expired_tokens(app[DB])
        if removed:
            log.info("expired refresh tokens deleted", extra={"count": removed})

    app[AUTHENTICATE] = authenticate
    app[VERIFIED_TOKENS] = VerifiedTokens(app[SETTINGS])
    api.register(app)
    app.cleanup_ctx.append(periodic_ctx("auth-prune-tokens", lambda app: PRUNE_INTERVAL_SECONDS, prune, jitter=(1.0, 1.0)))
