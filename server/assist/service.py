"""Prompt assistance: one LLM answer per request, through the key bank, metered in credits.

    plan flag + rate limit -> idempotency record -> reserve the token ceiling's price
    -> routes in order (provider:model), each through the key bank's leased keys
    -> the answer validated against the API's model -> capture the tokens used

Money rules: the price of the request's token ceiling is reserved before any call; only an
answer that validated is charged, by the tokens the provider reported (never above the hold).
A provider failure, an answer off its schema, a timeout or a cancelled request releases the
hold; the settlement runs shielded so a disconnecting client cannot skip it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import asyncpg
import pydantic

from server.assist import repo
from server.assist.routing import Route, parse_routes
from server.assist.templates import PromptTemplate, load
from server.credits import service as credits
from server.credits.models import Plan
from server.credits.pricing import Pricing, quote_tokens
from server.keybank import KeyBank, Lease
from server.keybank.service import NoActiveKey
from server.providers import RetryOnAnotherKey, UpstreamUserError
from server.providers.llm import LlmProvider, LlmReply
from server.settings import Settings
from server.web.errors import ApiError, BadRequest, Conflict, Forbidden, ServiceUnavailable, UpstreamError

log = logging.getLogger("server.assist")

PRICING_TTL = 30.0
CLIENT_POLL_SECONDS = 0.2
IDEMPOTENCY_KEY_MAX = 150
FEATURE_NAMES = {"sfx_prompt": "Sound prompt ideas", "spot": "Spotting from markers", "voice_script": "Voice-over script help"}


class ClientGone(ApiError):
    status, code = 499, "client_closed_request"

    def __init__(self) -> None:
        super().__init__("The client closed the connection; nothing was charged")


@dataclass(frozen=True)
class Answer:
    id: uuid.UUID
    reply: dict[str, Any]  # the validated answer, as JSON
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    credits_charged: int
    credits_remaining: int | None
    prompt_version: str
    replayed: bool = False

    def usage(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "credits_charged": self.credits_charged,
                "credits_remaining": self.credits_remaining, "prompt_version": self.prompt_version,
                "replayed": self.replayed}


@dataclass
class Tracker:
    """What the calls of one request did, for its row."""

    attempts: int = 0
    route: Route | None = None
    key_id: int | None = None
    route_errors: list[dict[str, Any]] = field(default_factory=list)


class AssistService:
    def __init__(
        self, *, settings: Settings, pool: asyncpg.Pool, keybank: KeyBank, rate_limiter: Any,
        voice_check: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.keybank = keybank
        self.rate_limiter = rate_limiter
        self.voice_check = voice_check
        self.routes = parse_routes(settings.assist_routes)
        self._pricing: tuple[float, Pricing] | None = None
        self._tasks: set[asyncio.Task] = set()

    async def plan_allowing(self, user_id: uuid.UUID, feature: str) -> Plan:
        """The user's plan, after its feature flag and request limits let this request through."""
        plan = await credits.plan_for(self.pool, user_id)
        if feature not in plan.features.assist:
            raise Forbidden(
                f"{FEATURE_NAMES[feature]} is not part of the {plan.name} plan", code="plan_feature_unavailable",
                details={"feature": feature, "plan": plan.code, "upgrade_url": self.settings.upgrade_url},
            )
        await self.rate_limiter.hit(user_id, plan)
        return plan

    async def answer(
        self, user_id: uuid.UUID, plan: Plan, feature: str, data: dict[str, Any], reply_model: type[pydantic.BaseModel],
        idempotency_key: str | None, *, client_gone: Callable[[], bool] | None = None,
    ) -> Answer:
        """The validated answer, charged; `client_gone` tells whether the caller has disconnected
        (then the calls stop and nothing is charged)."""
        template = load(feature)
        key = check_idempotency_key(idempotency_key)
        request_hash = hashlib.sha256(json.dumps([feature, data], sort_keys=True).encode()).hexdigest()
        row, fresh = await repo.open_request(
            self.pool, user_id=user_id, idempotency_key=key, request_hash=request_hash, feature=feature,
            prompt_version=template.version, stale_after=self.stale_after,
        )
        if not fresh:
            return await self._replay(row, request_hash, plan)
        started = time.monotonic()
        pricing = await self.pricing()
        try:
            hold = await credits.reserve(
                self.pool, user_id, quote_tokens(pricing, tokens=template.token_ceiling(data)),
                f"assist:{row['id']}:{row['attempt']}", settings=self.settings,
            )
        except BaseException as exc:
            await self._shielded(repo.mark_failed(self.pool, row["id"], status="failed", reason=reason_of(exc),
                                                  attempts=0, latency_ms=_ms_since(started)))
            raise
        tracker = Tracker()
        try:
            await repo.set_hold(self.pool, row["id"], hold.id, hold.amount)
            reply, parsed = await self._watched(
                self._ask(feature, template, data, reply_model, tracker, queue_as=str(user_id)), client_gone)
        except BaseException as exc:
            await self._shielded(self._fail(row["id"], hold.id, exc, tracker, started))
            raise
        return await self._shielded(self._succeed(row, plan, pricing, hold, reply, parsed, template, tracker, started))

    # --- the calls -----------------------------------------------------------------------

    async def _watched(self, work: Awaitable[Any], client_gone: Callable[[], bool] | None) -> Any:
        """Run `work`, cancelled as soon as the client has gone (servers that do not cancel handlers
        on disconnect, the default, learn of it only by looking)."""
        task = asyncio.ensure_future(work)
        if client_gone is None:
            return await task
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CLIENT_POLL_SECONDS)
                if done:
                    return task.result()
                if client_gone():
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
                    raise ClientGone()
        finally:
            if not task.done():
                task.cancel()

    async def _ask(
        self, feature: str, template: PromptTemplate, data: dict[str, Any], reply_model: type[pydantic.BaseModel],
        tracker: Tracker, *, queue_as: str,
    ) -> tuple[LlmReply, pydantic.BaseModel]:
        """Each configured route in order until one answers with a valid reply."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.settings.assist_deadline
        failures: list[ApiError] = []
        for route in self.routes[feature]:
            left = ends - loop.time()
            if left < 0.5:
                break
            provider = self.keybank.provider(route.provider)
            assert isinstance(provider, LlmProvider)
            request = template.request(route.model, data)

            async def attempt(lease: Lease, route: Route = route, provider: LlmProvider = provider) -> tuple[LlmReply, Any]:
                tracker.attempts += 1
                tracker.route, tracker.key_id = route, lease.key_id
                async with asyncio.timeout(self.settings.upstream_attempt_timeout):
                    reply = await provider.complete(lease.secret, request)
                try:
                    parsed = reply_model.model_validate(reply.data)
                except pydantic.ValidationError as exc:
                    raise RetryOnAnotherKey(f"reply off its schema ({exc.error_count()} problems)") from None
                lease.report_cost(reply.total_tokens)  # the key's quota is counted in tokens
                return reply, parsed

            try:
                return await self.keybank.run(
                    route.provider, attempt, deadline=left, max_attempts=self.settings.upstream_max_attempts,
                    queue_as=queue_as,  # busy keys: wait in the fair line as this account, not as everyone
                )
            except (ServiceUnavailable, NoActiveKey, UpstreamError, UpstreamUserError) as exc:
                failures.append(exc)
                tracker.route_errors.append({"provider": route.provider, "model": route.model, "reason": exc.code})
                log.info("assist route failed; trying the next", extra={
                    "feature": feature, "provider": route.provider, "model": route.model, "reason": exc.code,
                })
        raise self._no_answer(failures, tracker)

    def _no_answer(self, failures: list[ApiError], tracker: Tracker) -> ApiError:
        details = {"routes": tracker.route_errors}
        if not failures or all(isinstance(f, NoActiveKey) for f in failures):
            return ApiError("No language model provider has an active key right now; an operator has been alerted",
                            code="no_active_key", status=503, details=details)
        busy = [f for f in failures if isinstance(f, ServiceUnavailable)]
        if all(isinstance(f, (ServiceUnavailable, NoActiveKey)) for f in failures) and busy:
            retry_after = min(int(f.details.get("retry_after", 3)) for f in busy)
            return ServiceUnavailable("Every language model provider is busy; try again shortly",
                                      code="capacity_exhausted", retry_after=retry_after, details=details)
        return UpstreamError("No language model provider gave a usable answer; nothing was charged",
                             code="upstream_unavailable", details=details)

    # --- settling --------------------------------------------------------------------------

    async def _succeed(
        self, row: asyncpg.Record, plan: Plan, pricing: Pricing, hold: Any, reply: LlmReply,
        parsed: pydantic.BaseModel, template: PromptTemplate, tracker: Tracker, started: float,
    ) -> Answer:
        route = tracker.route
        assert route is not None
        charge = min(quote_tokens(pricing, tokens=reply.total_tokens), hold.amount)
        result = parsed.model_dump(mode="json")
        async with self.pool.acquire() as conn, conn.transaction():
            charged, balance = await credits.capture_with_balance(conn, hold.id, charge)
            await repo.mark_succeeded(
                conn, row["id"], provider=route.provider, model=route.model, key_id=tracker.key_id,
                attempts=tracker.attempts, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                credits_charged=charged, result=result, latency_ms=_ms_since(started),
            )
        log.info("assist answered", extra={
            "assist_id": str(row["id"]), "feature": row["feature"], "provider": route.provider, "model": route.model,
            "tokens": reply.total_tokens, "credits": charged, "attempts": tracker.attempts,
        })
        return Answer(
            id=row["id"], reply=result, provider=route.provider, model=route.model, input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens, credits_charged=charged,
            credits_remaining=None if plan.unlimited else balance, prompt_version=template.version,
        )

    async def _fail(self, request_id: uuid.UUID, hold_id: uuid.UUID, exc: BaseException, tracker: Tracker,
                    started: float) -> None:
        await credits.release(self.pool, hold_id, reason="assist request failed")
        status = "cancelled" if isinstance(exc, (asyncio.CancelledError, ClientGone)) else "failed"
        route = tracker.route
        await repo.mark_failed(
            self.pool, request_id, status=status, reason=reason_of(exc), attempts=tracker.attempts,
            latency_ms=_ms_since(started), provider=route.provider if route else None,
            model=route.model if route else None, key_id=tracker.key_id,
        )
        if not isinstance(exc, (ApiError, asyncio.CancelledError)):
            log.error("assist request failed unexpectedly", exc_info=exc, extra={"assist_id": str(request_id)})

    async def _replay(self, row: asyncpg.Record, request_hash: str, plan: Plan) -> Answer:
        if row["request_hash"] != request_hash:
            raise Conflict("This Idempotency-Key was already used for a different request; use a new key",
                           code="idempotency_conflict")
        if row["status"] != "succeeded":
            raise Conflict("A request with this Idempotency-Key is still running; try again shortly",
                           code="idempotency_in_progress")
        summary = await credits.summary(self.pool, row["user_id"])
        return Answer(
            id=row["id"], reply=json.loads(row["result"]), provider=row["provider"], model=row["model"],
            input_tokens=row["input_tokens"], output_tokens=row["output_tokens"], credits_charged=row["credits_charged"],
            credits_remaining=None if plan.unlimited else summary.remaining, prompt_version=row["prompt_version"],
            replayed=True,
        )

    # --- reading ------------------------------------------------------------------------------

    async def history(self, user_id: uuid.UUID, limit: int) -> tuple[list[asyncpg.Record], asyncpg.Record]:
        return await repo.history(self.pool, user_id, limit), await repo.month_totals(self.pool, user_id)

    async def pricing(self) -> Pricing:
        now = time.monotonic()
        if self._pricing is None or now - self._pricing[0] > PRICING_TTL:
            self._pricing = (now, await credits.load_pricing(self.pool))
        return self._pricing[1]

    @property
    def stale_after(self) -> float:
        """A pending request older than this belongs to a worker that died."""
        return max(self.settings.hold_ttl, self.settings.assist_deadline * 3)

    async def _shielded(self, coro: Awaitable[Any]) -> Any:
        """Settlement runs to its end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def drain(self, timeout: float) -> None:
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)


def check_idempotency_key(value: str | None) -> str:
    """The panel sends one per click; without one, every request is new."""
    if value is None:
        return "auto-" + uuid.uuid4().hex
    value = value.strip()
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX or not value.isascii() or not value.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
                         code="invalid_idempotency_key")
    return value


def reason_of(exc: BaseException) -> str:
    """failure_reason for the row; never contains a secret."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, ApiError):
        reasons = [r["reason"] for r in exc.details.get("routes", [])] if isinstance(exc.details, dict) else []
        return f"{exc.code}: {', '.join(reasons)}" if reasons else exc.code
    return "internal_error"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
