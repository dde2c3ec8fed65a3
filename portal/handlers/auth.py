"""Sign up, sign in, sign out, forgotten and reset passwords."""

from __future__ import annotations

import logging
import math
from urllib.parse import quote

from aiohttp import web

from portal import passwords
from portal.forms import field_errors, form_data
from portal.sessions import current_user, end_all_sessions, end_session, flash, get_session, start_session
from portal.web import error_page, redirect, render, require_user, safe_next, spawn
from server.appkeys import DB, REDIS, SETTINGS
from server.auth import service as auth
from server.auth import verification
from server.auth.throttle import LoginThrottle, SignupThrottle
from server.mail import MAIL
from server.web.errors import ApiError, TooManyRequests

log = logging.getLogger("portal.auth")

routes = web.RouteTableDef()


def client_ip(request: web.Request) -> str | None:
    return request.remote


def try_again_in(err: TooManyRequests) -> str:
    """A throttled form's advice, from the Retry-After the API would send."""
    minutes = max(1, math.ceil(int(err.details.get("retry_after", 60)) / 60))
    return f"Try again in {minutes} minute{'s' if minutes > 1 else ''}."


@routes.get("/signup", name="portal.signup")
async def signup_page(request: web.Request) -> web.Response:
    if await current_user(request):
        raise redirect("/dashboard")
    return await render(request, "signup.html", {"page_title": "Create your account", "form": {}, "errors": {}, "plan": chosen_plan(request.query.get("plan"))})


@routes.post("/signup", name="portal.signup-post")
async def signup(request: web.Request) -> web.Response:
    form = await form_data(request)
    plan = chosen_plan(form.get("plan"))
    errors: dict[str, str] = {}
    if form.get("password", "") != form.get("password_confirm", ""):
        errors["password_confirm"] = "The two passwords do not match"
    if not errors:
        try:
            await SignupThrottle(request.app[REDIS], request.app[SETTINGS]).attempt(client_ip(request))
        except TooManyRequests as err:
            response = await render(request, "signup.html", {
                "page_title": "Create your account", "form": {"email": form.get("email", "")}, "plan": plan,
                "errors": {"_form": f"Too many accounts were created from your network. {try_again_in(err)}"},
            }, status=429)
            response.headers.update(err.headers)
            return response
        settings = request.app[SETTINGS]
        try:
            # The same answer whether or not the address has an account: the mail says which.
            await verification.sign_up(request.app[DB], settings, request.app[MAIL], form.get("email", ""),
                                       form.get("password", ""), plan=plan)
        except ApiError as err:
            errors = field_errors(err)
        else:
            # This browser may finish the sign-up from the mailed link without typing the password again.
            session = await get_session(request)
            session["signup"] = {"email": auth.normalise_email(form.get("email", ""), settings, strict=False), "plan": plan}
            raise redirect("/signup/check-inbox")
    return await render(
        request, "signup.html",
        {"page_title": "Create your account", "form": {"email": form.get("email", "")}, "errors": errors, "plan": plan},
        status=422,
    )


def chosen_plan(value: str | None) -> str:
    """A plan code from a form or link, or "" (codes are identifiers; anything else is dropped)."""
    value = (value or "").strip()
    return value if value.isidentifier() and len(value) <= 40 else ""


@routes.get("/signup/check-inbox", name="portal.signup-sent")
async def signup_sent(request: web.Request) -> web.Response:
    pending = (await get_session(request)).get("signup") or {}
    if not pending:
        raise redirect("/signup")
    return await render(request, "signup_sent.html", {"page_title": "Check your inbox", "email": pending.get("email", "")})


@routes.get("/verify-email", name="portal.verify-email")
async def verify_email(request: web.Request) -> web.Response:
    """The mailed link: confirms the address, then signs in the browser that signed up (and only
    that one: a link opened elsewhere still needs the password) and goes on to the chosen plan."""
    plan = chosen_plan(request.query.get("plan"))
    target = f"/billing/checkout?plan={plan}" if plan and plan != "free" else "/dashboard"
    verified = await verification.verify(request.app[DB], request.query.get("token", ""))
    user = await current_user(request)
    if verified is None:
        if user is not None and user.email_verified:
            raise redirect("/dashboard")
        return await error_page(request, 400, "This confirmation link is not valid any more: it was used, it expired, "
                                "or the account's email changed since. Sign in and ask for a new one.", title="Link expired")
    pending = (await get_session(request)).get("signup") or {}
    if user is None and pending.get("email") == verified.email:
        await start_session(request, verified.user_id)
        user = await current_user(request)
    if user is not None and user.id == verified.user_id:
        await flash(request, "Your email is confirmed. Welcome to SFX Studio!")
        raise redirect(target)
    await flash(request, f"{verified.email} is confirmed. Sign in to continue.")
    raise redirect("/signin?next=" + quote(target, safe="/"))


@routes.post("/verify-email/resend", name="portal.verify-email-resend")
async def resend_verification(request: web.Request) -> web.Response:
    user = await require_user(request)
    if user.email_verified:
        raise redirect("/dashboard")
    if await verification.send_link(request.app[DB], request.app[SETTINGS], request.app[MAIL], user.id):
        await flash(request, f"We sent a new confirmation link to {user.email}.")
    else:
        await flash(request, "Several links were sent in the last hour: use the newest one in your inbox (check spam too).", "info")
    form = await form_data(request)
    raise redirect(safe_next(form.get("next")))


@routes.get("/signin", name="portal.signin")
async def signin_page(request: web.Request) -> web.Response:
    nxt = safe_next(request.query.get("next"))
    if await current_user(request):
        raise redirect(nxt)
    return await render(request, "signin.html", {"page_title": "Sign in", "form": {}, "errors": {}, "next": nxt})


@routes.post("/signin", name="portal.signin-post")
async def signin(request: web.Request) -> web.Response:
    form = await form_data(request)
    settings = request.app[SETTINGS]
    nxt = safe_next(form.get("next"))
    # Same normalisation and counters as the API's login: one budget of guesses per account and IP.
    email = auth.normalise_email(form.get("email", ""), settings, strict=False)
    throttle = LoginThrottle(request.app[REDIS], settings)
    ip = client_ip(request)

    def page(message: str) -> dict:
        return {"page_title": "Sign in", "form": {"email": form.get("email", "")}, "errors": {"_form": message}, "next": nxt}

    try:
        await throttle.check(email, ip)
        user = await auth.verify_credentials(request.app[DB], settings, email, form.get("password", ""))
    except TooManyRequests as err:
        response = await render(request, "signin.html", page(f"Too many failed attempts. {try_again_in(err)}"), status=429)
        response.headers.update(err.headers)
        return response
    except auth.InvalidCredentials:
        await throttle.failed(email, ip)
        log.info("portal sign-in failed", extra={"ip": ip})
        return await render(request, "signin.html", page("The email or password is incorrect."), status=401)
    except auth.AccountSuspended:
        return await render(request, "signin.html", page("This account is suspended. Contact support if you think this is a mistake."), status=403)
    await throttle.succeeded(email, ip)
    await start_session(request, user.id)
    raise redirect(nxt)


@routes.post("/signout", name="portal.signout")
async def signout(request: web.Request) -> web.Response:
    await end_session(request)
    await flash(request, "You are signed out.", "info")
    raise redirect("/signin")


@routes.get("/forgot-password", name="portal.forgot")
async def forgot_page(request: web.Request) -> web.Response:
    return await render(request, "forgot.html", {"page_title": "Reset your password", "sent": False, "email": ""})


@routes.post("/forgot-password", name="portal.forgot-post")
async def forgot(request: web.Request) -> web.Response:
    form = await form_data(request)
    email = form.get("email", "")
    if email and await _reset_allowed_from(request):
        # In the background: answering only after an SMTP round trip would tell, by timing alone,
        # which addresses have accounts.
        spawn(request.app, _request_reset(request.app, email))
    return await render(request, "forgot.html", {"page_title": "Check your inbox", "sent": bool(email), "email": email})


# Requests per client address and hour; more send nothing (the page reads the same either way).
RESETS_PER_IP_PER_HOUR = 10


async def _reset_allowed_from(request: web.Request) -> bool:
    key = request.app[SETTINGS].rkey("portal", "reset-requests", client_ip(request) or "unknown")
    async with request.app[REDIS].pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 3600, nx=True)
        count, _ = await pipe.execute()
    if count > RESETS_PER_IP_PER_HOUR:
        log.info("password reset request ignored: too many from this address")
        return False
    return True


async def _request_reset(app: web.Application, email: str) -> None:
    try:
        await passwords.request_reset(app[DB], app[SETTINGS], app[MAIL], email)
    except Exception:
        log.exception("password reset mail could not be sent")


@routes.get("/reset-password", name="portal.reset")
async def reset_page(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    email = await passwords.token_email(request.app[DB], token)
    response = await render(
        request, "reset.html",
        {"page_title": "Choose a new password", "token": token, "email": email, "errors": {}},
        status=200 if email else 400,
    )
    # The token is in this page's address: never send it to another site as a referrer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@routes.post("/reset-password", name="portal.reset-post")
async def reset(request: web.Request) -> web.Response:
    form = await form_data(request)
    token = form.get("token", "")
    errors: dict[str, str] = {}
    if form.get("password", "") != form.get("password_confirm", ""):
        errors["password_confirm"] = "The two passwords do not match"
    else:
        try:
            user_id = await passwords.reset_password(request.app[DB], request.app[SETTINGS], token, form.get("password", ""))
        except passwords.ResetTokenInvalid:
            return await render(request, "reset.html", {"page_title": "Link expired", "token": "", "email": None, "errors": {}}, status=400)
        except ApiError as err:
            errors = field_errors(err)
        else:
            await end_all_sessions(request.app, user_id)
            await end_session(request)
            await flash(request, "Your password has been changed. Sign in with the new one.")
            raise redirect("/signin")
    email = await passwords.token_email(request.app[DB], token)
    response = await render(request, "reset.html", {"page_title": "Choose a new password", "token": token, "email": email, "errors": errors}, status=422)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

