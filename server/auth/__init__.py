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
from server.auth.throttle import LoginThrottle, SignupThrottle

__all__ = ["CurrentUser", "LoginThrottle", "SignupThrottle", "authenticate", "create_user", "require_admin", "verify_credentials"]
