"""Accounts and panel sign-in: users, device sessions, access and refresh tokens, login throttling.

Other domains use `authenticate(request)` and `require_admin(request)` (server.auth.service).
"""

from server.auth.service import (
    CurrentUser,
    authenticate,
    create_user,
    require_admin,
    verify_credentials,
)
from server.auth.throttle import LoginThrottle

__all__ = ["CurrentUser", "LoginThrottle", "authenticate", "create_user", "require_admin", "verify_credentials"]
