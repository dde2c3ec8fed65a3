"""The key bank: provider keys at rest (Postgres), in use (Redis leases), and in trouble (failures).

Operators and the portal's admin pages call add_key, list_keys, enable, disable, remove and
rotate_master; the generation domain calls run(), which leases a key, calls the provider
through the caller's `attempt`, and decides from the failure what happens to the key and
whether another key should try.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, TypeVar

import asyncpg
import redis.asyncio as aioredis

from server.keybank import repo
from server.keybank.crypto import KeyCipher, KeyDecryptError, Sealed
from server.keybank.leases import CandidateRow, Granted, LeaseStore, Refused, RuntimeState
from server.providers import REGISTRY, Failure, FailureKind, Provider, Providers, QuotaReading, safe_text
from server.keybank.stalls import FairTimeout, LoopStalls
from server.keybank.waiting import WaitLine, Waited
from server.settings import Settings
from server.web.errors import ApiError, BadRequest, Conflict, NotFound, ServiceUnavailable, UpstreamError, ValidationFailed
from server.web.logs import REDACTOR
from server.web.metrics import Metrics

log = logging.getLogger("server.keybank")

T = TypeVar("T")

# Every provider the registry knows can be banked, probed and refreshed.
PROVIDERS = tuple(REGISTRY)
USAGE_FLUSH_LOCK = "usage-flush"


class NoActiveKey(ApiError):
    """Every key of the provider is disabled, exhausted or removed: waiting will not help, an
    operator must act. Distinct from capacity_exhausted (keys busy), so clients do not retry."""

    status, code = 503, "no_active_key"

    def __init__(self, provider: str) -> None:
        super().__init__(
            "No provider key is available for this service right now; an operator has been alerted",
            details={"provider": provider},
        )


@dataclass(frozen=True)
class KeyBankConfig:
    cooldown_base: float = 2.0  # first cooldown after a transient failure, doubled per consecutive failure
    cooldown_max: float = 300.0
    error_window: float = 300.0  # recent error counts cover this many seconds
    lease_grace: float = 15.0  # a lease outlives its request's deadline by this, then frees itself
    quota_reset_default: float = 3600.0  # parking time of an exhausted key whose reset time is unknown
    no_key_retry_after: float = 3.0  # Retry-After when keys are busy rather than cooling
    probe_timeout: float = 15.0
    probe_concurrency: int = 4
    refresh_lock_ttl: float = 300.0
    # Quota used is counted in Redis on each success and written to Postgres this often, so no
    # request waits on a row lock and a synchronous commit of its key's row.
    usage_flush_interval: float = 5.0


@dataclass(frozen=True)
class KeyInfo:
    id: int
    provider: str
    label: str
    last4: str
    status: str


@dataclass(frozen=True)
class KeyView:
    """What an operator sees of a key: its record and its live state. Never the secret."""

    id: int
    provider: str
    label: str
    last4: str
    status: str
    disabled_reason: str | None
    max_concurrency: int
    weight: int
    tier: str | None
    quota_limit: int | None
    quota_used: int | None
    quota_reset_at: datetime | None
    quota_checked_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    key_version: str
    created_at: datetime
    updated_at: datetime
    in_flight: int = 0
    cooldown_until: datetime | None = None
    consecutive_failures: int = 0
    recent_errors: int = 0

    @property
    def quota_remaining(self) -> int | None:
        if self.quota_limit is None or self.quota_used is None:
            return None
        return self.quota_limit - self.quota_used

    @property
    def masked(self) -> str:
        return "…" + self.last4

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["quota_remaining"] = self.quota_remaining
        return out


@dataclass(eq=False)
class Lease:
    """One slot on one key for one attempt. The secret lives here, in memory, while the attempt runs."""

    key_id: int
    provider: str
    label: str
    secret: str = field(repr=False)
    lease_id: str = field(repr=False)
    in_flight: int = 0
    cost: int = 0
    meter: Callable[[Mapping[str, str]], float | None] | None = field(default=None, repr=False)

    def report_cost(self, amount: int | float | None) -> None:
        """Quota the provider says this attempt used (ElevenLabs: the `character-cost` header)."""
        if amount is not None and amount > 0:
            self.cost += int(math.ceil(amount))

    def report_headers(self, headers: Mapping[str, str] | None) -> None:
        """Quota used as the provider's response headers state it (how they say it is the provider's)."""
        if self.meter is not None:
            self.report_cost(self.meter(headers or {}))


@dataclass(frozen=True)
class ProbeResult:
    key_id: int
    ok: bool
    status: str
    failure: Failure | None = None
    reading: QuotaReading | None = None


class KeyBank:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        *,
        providers: Providers | None = None,
        metrics: Metrics | None = None,
        config: KeyBankConfig | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.leases = LeaseStore(redis, settings)
        self.line = WaitLine(redis, settings)  # the fair wait for a busy key
        self.stalls = LoopStalls()  # started by keybank_ctx in a serving process
        self.cipher = KeyCipher.from_settings(settings)
        self.providers = providers or Providers(settings)
        self._owns_providers = providers is None
        self.metrics = metrics or Metrics()
        self.config = config or KeyBankConfig()
        # Ciphertext, not plaintext, is cached: a secret is decrypted for each lease and dropped after.
        self._sealed: dict[int, asyncpg.Record] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, **kwargs: Any) -> AsyncIterator["KeyBank"]:
        """A key bank with its own connections, for the command line."""
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
        redis = aioredis.from_url(settings.redis_url, decode_responses=True)
        bank = cls(settings, pool, redis, **kwargs)
        try:
            yield bank
        finally:
            await bank.aclose()
            await redis.aclose()
            await pool.close()

    async def aclose(self) -> None:
        if self._owns_providers:
            await self.providers.aclose()

    # --- operator functions ------------------------------------------------------------

    async def add_key(
        self, *, provider: str, label: str, secret: str, max_concurrency: int, weight: int = 1
    ) -> KeyView:
        """Validate the key with its provider, then store it encrypted. Raises ApiError subclasses."""
        provider, label, secret = _check_new_key(provider, label, secret, max_concurrency, weight)
        REDACTOR.add([secret])
        if await repo.label_exists(self.pool, provider, label):
            raise Conflict(f"A {provider} key labelled {label!r} already exists", code="key_label_taken")
        await self._reject_duplicate(provider, secret)
        reading = await self._validate_with_provider(provider, secret)
        status = "exhausted" if reading.exhausted else "active"
        reset_at = reading.reset_at
        if status == "exhausted" and reset_at is None:
            reset_at = _now() + timedelta(seconds=self.config.quota_reset_default)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                key_id = await repo.next_key_id(conn)
                row = await repo.insert_key(
                    conn,
                    key_id=key_id,
                    provider=provider,
                    label=label,
                    sealed=self.cipher.encrypt(key_id, provider, secret),
                    last4=secret[-4:],
                    status=status,
                    max_concurrency=max_concurrency,
                    weight=weight,
                    tier=reading.tier,
                    quota_limit=reading.limit,
                    quota_used=reading.used,
                    quota_reset_at=reset_at,
                    quota_checked_at=_now(),
                )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"A {provider} key labelled {label!r} already exists", code="key_label_taken") from None
        await self.sync(provider)
        log.info("provider key added", extra={"key_id": key_id, "provider": provider, "label": label, "key_status": status})
        return _view(row)

    async def list_keys(self, provider: str | None = None) -> list[KeyView]:
        rows = await repo.list_keys(self.pool, provider)
        states = await self.leases.state(r["id"] for r in rows)
        return [_view(r, states.get(r["id"])) for r in rows]

    async def get_key(self, key_id: int) -> KeyView:
        row = await repo.get_key(self.pool, key_id)
        if row is None:
            raise NotFound(f"No provider key #{key_id}", code="key_not_found")
        states = await self.leases.state([key_id])
        return _view(row, states.get(key_id))

    async def enable(self, key_id: int) -> KeyView:
        """Back into rotation with a clean slate (no cooldown, no backoff history)."""
        row = await repo.set_status(self.pool, key_id, "active", None)
        if row is None:
            raise NotFound(f"No provider key #{key_id}", code="key_not_found")
        await self.leases.clear_health(key_id)
        await self.sync(row["provider"])
        log.info("provider key enabled", extra={"key_id": key_id, "provider": row["provider"]})
        return await self.get_key(key_id)

    async def disable(self, key_id: int, reason: str = "disabled by an operator") -> KeyView:
        reason = safe_text(reason or "disabled by an operator", 300)
        row = await repo.set_status(self.pool, key_id, "disabled", reason)
        if row is None:
            raise NotFound(f"No provider key #{key_id}", code="key_not_found")
        await self.leases.drop_candidate(row["provider"], key_id)
        await self.sync(row["provider"])
        log.info("provider key disabled", extra={"key_id": key_id, "provider": row["provider"], "reason": reason})
        return await self.get_key(key_id)

    async def remove(self, key_id: int) -> None:
        row = await repo.delete_key(self.pool, key_id)
        if row is None:
            raise NotFound(f"No provider key #{key_id}", code="key_not_found")
        self._sealed.pop(key_id, None)
        await self.leases.drop_candidate(row["provider"], key_id)
        await self.sync(row["provider"])
        await self.leases.forget(key_id)
        log.info("provider key removed", extra={"key_id": key_id, "provider": row["provider"]})

    async def rotate_master(self) -> int:
        """Re-encrypt every stored key under the active master key, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await repo.sealed_keys_for_update(conn)
            for row in rows:
                secret = self.cipher.decrypt(row["id"], row["provider"], _sealed(row))
                await repo.update_sealed(conn, row["id"], self.cipher.encrypt(row["id"], row["provider"], secret))
                del secret
        self._sealed.clear()
        log.info("provider keys re-encrypted", extra={"count": len(rows), "key_version": self.cipher.active_version})
        return len(rows)

    # --- for other domains -------------------------------------------------------------

    async def active_keys(self, provider: str) -> list[KeyInfo]:
        rows = await repo.list_keys(self.pool, provider)
        return [KeyInfo(r["id"], r["provider"], r["label"], r["last4"], r["status"]) for r in rows if r["status"] == "active"]

    async def revision(self, provider: str) -> int | None:
        """A counter that moves whenever the provider's active keys change (None: unknown now).
        Per-process caches of anything derived from the key set compare it before trusting
        themselves."""
        return await self.leases.revision(provider)

    async def secret_for(self, key_id: int) -> str:
        """The plaintext of one key, for calls that need a specific key outside run() (voice listing)."""
        record = await self._sealed_record(key_id)
        if record is None:
            raise NotFound(f"No provider key #{key_id}", code="key_not_found")
        return self._decrypt(record)

    def provider(self, name: str) -> Provider:
        return self.providers.get(name)

    def client(self, lease: Lease) -> Any:
        """The provider's SDK client for this lease, sharing the provider's connection pool."""
        return self.providers.get(lease.provider).client(lease.secret)

    # --- leasing -----------------------------------------------------------------------

    async def acquire(
        self, provider: str, *, ttl: float | None = None, key_ids: Iterable[int] | None = None, exclude: Iterable[int] = ()
    ) -> Lease:
        """A lease on the best available key, or ServiceUnavailable(capacity_exhausted). Release it!"""
        allowed = None if key_ids is None else set(key_ids)
        result = await self._lease(provider, ttl or self.settings.upstream_deadline + self.config.lease_grace, allowed, set(exclude))
        if isinstance(result, Refused):
            raise await self._refusal(provider, result, allowed)
        return result

    async def release(self, lease: Lease, *, succeeded: bool = True) -> None:
        """Free the lease; a success also counts the quota the attempt reported (`lease.cost`)."""
        in_flight = await self.leases.release(
            lease.key_id, lease.lease_id, succeeded=succeeded, provider=lease.provider, cost=lease.cost
        )
        self.metrics.keys_in_flight.labels(str(lease.key_id)).set(in_flight)
        self.line.released()

    def attempt_timeout(self, seconds: float) -> FairTimeout:
        """A bound on one provider call that our own stalls (a busy event loop) do not eat into:
        a timeout then really is the key's slowness, and only then does it cool the key down."""
        return self.stalls.timeout(seconds)

    async def flush_usage(self) -> dict[int, int]:
        """Write the quota used since the last flush to Postgres; returns what was written.

        One worker at a time (a Redis lock), so an amount is never added twice by two workers.
        Until it is written, the amount stays in Redis: a worker that stops or dies before the
        flush loses nothing, the next flush of any worker writes it.
        """
        token = uuid.uuid4().hex
        if not await self.leases.try_lock(USAGE_FLUSH_LOCK, token, self.config.refresh_lock_ttl):
            return {}
        try:
            amounts = await self.leases.unflushed_usage()
            if amounts:
                await repo.add_usage(self.pool, list(amounts), list(amounts.values()))
                await self.leases.settle_usage(amounts)
            return amounts
        finally:
            await self.leases.unlock(USAGE_FLUSH_LOCK, token)

    async def run(
        self,
        provider: str,
        attempt: Callable[[Lease], Awaitable[T]],
        *,
        deadline: float,
        max_attempts: int,
        key_ids: set[int] | None = None,
        queue_as: str | None = None,
    ) -> T:
        """Run `attempt` on leased keys until it succeeds, the request is wrong, or time/attempts run out.

        When every key is busy the request waits in the fair line (waiting.py) as `queue_as` (an
        account id) for up to KEY_WAIT_SECONDS; that wait does not count against `deadline`.

        Raises UpstreamUserError (the request is wrong; no retry), ServiceUnavailable
        (capacity_exhausted: no key can take it now) or UpstreamError (upstream_unavailable).
        """
        tried: set[int] = set()
        failures: list[Failure] = []
        ttl = deadline + self.config.lease_grace
        scope = asyncio.timeout(deadline)
        try:
            async with scope:
                while len(failures) < max(1, max_attempts):
                    lease = await self._lease(provider, ttl, key_ids, tried)
                    if isinstance(lease, Refused):
                        lease = await self._wait_in_line(provider, queue_as, ttl, key_ids, tried, lease, scope, failures)
                    if isinstance(lease, Refused):
                        if not failures:
                            raise await self._refusal(provider, lease, key_ids)
                        raise self._out_of_keys(lease, failures)
                    tried.add(lease.key_id)
                    outcome = await self._attempt(lease, attempt, scope)
                    if not isinstance(outcome, Failure):
                        return outcome.value
                    failures.append(outcome)
                raise UpstreamError(
                    f"The provider did not answer successfully after {len(failures)} attempts",
                    code="upstream_unavailable",
                    details={"attempts": len(failures), "reason": failures[-1].kind.value},
                )
        except TimeoutError:
            if not scope.expired():
                raise
            raise UpstreamError(
                f"The provider did not answer within {deadline:g} seconds",
                code="upstream_unavailable",
                details={"attempts": len(tried), "reason": "deadline"},
            ) from None

    async def _attempt(self, lease: Lease, attempt: Callable[[Lease], Awaitable[T]], scope: asyncio.Timeout) -> "_Ok | Failure":
        try:
            value = await attempt(lease)
        except asyncio.CancelledError:
            if scope.expired():
                # The deadline ran out while this key was working: a hang is a key failure.
                await asyncio.shield(self._settle(lease, Failure(FailureKind.TIMEOUT, message="deadline reached")))
            else:
                await asyncio.shield(self._release_quietly(lease, "cancelled"))
            raise
        except Exception as exc:
            failure = self.providers.classify(lease.provider, exc)
            if failure is None:
                # Not an upstream failure (a bug, or the caller's own error): the key is not to blame.
                await asyncio.shield(self._release_quietly(lease, "error"))
                raise
            await asyncio.shield(self._settle(lease, failure))
            if failure.kind is FailureKind.USER:
                raise self.providers.get(lease.provider).user_error(failure) from None
            return failure
        await asyncio.shield(self._succeed(lease))
        return _Ok(value)

    async def _wait_in_line(
        self, provider: str, queue_as: str | None, ttl: float, key_ids: Iterable[int] | None, tried: set[int],
        refused: Refused, scope: asyncio.Timeout, failures: list[Failure],
    ) -> Lease | Refused:
        """Wait for a slot (the deadline moves by the time waited); a 503 when the wait runs out."""
        loop = asyncio.get_running_loop()
        deadline = scope.when()
        if deadline is not None:
            scope.reschedule(deadline + self.settings.key_wait_seconds + 1)
        started = loop.time()
        account = (queue_as or "anonymous").replace(":", "_")
        outcome = await self.line.wait(
            provider, account, refused, lambda ticket: self._lease(provider, ttl, key_ids, tried, ticket=ticket),
        )
        if deadline is not None:
            scope.reschedule(deadline + (loop.time() - started))
        if not isinstance(outcome, Waited):
            return outcome
        if outcome.reason == "no_keys" or any(f.kind is not FailureKind.CONCURRENCY for f in failures):
            return outcome.refused
        self.metrics.upstream.labels(provider, "wait_" + outcome.reason).inc()
        if outcome.reason == "per_user_cap":
            raise ServiceUnavailable(
                "Your account already has the most requests waiting for a free generator; try again shortly",
                code="capacity_exhausted", retry_after=math.ceil(self.config.no_key_retry_after),
                details={"reason": "too_many_waiting", "limit": self.settings.key_wait_per_user},
            )
        raise ServiceUnavailable(
            f"All provider keys stayed busy for {outcome.seconds:.0f} seconds; try again shortly",
            code="capacity_exhausted", retry_after=self._capacity_exhausted(outcome.refused).headers["Retry-After"],
            details={"reason": "wait_timeout", "waited_seconds": round(outcome.seconds, 1)},
        )

    async def _lease(
        self, provider: str, ttl: float, key_ids: Iterable[int] | None, exclude: set[int], *, ticket: str = "",
    ) -> Lease | Refused:
        allowed = None if key_ids is None else {int(k) for k in key_ids}
        exclude = set(exclude)
        while True:
            result = await self.leases.acquire(provider, ttl=ttl, allowed=allowed, excluded=exclude, ticket=ticket)
            if isinstance(result, Refused) and result.unsynced:
                await self.sync(provider)  # Redis lost its copy (restart): rebuild it from Postgres
                result = await self.leases.acquire(provider, ttl=ttl, allowed=allowed, excluded=exclude, ticket=ticket)
                if isinstance(result, Refused) and result.unsynced:
                    return Refused(cooldown_ms=-1)
            if isinstance(result, Refused):
                return result
            lease = await self._open(provider, result)
            if lease is not None:
                return lease
            exclude.add(result.key_id)

    async def _open(self, provider: str, granted: Granted) -> Lease | None:
        """Decrypt the granted key; a key that vanished or cannot be decrypted is skipped, not fatal."""
        record = await self._sealed_record(granted.key_id)
        try:
            if record is None or record["status"] != "active":
                raise LookupError("key is gone or no longer active")
            secret = self._decrypt(record)
        except (LookupError, KeyDecryptError) as exc:
            await self.leases.release(granted.key_id, granted.lease_id, succeeded=False)
            self._sealed.pop(granted.key_id, None)
            if isinstance(exc, KeyDecryptError):
                log.error("provider key cannot be decrypted", extra={"key_id": granted.key_id, "error": str(exc)})
                await repo.record_error(self.pool, granted.key_id, str(exc))
            else:
                await self.sync(provider)
            return None
        self.metrics.keys_in_flight.labels(str(granted.key_id)).set(granted.in_flight)
        return Lease(
            key_id=granted.key_id,
            provider=provider,
            label=record["label"],
            secret=secret,
            lease_id=granted.lease_id,
            in_flight=granted.in_flight,
            meter=self.providers.get(provider).usage_from_headers if provider in REGISTRY else None,
        )

    async def _sealed_record(self, key_id: int) -> asyncpg.Record | None:
        record = self._sealed.get(key_id)
        if record is None:
            record = await repo.sealed_key(self.pool, key_id)
            if record is not None and record["status"] == "active":
                self._sealed[key_id] = record
        return record

    def _decrypt(self, record: asyncpg.Record) -> str:
        secret = self.cipher.decrypt(record["id"], record["provider"], _sealed(record))
        REDACTOR.add([secret])
        return secret

    # --- outcomes ------------------------------------------------------------------------

    async def _succeed(self, lease: Lease) -> None:
        self.metrics.upstream.labels(lease.provider, "ok").inc()
        await self.release(lease, succeeded=True)

    async def _release_quietly(self, lease: Lease, outcome: str) -> None:
        self.metrics.upstream.labels(lease.provider, outcome).inc()
        await self.release(lease, succeeded=False)

    async def _settle(self, lease: Lease, failure: Failure) -> None:
        """Release the lease and apply what the failure says about the key."""
        self.metrics.upstream.labels(lease.provider, failure.kind.value).inc()
        await self.release(lease, succeeded=False)
        if failure.kind is not FailureKind.USER:
            await self._apply_failure(lease.key_id, lease.provider, lease.label, failure)

    async def _apply_failure(self, key_id: int, provider: str, label: str, failure: Failure) -> None:
        kind = failure.kind
        context = {"key_id": key_id, "provider": provider, "label": label, "failure": failure.describe()}
        if kind.cools_down:
            cooldown = await self.leases.cool_down(
                key_id,
                base=self.config.cooldown_base,
                maximum=self.config.cooldown_max,
                retry_after=failure.retry_after,
                error_window=self.config.error_window,
            )
            await repo.record_error(self.pool, key_id, failure.describe())
            log.warning(
                "provider key cooling down",
                extra={**context, "cooldown_seconds": cooldown.duration_ms / 1000, "consecutive_failures": cooldown.consecutive_failures},
            )
        elif kind is FailureKind.QUOTA:
            reset_at = await self._reset_time(key_id)
            await repo.set_exhausted(self.pool, key_id, reset_at, failure.describe())
            await self.leases.drop_candidate(provider, key_id)
            await self.sync(provider)
            log.warning("provider key exhausted until its quota resets", extra={**context, "reset_at": reset_at.isoformat()})
        elif kind.disables:
            reason = failure.describe()
            await repo.disable_for_error(self.pool, key_id, reason)
            await self.leases.drop_candidate(provider, key_id)
            self._sealed.pop(key_id, None)
            await self.sync(provider)
            # An operator has to act on this one: logged as an error so alerting picks it up.
            log.error("provider key disabled by the provider's answer", extra={**context, "reason": reason})
        else:  # concurrency cap or forbidden for this key: another key now, no cooldown
            await self.leases.count_error(key_id, error_window=self.config.error_window)
            await repo.record_error(self.pool, key_id, failure.describe())
            log.info("provider key passed over", extra=context)

    async def _reset_time(self, key_id: int) -> datetime:
        row = await repo.get_key(self.pool, key_id)
        reset_at = row["quota_reset_at"] if row is not None else None
        if reset_at is None or reset_at <= _now():
            reset_at = _now() + timedelta(seconds=self.config.quota_reset_default)
        return reset_at

    async def _refusal(self, provider: str, refused: Refused, allowed: set[int] | None) -> ApiError:
        """No key could be leased: busy keys (retry shortly) or no active key at all (no retry helps)."""
        if refused.cooldown_ms < 0:
            candidates = await self.leases.candidate_ids(provider)
            if allowed is not None:
                candidates &= {int(k) for k in allowed}
            if not candidates:
                return NoActiveKey(provider)
        return self._capacity_exhausted(refused)

    def _capacity_exhausted(self, refused: Refused) -> ServiceUnavailable:
        if refused.cooldown_ms >= 0:
            retry_after = max(1, math.ceil(refused.cooldown_ms / 1000))
        else:
            retry_after = max(1, math.ceil(self.config.no_key_retry_after))
        return ServiceUnavailable(
            "All provider keys are busy; try again shortly", code="capacity_exhausted", retry_after=retry_after
        )

    def _out_of_keys(self, refused: Refused, failures: list[Failure]) -> Exception:
        if all(f.kind is FailureKind.CONCURRENCY for f in failures):
            return self._capacity_exhausted(refused)
        return UpstreamError(
            f"No provider key answered successfully ({len(failures)} attempts)",
            code="upstream_unavailable",
            details={"attempts": len(failures), "reason": failures[-1].kind.value},
        )

    # --- probing and syncing -----------------------------------------------------------

    async def probe(self, key_id: int) -> ProbeResult:
        """Ask the provider about one key and record the answer: quota, re-activation, or the failure."""
        record = await repo.sealed_key(self.pool, key_id)
        if record is None:
            raise NotFound(f"No provider key #{key_id}", code="key_not_found")
        provider = record["provider"]
        try:
            secret = self._decrypt(record)
            reading = await self._probe(provider, secret)
        except KeyDecryptError as exc:
            await repo.record_error(self.pool, key_id, str(exc))
            return ProbeResult(key_id, False, record["status"], Failure(FailureKind.SERVER, message=str(exc)))
        except Exception as exc:
            failure = self.providers.classify(provider, exc) or Failure(FailureKind.SERVER, message=type(exc).__name__)
            self.metrics.upstream.labels(provider, "probe_" + failure.kind.value).inc()
            if failure.kind is FailureKind.QUOTA or failure.kind.disables or failure.kind.cools_down:
                await self._apply_failure(key_id, provider, record["label"], failure)
            else:
                await repo.record_error(self.pool, key_id, failure.describe())
            await repo.mark_checked(self.pool, key_id)
            row = await repo.get_key(self.pool, key_id)
            return ProbeResult(key_id, False, row["status"] if row else "removed", failure)
        self.metrics.upstream.labels(provider, "probe_ok").inc()
        return ProbeResult(key_id, True, await self._record_reading(key_id, provider, reading), reading=reading)

    async def _record_reading(self, key_id: int, provider: str, reading: QuotaReading) -> str:
        row = await repo.update_quota(
            self.pool,
            key_id,
            limit=reading.limit,
            used=reading.used,
            reset_at=reading.reset_at,
            tier=reading.tier,
            reactivate=not reading.exhausted,
        )
        if row is None:
            return "removed"
        if reading.exhausted and row["status"] == "active":
            reset_at = reading.reset_at or _now() + timedelta(seconds=self.config.quota_reset_default)
            row = await repo.set_exhausted(self.pool, key_id, reset_at, "quota_exceeded: no quota left") or row
        if row["status"] == "active":
            # One good answer is enough to trust the key again.
            await self.leases.clear_health(key_id)
        await self.sync(provider)
        return row["status"]

    async def _probe(self, provider: str, secret: str) -> QuotaReading:
        if provider not in REGISTRY:
            raise BadRequest(f"Keys of provider {provider!r} cannot be validated", code="provider_not_supported")
        return await self.providers.get(provider).probe(secret, timeout=self.config.probe_timeout)

    async def _validate_with_provider(self, provider: str, secret: str) -> QuotaReading:
        try:
            return await self._probe(provider, secret)
        except BadRequest:
            raise
        except Exception as exc:
            failure = self.providers.classify(provider, exc)
            if failure is None:
                log.exception("key validation failed unexpectedly", extra={"provider": provider})
                raise UpstreamError("The key could not be validated; it was not saved", code="upstream_unavailable") from None
        if failure.kind is FailureKind.QUOTA:
            # A valid key with nothing left this period: stored, parked until its reset.
            return QuotaReading(limit=None, used=None, reset_at=None, quota_exceeded=True)
        if failure.kind is FailureKind.INVALID_KEY:
            raise BadRequest(f"{provider} rejected the key ({failure.describe()}); it was not saved", code="invalid_provider_key")
        if failure.kind in (FailureKind.PERMISSIONS, FailureKind.FORBIDDEN):
            raise BadRequest(
                f"The key lacks a permission the key bank needs to validate it and read its quota "
                f"({self.providers.get(provider).validation_needs}): {failure.describe()}",
                code="key_missing_permissions",
            )
        if failure.kind is FailureKind.USER:
            raise BadRequest(f"{provider} refused the validation request ({failure.describe()})", code="invalid_provider_key")
        raise UpstreamError(
            f"{provider} could not be reached to validate the key ({failure.describe()}); it was not saved",
            code="upstream_unavailable",
        )

    async def _reject_duplicate(self, provider: str, secret: str) -> None:
        for record in await repo.sealed_keys(self.pool, provider):
            try:
                existing = self.cipher.decrypt(record["id"], record["provider"], _sealed(record))
            except KeyDecryptError:
                continue
            if hmac.compare_digest(existing.encode(), secret.encode()):
                raise Conflict(f"This key is already in the bank as #{record['id']} ({record['label']})", code="key_duplicate")

    async def sync(self, provider: str) -> bool:
        """Copy the provider's active keys to Redis, unless a newer copy is already there."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            revision, rows = await repo.candidate_snapshot(conn, provider)
        candidates = [
            CandidateRow(
                key_id=r["id"],
                max_concurrency=r["max_concurrency"],
                weight=r["weight"],
                remaining=None if r["quota_limit"] is None else r["quota_limit"] - (r["quota_used"] or 0),
            )
            for r in rows
        ]
        return await self.leases.sync(provider, revision, candidates)

    async def sync_all(self) -> None:
        providers = set(await repo.providers_in_use(self.pool)) | set(REGISTRY)
        for provider in sorted(providers):
            await self.sync(provider)


@dataclass(frozen=True)
class _Ok:
    value: Any


def _check_new_key(provider: str, label: str, secret: str, max_concurrency: int, weight: int) -> tuple[str, str, str]:
    provider = (provider or "").strip().lower()
    if provider not in REGISTRY:
        raise ValidationFailed(f"provider must be one of {', '.join(REGISTRY)}", details={"field": "provider"})
    label = (label or "").strip()
    if not 1 <= len(label) <= 100:
        raise ValidationFailed("label must be 1 to 100 characters", details={"field": "label"})
    if not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 1000:
        raise ValidationFailed("max_concurrency must be between 1 and 1000", details={"field": "max_concurrency"})
    if not isinstance(weight, int) or not 1 <= weight <= 1000:
        raise ValidationFailed("weight must be between 1 and 1000", details={"field": "weight"})
    secret = (secret or "").strip()
    if len(secret) < 8 or any(ch.isspace() for ch in secret) or not secret.isprintable():
        raise ValidationFailed("the key must be at least 8 printable characters without spaces", details={"field": "secret"})
    return provider, label, secret


def _sealed(record: asyncpg.Record) -> Sealed:
    return Sealed(ciphertext=bytes(record["ciphertext"]), nonce=bytes(record["nonce"]), key_version=record["key_version"])


def _view(row: asyncpg.Record, state: RuntimeState | None = None) -> KeyView:
    state = state or RuntimeState()
    cooldown_until = (
        datetime.fromtimestamp(state.cooldown_until_ms / 1000, tz=timezone.utc) if state.cooling else None
    )
    return KeyView(
        id=row["id"],
        provider=row["provider"],
        label=row["label"],
        last4=row["last4"],
        status=row["status"],
        disabled_reason=row["disabled_reason"],
        max_concurrency=row["max_concurrency"],
        weight=row["weight"],
        tier=row["tier"],
        quota_limit=row["quota_limit"],
        quota_used=_plus(row["quota_used"], state.unflushed_usage),
        quota_reset_at=row["quota_reset_at"],
        quota_checked_at=row["quota_checked_at"],
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        key_version=row["key_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        in_flight=state.in_flight,
        cooldown_until=cooldown_until,
        consecutive_failures=state.consecutive_failures,
        recent_errors=state.recent_errors,
    )


def _plus(used: int | None, unflushed: int) -> int | None:
    return (used or 0) + unflushed if unflushed else used


def _now() -> datetime:
    return datetime.now(timezone.utc)

