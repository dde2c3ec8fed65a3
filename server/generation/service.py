"""The generation flow: from a validated request to stored, charged audio (or nothing charged).

    plan + rate limit -> plan limits -> price -> idempotency record + credit holds + pending rows
    -> key bank + ElevenLabs (per take, concurrently) -> post-process + store -> rows + capture -> respond

Postgres sees three statements per generation: authentication's, the opening (repo.open_generation)
and the closing (repo.succeed or repo.fail), each its own transaction (migrations/0014). Accounts
the opening's fast path cannot serve, and retries that may take a request over, go through one
explicit transaction instead (_open_in_transaction).

Money rules this file keeps:
- Credits are reserved before any upstream call and captured only for audio that was produced,
  decoded and stored. Every other ending (provider failure, corrupt audio, timeout, cancellation,
  a bug) releases the hold, and the settlement runs shielded so a second cancellation cannot skip it.
- The upstream work runs in tasks of its own, so a client that disconnects does not tear it down
  half-way: takes still waiting on the provider are cancelled (nothing charged), takes whose audio
  already arrived finish, are kept in history and are charged once.
- One Idempotency-Key is one request: a retry gets the first result without a new charge.

When Postgres or Redis blinks (see server/outages.py and owner.py):
- A retry waiting on a request whose owner process is gone takes it over at once; the old try's
  pending rows are closed in the same statement, and its settlement writes only touch rows that
  are still pending, so the two tries never both charge or release the one shared credit hold.
- Settlement writes (the capture with its history row, a release, closing the request) are
  retried across a reconnect. The client waits SETTLE_WAIT_SECONDS for them, then gets 503 while
  the write keeps trying in the background until the hold would expire: audio that arrived
  before the outage is charged once when the database is back, and a retry replays it without
  a second provider call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import io
import logging
import time
import uuid
import wave
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
import redis.asyncio as aioredis

from server.audio.service import CorruptAudio, ProcessedAudio, process_for_editing
from server.credits import service as credits
from server.credits.models import Hold, HoldClosed, HoldNotFound, Plan
from server.credits.pricing import Pricing, quote_sfx, quote_voice
from server.generation import repo
from server.generation.naming import filename_for
from server.generation.params import Spec, chunk_limit, context_for, split_script
from server.generation.voices import VoiceCatalog
from server.generation.owner import RESTART_GRACE, OwnerBeacon
from server.keybank import KeyBank, Lease
from server.outages import is_unavailable, retry_through_outage, unavailable
from server.providers.elevenlabs import Upstream, UpstreamAudio
from server.settings import Settings
from server.storage import BlobStorage, key_for
from server.web.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, UpstreamError, ValidationFailed
from server.web.metrics import Metrics

log = logging.getLogger("server.generation")

T = TypeVar("T")

PROVIDER = "elevenlabs"
PRICING_TTL = 30.0  # pricing rules are data; re-read them this often
IDEMPOTENCY_KEY_MAX = 150
_POLL_START, _POLL_MAX = 0.05, 0.5
_UNKNOWN: Any = object()
# Upstream WAVs up to this size (~5 s of 48 kHz 16-bit mono) are post-processed on the event loop.
INLINE_AUDIO_BYTES = 512 * 1024
# How often a running request checks that its client is still connected.
CLIENT_POLL_SECONDS = 0.2


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationResult:
    id: uuid.UUID
    kind: str
    prompt: str | None
    text: str | None
    variation: int
    duration_seconds: float | None
    sample_rate: int | None
    credits: int
    format: str | None
    storage_key: str | None
    cached: bool
    created_at: datetime
    data: bytes | None = field(default=None, repr=False)  # the audio when it is in memory already
    takes: int = 1  # how many its request asked for

    @property
    def take_label(self) -> str | None:
        """"take 2 of 3" for one of several variations; None when the request asked for one."""
        return f"take {self.variation + 1} of {self.takes}" if self.takes > 1 else None

    @property
    def filename(self) -> str:
        return filename_for(self.prompt or self.text, self.id, self.format or "wav", fallback=self.kind)

    @property
    def content_type(self) -> str:
        return content_type_for(self.format)

    @classmethod
    def from_row(cls, row: asyncpg.Record, data: bytes | None = None) -> "GenerationResult":
        return cls(
            id=row["id"], kind=row["kind"], prompt=row["prompt"], text=row["text"], variation=row["variation"],
            duration_seconds=row["duration_seconds"], sample_rate=row["sample_rate"], credits=row["credits_charged"],
            format=row["format"], storage_key=row["storage_key"], cached=row["cached"], created_at=row["created_at"],
            data=data, takes=row["takes"],
        )


@dataclass(frozen=True)
class Outcome:
    results: list[GenerationResult]
    failed: list[tuple[int, ApiError]]
    charged: int
    remaining: int | None
    replayed: bool = False


def content_type_for(fmt: str | None) -> str:
    return {"wav": "audio/wav", "mp3": "audio/mpeg"}.get(fmt or "", "application/octet-stream")


# --- per-request state -----------------------------------------------------------------------


@dataclass
class AttemptLog:
    """What the upstream calls of one take did, for the generations row."""

    attempts: int = 0
    key_id: int | None = None
    request_ids: list[str] = field(default_factory=list)
    cost: int = 0
    cost_known: bool = False

    def record(self, lease: Lease, audio: UpstreamAudio) -> None:
        self.key_id = lease.key_id
        if audio.request_id:
            self.request_ids.append(audio.request_id)
        if audio.character_cost is not None:
            self.cost += audio.character_cost
            self.cost_known = True

    @property
    def request_id(self) -> str | None:
        return ",".join(self.request_ids)[:500] or None


@dataclass
class Take:
    """One variation of one request."""

    generation_id: uuid.UUID
    variation: int
    price: int
    cached: asyncpg.Record | None = None
    hold: Hold | None = None
    task: asyncio.Task | None = None
    settling: asyncio.Task | None = None  # the settlement write, which may outlive the response
    produced: bool = False  # the provider's audio arrived: from here on the take is finished, not abandoned
    log: AttemptLog = field(default_factory=AttemptLog)


@dataclass
class Job:
    user_id: uuid.UUID
    spec: Spec
    plan: Plan
    pricing: Pricing
    request_id: uuid.UUID
    idempotency_key: str
    key_ids: set[int] | None
    attempt: int = 1  # which try of this Idempotency-Key this is (a takeover counts one up)
    takes: list[Take] = field(default_factory=list)
    abandoned: bool = False
    finished: bool = False  # the request's status was written with its only take
    remaining: Any = _UNKNOWN  # credits left after this request (None: unlimited), once known

    def abandon(self) -> None:
        """The client went away: stop what has not produced audio yet."""
        self.abandoned = True
        for take in self.takes:
            if take.task is not None and not take.produced and not take.task.done():
                take.task.cancel()


# --- the service -----------------------------------------------------------------------------


class GenerationService:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keybank: KeyBank,
        upstream: Upstream,
        storage: BlobStorage,
        voices: VoiceCatalog,
        metrics: Metrics,
        rate_limiter: Any,
        owner: OwnerBeacon | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.keybank = keybank
        self.upstream = upstream
        self.storage = storage
        self.voices = voices
        self.metrics = metrics
        self.rate_limiter = rate_limiter
        self.owner = owner
        self._tasks: set[asyncio.Task] = set()
        self._running: set[uuid.UUID] = set()  # requests this process runs now
        self._pricing: tuple[float, Pricing] | None = None
        self._plans = credits.PlanCatalog(pool, ttl=PRICING_TTL)

    # --- entry point -----------------------------------------------------------------------

    async def create(
        self, user_id: uuid.UUID, spec: Spec, idempotency_key: str | None,
        *, client_gone: Callable[[], bool] | None = None, plan_code: str | None = None,
    ) -> Outcome:
        """Generate (or replay) what `spec` asks for. `client_gone` tells whether the caller has
        disconnected, for servers that do not cancel handlers when that happens. `plan_code`: the
        account's plan as authentication read it just now (saves a query)."""
        plan = await self._plans.get(plan_code) if plan_code else None
        if plan is None:
            plan = await credits.plan_for(self.pool, user_id)
        await self.rate_limiter.hit(user_id, plan)
        check_plan(spec, plan, upgrade_url=self.settings.upgrade_url)
        key_ids = await self._voice_owners(spec) if spec.kind == "voice" else None
        pricing = await self.pricing()
        idempotency_key = check_idempotency_key(idempotency_key)
        cached = await self._cached_takes(user_id, spec) if spec.reuse else {}
        waited_until = time.monotonic() + self.settings.upstream_deadline * 2 + 30
        while True:
            job = Job(user_id, spec, plan, pricing, uuid.UUID(int=0), idempotency_key, key_ids)
            claim = await self._open_shielded(job, cached)
            if claim.request_hash != spec.request_hash:
                raise Conflict(
                    "This Idempotency-Key was already used for a different request; use a new key for new parameters",
                    code="idempotency_conflict",
                )
            if claim.fresh:
                return await self._run_detached(job, client_gone)
            if claim.status == "succeeded":
                return await self._replay(user_id, claim.id)
            # The first request with this key is still running (a retry after a timeout, or a
            # double click): wait for its answer instead of starting a second, charged one.
            await self._wait_while_in_progress(claim.id, waited_until)

    async def _open(self, job: Job, cached: dict[int, asyncpg.Record]) -> repo.RequestClaim:
        """The idempotency record, a pending row per take and every take's credit hold (all or
        none), in one statement when the account can simply pay (repo.open_generation). A retry of
        a request that is not answered yet, and an account the fast path cannot serve, go through
        one explicit transaction instead (_open_in_transaction)."""
        spec = job.spec
        takes = [(variation, cached.get(variation)) for variation in range(spec.variations)]
        prices = [self.take_price(job, hit) for _, hit in takes]
        keys = [hold_key(job.user_id, job.idempotency_key, variation) for variation, _ in takes]
        paid = [i for i, price in enumerate(prices) if price > 0]
        opened = await repo.open_generation(
            self.pool, user_id=job.user_id, idempotency_key=job.idempotency_key, request_hash=spec.request_hash,
            kind=spec.kind, params=spec.params, prompt=spec.prompt, text=spec.text, variations=range(spec.variations),
            audio_hash=spec.audio_hash, owner=self.owner_name, holds=[(keys[i], prices[i]) for i in paid],
            hold_ttl=self.settings.hold_ttl, grace_days=self.settings.payment_grace_days,
        )
        if opened is None:
            return await self._open_in_transaction(job, cached)
        claim = opened.claim
        if not claim.fresh:
            if claim.request_hash == spec.request_hash and claim.status != "succeeded":
                # A failed earlier try, or one still running whose owner may be gone: a takeover to decide.
                return await self._open_in_transaction(job, cached)
            return claim
        job.request_id = claim.id
        job.attempt = claim.attempt
        holds = dict(zip(paid, opened.holds))
        for (variation, hit), price, key, generation_id in zip(takes, prices, keys, opened.generation_ids):
            take = Take(generation_id, variation, price, cached=hit)
            if variation in holds:
                hold_id, expires_at = holds[variation]
                take.hold = Hold(hold_id, job.user_id, price, key, "held", expires_at)
            job.takes.append(take)
        return claim

    async def _open_in_transaction(self, job: Job, cached: dict[int, asyncpg.Record]) -> repo.RequestClaim:
        """One transaction: the idempotency record (or the takeover of an unanswered one), a pending
        row per take, and every take's credit hold (all or none), with the credits' slow path that
        rolls a period over or says why the account cannot pay. A refusal (402) is recorded as failed
        rows in the same commit."""
        spec = job.spec
        refused: ApiError | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            opened = None
            for _ in range(5):  # None: a concurrent first request committed mid-statement; read again
                opened = await repo.open_request(
                    conn, user_id=job.user_id, idempotency_key=job.idempotency_key, request_hash=spec.request_hash,
                    kind=spec.kind, params=spec.params, prompt=spec.prompt, text=spec.text,
                    variations=range(spec.variations), audio_hash=spec.audio_hash, owner=self.owner_name,
                )
                if opened is not None:
                    break
            if opened is None:
                raise RuntimeError("the idempotency record could be neither created nor read")
            claim, generation_ids = opened.claim, opened.generation_ids
            if not claim.fresh and claim.request_hash == spec.request_hash and claim.status != "succeeded":
                # A failed earlier try (nothing charged) or a long-dead worker: one retry takes it over.
                taken = await repo.take_over(conn, claim.id, stale_after=self.stale_after, owner=self.owner_name,
                                             grace=RESTART_GRACE)
                if taken is not None:
                    claim = taken
                    rows = await repo.create_pending(
                        conn, user_id=job.user_id, request_id=claim.id, kind=spec.kind, params=spec.params,
                        prompt=spec.prompt, text=spec.text, variations=range(spec.variations),
                        idempotency_key=job.idempotency_key, request_hash=spec.audio_hash,
                    )
                    generation_ids = [r["id"] for r in sorted(rows, key=lambda r: r["variation"])]
            if not claim.fresh or claim.request_hash != spec.request_hash:
                return claim
            job.request_id = claim.id
            job.attempt = claim.attempt
            for variation, generation_id in enumerate(generation_ids):
                hit = cached.get(variation)
                price = self.take_price(job, hit)
                job.takes.append(Take(generation_id, variation, price, cached=hit))
            try:
                if len(job.takes) == 1:
                    # One hold: a refused reservation leaves nothing behind (the ledger uses its own savepoint).
                    await self._reserve(conn, job)
                else:
                    # A savepoint around every take's hold: all of them, or none and a recorded refusal.
                    async with conn.transaction():
                        await self._reserve(conn, job)
            except ApiError as exc:
                refused = exc
                for take in job.takes:
                    take.hold = None
                await repo.fail(conn, [t.generation_id for t in job.takes], status="failed", reason=failure_of(exc)[1])
                await repo.finish_request(conn, claim.id, "failed")
        if refused is not None:
            self.metrics.generations.labels(spec.kind, "refused").inc(len(job.takes))
            raise refused
        return claim

    async def _open_shielded(self, job: Job, cached: dict[int, asyncpg.Record]) -> repo.RequestClaim:
        """_open runs to its end even if the client leaves meanwhile; then what it opened is closed
        as cancelled, so no idempotency record is left "in progress" with credits on hold."""
        opening = self.spawn(self._open(job, cached))
        try:
            claim = await asyncio.shield(opening)
        except asyncio.CancelledError:
            self.spawn(self._close_opened(opening, job))
            raise
        except Exception as exc:
            if is_unavailable(exc) and self.owner is not None:
                # The opening commit may have happened before the connection died.
                self.spawn(self._disown(job))
            raise
        if claim.fresh:
            self._running.add(claim.id)
        return claim

    async def _disown(self, job: Job) -> None:
        async def write() -> int:
            return await repo.disown(self.pool, user_id=job.user_id, idempotency_key=job.idempotency_key,
                                     owner=self.owner_name, running=list(self._running))

        with contextlib.suppress(Exception):
            await retry_through_outage(write, seconds=self.settings.hold_ttl, what="closing an unanswered request")

    async def _close_opened(self, opening: asyncio.Task, job: Job) -> None:
        try:
            claim = await opening
        except Exception:
            return  # nothing was opened (or the refusal was recorded already)
        if claim.fresh:
            async def close() -> None:
                await self._fail_all(job, asyncio.CancelledError())
                await repo.finish_request(self.pool, job.request_id, "failed", attempt=job.attempt)

            try:
                await retry_through_outage(close, seconds=self.settings.hold_ttl, what="closing a cancelled request")
            finally:
                self._running.discard(claim.id)

    async def _reserve(self, conn: asyncpg.Connection, job: Job) -> None:
        for take in job.takes:
            if take.price > 0:
                take.hold = await credits.reserve(
                    conn, job.user_id, take.price, hold_key(job.user_id, job.idempotency_key, take.variation),
                    settings=self.settings,
                )

    @property
    def owner_name(self) -> str | None:
        return self.owner.name if self.owner is not None else None

    @property
    def stale_after(self) -> float:
        """An in-progress record older than this belongs to a worker that died."""
        return max(self.settings.hold_ttl, self.settings.upstream_deadline * 3)

    async def _wait_while_in_progress(self, request_id: uuid.UUID, until: float) -> None:
        """Until the request is answered, or its owner is found gone (the caller then takes it over)."""
        delay = _POLL_START
        while True:
            status, owner_gone = await repo.request_state(self.pool, request_id, grace=RESTART_GRACE)
            if status != "in_progress" or owner_gone:
                return
            if time.monotonic() > until:
                raise Conflict(
                    "A request with this Idempotency-Key is still running; try again shortly",
                    code="idempotency_in_progress",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    async def _run_detached(self, job: Job, client_gone: Callable[[], bool] | None = None) -> Outcome:
        task = self.spawn(self._run(job))
        watcher = self.spawn(self._watch_client(job, task, client_gone)) if client_gone else None
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            job.abandon()
            current = asyncio.current_task()
            if current is not None and not current.cancelling():
                # Not this handler being cancelled: the watcher saw the client leave and stopped the work.
                raise ApiError("The client closed the connection; nothing was charged for unfinished takes",
                               code="client_closed_request", status=499) from None
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch_client(self, job: Job, task: asyncio.Task, client_gone: Callable[[], bool]) -> None:
        while not task.done():
            await asyncio.sleep(CLIENT_POLL_SECONDS)
            if client_gone():
                job.abandon()
                return

    # --- one request -----------------------------------------------------------------------

    async def _run(self, job: Job) -> Outcome:
        status = "failed"
        try:
            if job.abandoned:
                cancelled = asyncio.CancelledError()
                await self._settle(None, functools.partial(self._fail_all, job, cancelled), "a release")
                raise cancelled
            for take in job.takes:
                take.task = self.spawn(self._settle_cached(job, take) if take.cached else self._produce(job, take))
            settled = await asyncio.gather(*(t.task for t in job.takes), return_exceptions=True)
            results = [v for v in settled if isinstance(v, GenerationResult)]
            if results:
                # Charged takes make the request a success: a retry must replay them, not redo them.
                status = "succeeded"
            return await self._outcome(job, settled, results)
        finally:
            self._running.discard(job.request_id)
            if not job.finished:
                if any(t.settling is not None and not t.settling.done() for t in job.takes):
                    # A take's settlement outlived its wait (the client has its 503 already): the
                    # request is closed after it, in the background.
                    closing = self.spawn(retry_through_outage(
                        functools.partial(self._finish, job, status), seconds=self.settings.hold_ttl,
                        what="closing a request"))
                    closing.add_done_callback(_log_background_failure)
                else:
                    await self._settle(None, functools.partial(self._finish, job, status), "closing a request")

    async def _finish(self, job: Job, status: str) -> None:
        """The request's final status, once every take's settlement has ended (some may still be
        retrying in the background after a database outage)."""
        parked = [t.settling for t in job.takes if t.settling is not None]
        if parked:
            ended = await asyncio.gather(*parked, return_exceptions=True)
            if any(isinstance(value, asyncpg.Record) for value in ended):
                status = "succeeded"
        await repo.finish_request(self.pool, job.request_id, status, attempt=job.attempt)

    async def _cached_takes(self, user_id: uuid.UUID, spec: Spec) -> dict[int, asyncpg.Record]:
        found = {}
        for variation in range(spec.variations):
            row = await repo.find_cached(
                self.pool, request_hash=spec.audio_hash, variation=variation, user_id=user_id,
                shared=spec.kind == "sfx",
            )
            if row is not None and await self.storage.exists(row["storage_key"]):
                found[variation] = row
        return found

    async def _fail_all(self, job: Job, exc: BaseException) -> None:
        status, reason = failure_of(exc)
        await repo.fail(self.pool, [t.generation_id for t in job.takes], status=status, reason=reason,
                        holds=[t.hold.id for t in job.takes if t.hold is not None],
                        release_reason="request failed before generation")
        self.metrics.generations.labels(job.spec.kind, status).inc(len(job.takes))

    async def _outcome(self, job: Job, settled: list[Any], results: list[GenerationResult]) -> Outcome:
        errors = [(take.variation, value) for take, value in zip(job.takes, settled) if isinstance(value, BaseException)]
        if not results:
            raise errors[0][1]
        failed = [(variation, as_api_error(exc)) for variation, exc in errors]
        if job.remaining is _UNKNOWN:
            job.remaining = (await credits.summary(self.pool, job.user_id)).remaining
        return Outcome(results, failed, sum(r.credits for r in results), job.remaining)

    # --- one take ----------------------------------------------------------------------------

    async def _produce(self, job: Job, take: Take) -> GenerationResult:
        started = time.monotonic()
        spec = job.spec
        try:
            parts = [await self._sound_effect(job, take)] if spec.kind == "sfx" else await self._speech(job, take)
            take.produced = True
            processed, storage_key = await self._process_and_store(spec, parts)
        except BaseException as exc:
            await self._settle(take, functools.partial(self._fail_take, job, take, exc, started), "a release")
            if isinstance(exc, CorruptAudio):
                raise as_api_error(exc) from None
            raise
        row = await self._settle(take, functools.partial(
            self._keep, job, take, started, storage_key=storage_key, format=processed.format,
            duration_seconds=processed.duration_seconds, sample_rate=processed.sample_rate,
            size_bytes=len(processed.data), charge=self.actual_price(job, take, processed), cached=False,
            latency_ms=_ms_since(started),
        ), "a capture")
        self.metrics.generations.labels(spec.kind, "succeeded").inc()
        # DEBUG: the request's own log line already records each call; details live in the row.
        log.debug("generation succeeded", extra={
            "generation_id": str(take.generation_id), "kind": spec.kind, "key_id": take.log.key_id,
            "attempts": take.log.attempts, "credits": row["credits_charged"], "latency_ms": _ms_since(started),
        })
        return GenerationResult.from_row(row, processed.data)

    async def _settle_cached(self, job: Job, take: Take) -> GenerationResult:
        started = time.monotonic()
        cached = take.cached
        assert cached is not None
        row = await self._settle(take, functools.partial(
            self._keep, job, take, started, storage_key=cached["storage_key"], format=cached["format"],
            duration_seconds=cached["duration_seconds"], sample_rate=cached["sample_rate"],
            size_bytes=cached["size_bytes"] or 0, charge=take.price, cached=True, latency_ms=_ms_since(started),
        ), "a capture")
        self.metrics.generations.labels(job.spec.kind, "cached").inc()
        return GenerationResult.from_row(row)

    async def _settle(self, take: Take | None, write: Callable[[], Awaitable[T]], what: str) -> T:
        """Run a settlement write to its end even if the caller is cancelled meanwhile, retrying it
        across a reconnect. The caller waits SETTLE_WAIT_SECONDS at most, then gets 503 while the
        write goes on trying in the background until the credit hold would have expired."""
        task = self.spawn(retry_through_outage(write, seconds=self.settings.hold_ttl, what=what))
        if take is not None:
            take.settling = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.settle_wait)
        except TimeoutError:
            task.add_done_callback(_log_background_failure)
            raise unavailable() from None

    async def _keep(self, job: Job, take: Take, started: float, **success: Any) -> asyncpg.Record:
        """Charge and record a take whose audio is stored; on anything but an outage (which the
        caller retries), release its hold instead."""
        try:
            return await self._record_success(job, take, **success)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            await self._fail_take(job, take, exc, started)
            raise

    async def _record_success(self, job: Job, take: Take, *, charge: int, cached: bool, **audio: Any) -> asyncpg.Record:
        """The row, the request's status and the charge in one statement (repo.succeed).

        Its commit waits for the disk (the default): once the audio is answered, its charge and
        history row survive a crash of Postgres too. It also makes the opening statement durable,
        whose own commit does not wait (see repo.open_generation). The flush costs ~0.3 ms here."""
        single = len(job.takes) == 1
        charge = charge if take.hold is not None else 0
        log_ = take.log
        try:
            row = await repo.succeed(
                self.pool, take.generation_id, credits_charged=charge, hold_id=take.hold.id if take.hold else None,
                cached=cached, upstream_key_id=log_.key_id, upstream_request_id=log_.request_id,
                upstream_cost=log_.cost if log_.cost_known else None, upstream_attempts=log_.attempts,
                finish_request=job.request_id if single else None, attempt=job.attempt, **audio,
            )
        except repo.HoldGone as gone:
            # The sweep released the hold at its expiry (a take that outlived CREDIT_HOLD_TTL):
            # nothing was written, and the take fails uncharged.
            if gone.missing:
                raise HoldNotFound("No such credit hold") from None
            raise HoldClosed("This take outlasted its credit reservation, so it was not kept; nothing was charged. "
                             "Try again.", details={"hold_id": str(take.hold.id) if take.hold else None}) from None
        if row is None:
            # No longer pending: this very write committed before its connection died (a
            # repeat), or a retry took the request over, or the sweep closed the row.
            row = await repo.generation_row(self.pool, take.generation_id)
            if row is None or row["status"] != "succeeded":
                raise Conflict("A newer request with this Idempotency-Key took over; retry to get its result",
                               code="idempotency_in_progress")
            if single:
                job.finished = True
            return row
        charged = row["charged_now"]  # None: the hold was captured before (a retried request)
        if charged is not None:
            self.metrics.credits_charged.labels(job.spec.kind).inc(charged)
            await credits.announce_if_crossed(self.pool, job.user_id, used=row["used"], captured=charged,
                                              allowance=row["allowance"])
        if single:
            if job.plan.unlimited:
                job.remaining = None
            elif charged is not None:
                job.remaining = row["balance"]
            else:
                job.remaining = (await credits.summary(self.pool, job.user_id)).remaining
            job.finished = True
        return row

    async def _fail_take(self, job: Job, take: Take, exc: BaseException, started: float) -> None:
        status, reason = failure_of(exc)
        await repo.fail(
            self.pool, [take.generation_id], status=status, reason=reason,
            holds=[take.hold.id] if take.hold else [], release_reason="generation failed",
            hold_id=take.hold.id if take.hold else None, upstream_key_id=take.log.key_id,
            upstream_request_id=take.log.request_id, upstream_cost=take.log.cost if take.log.cost_known else None,
            upstream_attempts=take.log.attempts, latency_ms=_ms_since(started),
        )
        self.metrics.generations.labels(job.spec.kind, status).inc()
        if reason == "internal_error":
            log.error("generation failed unexpectedly", exc_info=exc, extra={"generation_id": str(take.generation_id)})
        else:
            log.info("generation %s", status, extra={
                "generation_id": str(take.generation_id), "kind": job.spec.kind, "reason": reason,
                "attempts": take.log.attempts,
            })

    # --- upstream ----------------------------------------------------------------------------

    async def _keybank_run(self, attempt: Callable[[Lease], Awaitable[T]], key_ids: set[int] | None, job: Job) -> T:
        per_attempt = self.settings.upstream_attempt_timeout

        async def bounded(lease: Lease) -> T:
            # The SDK's timeouts are per socket read; a key that trickles or hangs must not eat the
            # whole deadline, so each attempt has its own bound and the key bank moves on (TimeoutError).
            # Time our own busy event loop took is not counted against the key (keybank/stalls.py).
            async with self.keybank.attempt_timeout(per_attempt):
                return await attempt(lease)

        return await self.keybank.run(
            PROVIDER, bounded, deadline=self.settings.upstream_deadline,
            max_attempts=self.settings.upstream_max_attempts, key_ids=key_ids, queue_as=str(job.user_id),
        )

    async def _sound_effect(self, job: Job, take: Take) -> UpstreamAudio:
        p = job.spec.params

        async def attempt(lease: Lease) -> UpstreamAudio:
            take.log.attempts += 1
            audio = await self.upstream.sound_effect(
                lease.secret, text=p["prompt"], duration_seconds=p["duration_seconds"],
                prompt_influence=p["prompt_influence"], loop=p["loop"], model_id=p["model_id"],
            )
            lease.report_cost(audio.character_cost)
            take.log.record(lease, audio)
            return audio

        return await self._keybank_run(attempt, None, job)

    async def _speech(self, job: Job, take: Take) -> list[UpstreamAudio]:
        """A long script becomes several requests, each told its neighbours' text so the joins
        sound continuous; _process_and_store joins their audio into one file."""
        p = job.spec.params
        chunks = split_script(p["text"], chunk_limit(p["model_id"], self.settings.voice_chunk_chars))
        parts: list[UpstreamAudio] = []
        for index, chunk in enumerate(chunks):
            previous_text, next_text = context_for(chunks, index)

            async def attempt(lease: Lease, chunk: str = chunk, previous_text=previous_text, next_text=next_text) -> UpstreamAudio:
                take.log.attempts += 1
                audio = await self.upstream.speech(
                    lease.secret, p["voice_id"], text=chunk, model_id=p["model_id"],
                    voice_settings=p["voice_settings"], seed=p["seed"], previous_text=previous_text, next_text=next_text,
                )
                lease.report_cost(audio.character_cost)
                take.log.record(lease, audio)
                return audio

            parts.append(await self._keybank_run(attempt, job.key_ids, job))
        return parts

    async def _voice_owners(self, spec: Spec) -> set[int] | None:
        owners, catalog = await self.voices.owners(spec.params["voice_id"])
        if owners is None and catalog.complete and catalog.voices:
            raise ValidationFailed(
                "The selected voice does not exist or is not available",
                details={"fields": [{"field": "voice_id", "location": "body", "type": "voice_not_found",
                                     "message": "No available voice has this id"}]},
            )
        return owners

    async def _process_and_store(self, spec: Spec, parts: list[UpstreamAudio]) -> tuple[ProcessedAudio, str]:
        """The provider's audio (the chunks of a long voice-over joined), post-processed for editing
        and stored, with one trip to the thread pool at most: waking a pool thread and handing the
        result back costs about as much CPU as processing a short clip, so a long clip (or MP3) is
        joined, processed, hashed and, on a local folder, written by the same thread; an S3 upload
        then goes out from the event loop."""

        def work() -> ProcessedAudio:
            data = parts[0].data if len(parts) == 1 else stitch_wavs([part.data for part in parts])
            return process_for_editing(
                data, kind=spec.kind, loop=bool(spec.params.get("loop")), headroom_db=self.settings.audio_headroom_db,
                bit_depth=spec.bit_depth, output=spec.format, source_format=parts[0].output_format,
                length_seconds=spec.length_seconds,
            )

        if len(parts) == 1 and len(parts[0].data) <= INLINE_AUDIO_BYTES and spec.format == "wav":
            # A short WAV takes ~0.3 ms (scripts/bench_audio.py): less than the thread hop, and too
            # short to hold other requests up. The store's own put makes the one hop (hash, write).
            processed = work()
            return processed, await self.storage.put(processed.data, processed.format)

        def off_the_loop() -> tuple[ProcessedAudio, str, bool]:
            processed = work()
            written = self.storage.put_blocking(processed.data, processed.format)  # None: uploaded from the loop
            return processed, written or key_for(processed.data, processed.format), written is not None

        processed, key, written = await asyncio.get_running_loop().run_in_executor(None, off_the_loop)
        if not written:
            await self.storage.put(processed.data, processed.format, key=key)
        return processed, key

    # --- prices ------------------------------------------------------------------------------

    async def pricing(self) -> Pricing:
        now = time.monotonic()
        if self._pricing is None or now - self._pricing[0] > PRICING_TTL:
            self._pricing = (now, await credits.load_pricing(self.pool))
        return self._pricing[1]

    def take_price(self, job: Job, cached: asyncpg.Record | None) -> int:
        """What a take is reserved for: a reuse of a cached result, or a new generation."""
        return self.cache_price(job) if cached is not None else self.reserve_price(job)

    def reserve_price(self, job: Job) -> int:
        p = job.spec.params
        if job.spec.kind == "sfx":
            return quote_sfx(job.pricing, duration_seconds=p["duration_seconds"])
        return quote_voice(job.pricing, characters=len(p["text"]))

    def cache_price(self, job: Job) -> int:
        if job.spec.kind == "sfx":
            return quote_sfx(job.pricing, duration_seconds=job.spec.params["duration_seconds"], reuse=True)
        return quote_voice(job.pricing, characters=len(job.spec.params["text"]), reuse=True)

    def actual_price(self, job: Job, take: Take, processed: ProcessedAudio) -> int:
        """SFX are charged by the length delivered (an automatic duration reserved the maximum)."""
        if job.spec.kind == "sfx":
            actual = quote_sfx(job.pricing, duration_seconds=processed.duration_seconds)
        else:
            actual = quote_voice(job.pricing, characters=len(job.spec.params["text"]))
        return min(actual, take.price)

    # --- replay ------------------------------------------------------------------------------

    async def _replay(self, user_id: uuid.UUID, request_id: uuid.UUID) -> Outcome:
        rows = await repo.request_results(self.pool, request_id)
        live = [r for r in rows if r["status"] == "succeeded" and r["deleted_at"] is None]
        if not live:
            raise NotFound("The result of this request was deleted", code="generation_deleted")
        summary = await credits.summary(self.pool, user_id)
        self.metrics.generations.labels(live[0]["kind"], "replayed").inc(len(live))
        results = [GenerationResult.from_row(r) for r in live]
        return Outcome(results, [], sum(r.credits for r in results), summary.remaining, replayed=True)

    # --- reading -----------------------------------------------------------------------------

    async def get(self, user_id: uuid.UUID, generation_id: uuid.UUID) -> GenerationResult:
        row = await repo.get_generation(self.pool, user_id, generation_id)
        if row is None:
            raise NotFound("No such generation", code="generation_not_found")
        return GenerationResult.from_row(row)

    async def history(
        self, user_id: uuid.UUID, *, kind: str | None, cursor: str | None, limit: int
    ) -> tuple[list[GenerationResult], str | None]:
        before = decode_cursor(cursor) if cursor else None
        rows = await repo.history(self.pool, user_id, kind=kind, before=before, limit=limit + 1)
        items = [GenerationResult.from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
        return items, next_cursor

    async def delete(self, user_id: uuid.UUID, generation_id: uuid.UUID) -> None:
        storage_key = await repo.soft_delete(self.pool, user_id, generation_id)
        if storage_key is False:
            raise NotFound("No such generation", code="generation_not_found")
        if storage_key:
            await self.drop_file_if_unused(storage_key)

    async def drop_file_if_unused(self, storage_key: str) -> bool:
        # Content addressing means two generations (or a cached reuse) may share one file.
        if await repo.storage_key_in_use(self.pool, storage_key):
            return False
        return await self.storage.delete(storage_key)

    # --- tasks -------------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        """A task the service keeps a reference to until it ends (the loop only holds weak ones)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float) -> None:
        """At shutdown: let running generations finish and settle, then cancel what is left."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)


# --- rules -----------------------------------------------------------------------------------


def check_plan(spec: Spec, plan: Plan, *, upgrade_url: str) -> None:
    features = plan.features
    problems: list[dict[str, Any]] = []

    def over(field_name: str, message: str, limit: Any) -> None:
        problems.append({"field": field_name, "location": "body", "type": "plan_limit", "message": message, "limit": limit})

    if spec.kind == "voice" and not features.voice:
        raise Forbidden(
            f"Voice-over is not part of the {plan.name} plan", code="plan_feature_unavailable",
            details={"feature": "voice", "plan": plan.code, "upgrade_url": upgrade_url},
        )
    if spec.format not in features.formats:
        over("format", f"The {plan.name} plan offers {', '.join(features.formats)}", list(features.formats))
    if spec.kind == "sfx":
        duration = spec.params["duration_seconds"]
        if duration is not None and duration > features.max_sfx_seconds:
            over("duration_seconds", f"The {plan.name} plan allows up to {features.max_sfx_seconds} seconds",
                 features.max_sfx_seconds)
        if spec.variations > features.max_variations:
            over("variations", f"The {plan.name} plan allows up to {features.max_variations} variation(s)",
                 features.max_variations)
    else:
        if len(spec.params["text"]) > features.max_voice_chars:
            over("text", f"The {plan.name} plan allows up to {features.max_voice_chars} characters per voice-over",
                 features.max_voice_chars)
    if problems:
        raise ValidationFailed(
            "The request exceeds what your plan allows",
            details={"fields": problems, "plan": plan.code, "upgrade_url": upgrade_url},
        )


def check_idempotency_key(value: str | None) -> str:
    """The panel sends one per click; without one, every request is new."""
    if value is None:
        return "auto-" + uuid.uuid4().hex
    value = value.strip()
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX or not value.isascii() or not value.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
            code="invalid_idempotency_key",
        )
    return value


def hold_key(user_id: uuid.UUID, idempotency_key: str, variation: int) -> str:
    """The credit hold of one take: one per (user, Idempotency-Key, variation), so a retry finds
    the same hold (held or captured) instead of making a second."""
    digest = hashlib.sha256(f"{user_id}\n{idempotency_key}".encode()).hexdigest()[:40]
    return f"gen:{digest}:{variation}"


def failure_of(exc: BaseException) -> tuple[str, str]:
    """(status, failure_reason) for the generations row; never contains a secret."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled", "cancelled"
    if isinstance(exc, CorruptAudio):
        return "failed", "corrupt_audio"
    if is_unavailable(exc):
        return "failed", "service_unavailable"
    if isinstance(exc, ApiError):
        reason = exc.code
        detail = (exc.details.get("reason") or exc.details.get("upstream_code")) if isinstance(exc.details, dict) else None
        return "failed", f"{reason}: {detail}" if detail else reason
    return "failed", "internal_error"


def as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        return ApiError("The generation was cancelled; nothing was charged", code="cancelled", status=499)
    if isinstance(exc, CorruptAudio):
        return UpstreamError(
            "The provider returned unusable audio; nothing was charged", code="upstream_unavailable",
            details={"reason": "corrupt_audio"},
        )
    if is_unavailable(exc):
        return unavailable()
    return ApiError("Something went wrong on our side; nothing was charged", code="internal_error", status=500)


def _log_background_failure(task: asyncio.Task) -> None:
    """A settlement that failed after its caller stopped waiting has no one else to tell."""
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ApiError):
            log.error("a settlement write failed", exc_info=exc)


def stitch_wavs(parts: list[bytes]) -> bytes:
    """Chunks of one voice-over (same voice, same format) joined sample-exactly into one WAV."""
    params = None
    frames: list[bytes] = []
    for data in parts:
        try:
            with wave.open(io.BytesIO(data)) as w:
                here = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                if params is not None and here != params:
                    raise CorruptAudio("voice chunks came back in different formats")
                params = here
                frames.append(w.readframes(w.getnframes()))
        except (wave.Error, EOFError) as exc:
            raise CorruptAudio(f"a voice chunk is not a WAV file: {exc}") from None
    assert params is not None
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(params[0])
        w.setsampwidth(params[1])
        w.setframerate(params[2])
        w.writeframes(b"".join(frames))
    return out.getvalue()


# --- cursors ---------------------------------------------------------------------------------


def encode_cursor(item: GenerationResult) -> str:
    raw = f"{item.created_at.isoformat()}|{item.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        return datetime.fromisoformat(when), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "The cursor is not one this API returned",
            details={"fields": [{"field": "cursor", "location": "query", "type": "invalid_cursor", "message": "Invalid cursor"}]},
        ) from None


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
