"""HTTP for sign-in and devices: parse, call the service, shape the answer."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

import pydantic
from aiohttp import web

from server.appkeys import DB, METRICS, REDIS, SETTINGS
from server.auth import service, verification
from server.auth.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from server.auth.passwords import MIN_LENGTH as MIN_PASSWORD_LENGTH
from server.auth.throttle import LoginThrottle, SignupThrottle
from server.mail import MAIL
from server.web.api import ApiModel, ApiRoutes, NonBlank, json_response
from server.web.errors import NotFound, TooManyRequests, Unauthorized

log = logging.getLogger("server.auth")

api = ApiRoutes("auth")


# --- models -----------------------------------------------------------------------

class AuthRequest(ApiModel):
    # Whitespace is part of a password; emails and names are trimmed by the service.
    model_config = pydantic.ConfigDict(str_strip_whitespace=False)


Email = Annotated[NonBlank, pydantic.Field(min_length=1, max_length=service.MAX_EMAIL_LENGTH, json_schema_extra={"format": "email"})]
DeviceName = Annotated[
    NonBlank,
    pydantic.StringConstraints(strip_whitespace=True, min_length=1, max_length=service.MAX_DEVICE_NAME),
    pydantic.Field(description="Shown in the device list, e.g. 'Premiere Pro on Edit Suite 2'"),
]


class RegisterRequest(AuthRequest):
    email: Email
    password: str = pydantic.Field(
        min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
        description=f"At least {MIN_PASSWORD_LENGTH} characters, and not the email address",
    )
    device_name: DeviceName | None = pydantic.Field(
        default=None, description="Ignored (kept for older clients): sign in with /v1/auth/login once the address is confirmed"
    )


class SignupAccepted(pydantic.BaseModel):
    message: str = pydantic.Field(description="What to do next: follow the link mailed to the address")


class LoginRequest(AuthRequest):
    email: Email
    password: str = pydantic.Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    device_name: DeviceName


class RefreshRequest(AuthRequest):
    refresh_token: str = pydantic.Field(min_length=1, max_length=200)


class LogoutRequest(AuthRequest):
    refresh_token: str | None = pydantic.Field(
        default=None, max_length=200, description="Signs out this token's device; without it, the access token's device"
    )


class UserOut(pydantic.BaseModel):
    id: uuid.UUID
    email: str
    role: Literal["user", "admin"]
    status: str
    created_at: datetime
    last_login_at: datetime | None


class TokenResponse(pydantic.BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = pydantic.Field(description="Seconds until the access token expires")
    refresh_expires_in: int = pydantic.Field(description="Seconds until the refresh token expires")
    device_id: uuid.UUID
    user: UserOut


class DeviceOut(pydantic.BaseModel):
    id: uuid.UUID
    name: str
    user_agent: str | None
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool = pydantic.Field(description="True for the device making this request")


class DeviceList(pydantic.BaseModel):
    devices: list[DeviceOut]


# Token answers must never sit in a shared cache (RFC 6749 section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_response(tokens: service.IssuedTokens, status: int = 200) -> web.Response:
    a = tokens.account
    body = TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.access_expires_in,
        refresh_expires_in=tokens.refresh_expires_in,
        device_id=tokens.session_id,
        user=UserOut(id=a.id, email=a.email, role=a.role, status=a.status, created_at=a.created_at, last_login_at=a.last_login_at),
    )
    return json_response(body, status=status, headers=NO_STORE)


def device_info(request: web.Request, name: str | None) -> service.DeviceInfo:
    return service.DeviceInfo.build(name, request.headers.get("User-Agent"), request.remote)


# --- routes ---------------------------------------------------------------------------

@api.post(
    "/v1/auth/register", summary="Create an account; a link mailed to the address confirms it", body=RegisterRequest,
    response=SignupAccepted, status=202, auth=False,
    responses={"202": {"description": "The same answer whether or not the address already has an account "
                                      "(that holder is mailed instead); sign in after following the link"},
               "422": {"description": "validation_failed (email or password policy)"},
               "429": {"description": "rate_limited: too many sign-ups from this address (Retry-After)"}},
)
async def register(request: web.Request, body: RegisterRequest) -> web.Response:
    await SignupThrottle(request.app[REDIS], request.app[SETTINGS]).attempt(request.remote)
    await verification.sign_up(request.app[DB], request.app[SETTINGS], request.app[MAIL], body.email, body.password)
    return json_response(SignupAccepted(message=verification.SIGNUP_ANSWER), status=202, headers=NO_STORE)


@api.post(
    "/v1/auth/login", summary="Sign a device in with email and password", body=LoginRequest,
    response=TokenResponse, auth=False,
    responses={"401": {"description": "invalid_credentials or account_suspended"},
               "429": {"description": "rate_limited: too many failures for this account or address (Retry-After)"}},
)
async def login(request: web.Request, body: LoginRequest) -> web.Response:
    settings = request.app[SETTINGS]
    throttle = LoginThrottle(request.app[REDIS], settings)
    outcomes = request.app[METRICS].logins
    try:
        tokens = await service.login(
            request.app[DB], settings, throttle, body.email, body.password, device_info(request, body.device_name)
        )
    except TooManyRequests:
        outcomes.labels("throttled").inc()
        raise
    except Unauthorized as exc:
        outcomes.labels(exc.code).inc()
        raise
    outcomes.labels("success").inc()
    return token_response(tokens)


@api.post(
    "/v1/auth/refresh", summary="Trade a refresh token for a new token pair", body=RefreshRequest,
    response=TokenResponse, auth=False,
    responses={"401": {"description": "invalid_token, session_revoked, account_suspended, or refresh_token_reused "
                                      "(the device session is then revoked)"}},
)
async def refresh(request: web.Request, body: RefreshRequest) -> web.Response:
    tokens = await service.refresh(
        request.app[DB], request.app[SETTINGS], body.refresh_token,
        user_agent=request.headers.get("User-Agent"), ip=request.remote,
    )
    return token_response(tokens)


@api.post(
    "/v1/auth/logout", summary="Sign a device out (by refresh token, else by the access token)", body=LogoutRequest,
    status=204, auth=False, responses={"204": {"description": "Signed out (also when it already was)"}},
)
async def logout(request: web.Request, body: LogoutRequest) -> web.Response:
    access_token = service.bearer_token(request) if not body.refresh_token else None
    await service.logout(request.app[DB], request.app[SETTINGS], refresh_token=body.refresh_token, access_token=access_token)
    return web.Response(status=204)


@api.get("/v1/devices", summary="Devices signed in to this account", response=DeviceList)
async def devices(request: web.Request) -> web.Response:
    user = await service.authenticate(request)
    found = await service.list_devices(request.app[DB], user)
    return json_response(DeviceList(devices=[DeviceOut(**vars(d)) for d in found]))


@api.delete(
    "/v1/devices/{device_id}", summary="Sign one of this account's devices out", status=204,
    responses={"204": {"description": "Signed out"}, "404": {"description": "No such device on this account"}},
)
async def revoke_device(request: web.Request) -> web.Response:
    user = await service.authenticate(request)
    try:
        device_id = uuid.UUID(request.match_info["device_id"])
    except ValueError:
        raise NotFound("No such device") from None
    await service.revoke_device(request.app[DB], user, device_id)
    return web.Response(status=204)
