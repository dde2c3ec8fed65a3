"""Settings come from environment variables, and only from here.

Every field names its variable and says what it is for; README.md and .env.example are
checked against this list by a test, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENVIRONMENTS = ("dev", "test", "production")

# Values a production deployment must never run with.
DEV_PLACEHOLDER = "change-me"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def env(name: str, doc: str, default: Any = None, *, secret: bool = False, kind: type = str):
    return field(
        default=default,
        metadata={"env": name, "doc": doc, "secret": secret, "kind": kind},
    )


@dataclass(frozen=True)
class Settings:
    environment: str = env("APP_ENV", "dev, test or production; production refuses default secrets", "dev")
    host: str = env("HOST", "address the server listens on", "127.0.0.1")
    port: int = env("PORT", "port the server listens on", 8080, kind=int)
    workers: int = env("WORKERS", "server processes sharing the port (SO_REUSEPORT); `serve --workers N` overrides", 1, kind=int)
    public_url: str = env("PUBLIC_URL", "external base URL of the server and portal (links, redirects)", "http://127.0.0.1:8080")
    log_level: str = env("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", "INFO")
    data_dir: str = env("DATA_DIR", "folder for local data: dev secrets, audio storage, private Postgres/Redis", str(PROJECT_ROOT / ".data"))

    database_url: str = env("DATABASE_URL", "Postgres connection URL", "postgresql://postgres@127.0.0.1:5432/sfx_dev", secret=True)
    db_pool_min: int = env("DB_POOL_MIN", "smallest number of pooled Postgres connections", 2, kind=int)
    db_pool_max: int = env("DB_POOL_MAX", "largest number of pooled Postgres connections", 20, kind=int)
    redis_url: str = env("REDIS_URL", "Redis connection URL", "redis://127.0.0.1:6379/0", secret=True)
    redis_prefix: str = env("REDIS_PREFIX", "prefix of every Redis key, so environments can share one Redis", "sfx:")

    max_json_bytes: int = env("MAX_JSON_BYTES", "largest JSON request body accepted (413 above)", 65536, kind=int)

    jwt_secrets: str = env(
        "JWT_SECRETS",
        "signing secrets as kid=secret pairs separated by commas; all verify, the active one signs",
        DEV_PLACEHOLDER,
        secret=True,
    )
    jwt_active_kid: str = env("JWT_ACTIVE_KID", "kid of the secret that signs new access tokens", "dev")
    jwt_issuer: str = env("JWT_ISSUER", "iss claim of access tokens", "sfx-studio")
    jwt_audience: str = env("JWT_AUDIENCE", "aud claim of access tokens", "sfx-panel")
    access_token_ttl: int = env("ACCESS_TOKEN_TTL", "access token lifetime in seconds", 900, kind=int)
    refresh_token_ttl: int = env("REFRESH_TOKEN_TTL", "refresh token lifetime in seconds", 30 * 86400, kind=int)
    bcrypt_cost: int = env("BCRYPT_COST", "bcrypt work factor for password hashes", 12, kind=int)
    login_max_failures: int = env("LOGIN_MAX_FAILURES", "failed logins per account or IP before throttling", 5, kind=int)
    login_failure_window: int = env("LOGIN_FAILURE_WINDOW", "seconds over which failed logins are counted", 900, kind=int)
    signup_max_per_ip: int = env("SIGNUP_MAX_PER_IP", "account creations (API or portal) one IP may attempt per window", 10, kind=int)
    signup_window: int = env("SIGNUP_WINDOW", "seconds over which sign-up attempts per IP are counted", 3600, kind=int)
    trusted_proxies: str = env(
        "TRUSTED_PROXIES",
        "addresses or CIDR ranges of reverse proxies whose X-Forwarded-For names the client, separated by commas; "
        "empty: the TCP peer is the client",
        "",
    )

    hold_ttl: int = env("CREDIT_HOLD_TTL", "seconds after which an unsettled credit hold is released by the sweep", 600, kind=int)
    upgrade_url: str = env("UPGRADE_URL", "where the panel sends users who are out of credits (default: PUBLIC_URL/pricing)", "")

    keybank_master_keys: str = env(
        "KEYBANK_MASTER_KEYS",
        "AES-256 master keys for the provider key bank as version=base64key pairs separated by commas",
        DEV_PLACEHOLDER,
        secret=True,
    )
    keybank_active_version: str = env("KEYBANK_ACTIVE_VERSION", "master key version that encrypts new rows", "1")
    keybank_refresh_interval: float = env(
        "KEYBANK_REFRESH_INTERVAL", "seconds between quota refreshes of each provider key (one worker probes at a time)", 600.0, kind=float
    )
    elevenlabs_base_url: str = env("ELEVENLABS_BASE_URL", "ElevenLabs API root; the simulator's address in dev", "https://api.elevenlabs.io")
    allow_simulator: bool = env("ALLOW_SIMULATOR", "allow a local simulator as ElevenLabs or LLM provider in production (true/false)", False, kind=bool)
    upstream_deadline: float = env("UPSTREAM_DEADLINE", "total seconds a generation may spend on upstream attempts", 90.0, kind=float)
    upstream_max_attempts: int = env("UPSTREAM_MAX_ATTEMPTS", "most upstream attempts for one generation", 4, kind=int)
    audio_headroom_db: float = env("AUDIO_HEADROOM_DB", "peak level of normalised audio in dBFS", -1.0, kind=float)
    sfx_model_id: str = env("SFX_MODEL_ID", "ElevenLabs sound-effects model used for /v1/sfx", "eleven_text_to_sound_v2")
    voice_model_id: str = env("VOICE_MODEL_ID", "ElevenLabs text-to-speech model when a voice request names none", "eleven_multilingual_v2")
    voice_chunk_chars: int = env("VOICE_CHUNK_CHARS", "longest text sent in one text-to-speech call; longer scripts are split at sentences and stitched", 2500, kind=int)
    voices_refresh_interval: float = env("VOICES_REFRESH_INTERVAL", "seconds between refreshes of the cached voice list (one worker at a time)", 600.0, kind=float)
    upstream_attempt_timeout: float = env("UPSTREAM_ATTEMPT_TIMEOUT", "seconds one upstream attempt may take before the next key is tried (within UPSTREAM_DEADLINE)", 45.0, kind=float)
    upstream_max_connections: int = env("UPSTREAM_MAX_CONNECTIONS", "size of the shared HTTP connection pool to ElevenLabs per process", 100, kind=int)
    # --- prompt assistance: LLM providers in the key bank (server/assist, server/providers) ---
    openai_base_url: str = env("OPENAI_BASE_URL", "OpenAI API root (with /v1); the LLM simulator's /openai/v1 in dev", "https://api.openai.com/v1")
    anthropic_base_url: str = env("ANTHROPIC_BASE_URL", "Anthropic API root; the LLM simulator's /anthropic in dev", "https://api.anthropic.com")
    gemini_base_url: str = env("GEMINI_BASE_URL", "Google Gemini API root; the LLM simulator's /gemini in dev", "https://generativelanguage.googleapis.com/")
    assist_routes: str = env(
        "ASSIST_ROUTES",
        "provider:model pairs per assist feature, tried in order, as feature=provider:model>provider:model entries "
        "separated by semicolons; a feature left out uses the `default` entry",
        "default=openai:gpt-4.1-mini>anthropic:claude-haiku-4-5>gemini:gemini-2.5-flash",
    )
    assist_deadline: float = env("ASSIST_DEADLINE", "total seconds one assist request may spend on LLM calls, all providers together", 60.0, kind=float)

    retention_sweep_interval: float = env("RETENTION_SWEEP_INTERVAL", "seconds between sweeps deleting audio older than the owner's plan keeps it", 3600.0, kind=float)
    # Outages of Postgres or Redis (issue #16).
    settle_wait: float = env("SETTLE_WAIT_SECONDS", "seconds a client waits for a capture or release to get through a database outage before it gets 503 (the write goes on in the background)", 10.0, kind=float)

    # --- several machines: shared object storage and a fair wait for busy keys ---
    storage_url: str = env(
        "STORAGE_URL",
        "where audio and panel packages are kept (in audio/ and packages/ below it): empty for DATA_DIR, "
        "file:///path for another local folder, s3://bucket/prefix for an S3-compatible bucket shared by every server",
        "",
    )
    s3_endpoint: str = env("S3_ENDPOINT", "S3 API endpoint URL (MinIO, R2, B2, Ceph); empty: AWS itself in S3_REGION", "")
    s3_region: str = env("S3_REGION", "region of the bucket (S3-compatible stores accept any, e.g. us-east-1)", "us-east-1")
    s3_access_key_id: str = env("S3_ACCESS_KEY_ID", "access key id for the bucket; empty: the AWS_* environment or instance role", "", secret=True)
    s3_secret_access_key: str = env("S3_SECRET_ACCESS_KEY", "secret access key for the bucket", "", secret=True)
    storage_timeout: float = env("STORAGE_TIMEOUT", "seconds one storage call may take, retries included, before it answers 503 storage_unavailable", 10.0, kind=float)
    presign_ttl: int = env("PRESIGN_TTL", "seconds a presigned S3 download link handed to the panel stays valid", 300, kind=int)
    key_wait_seconds: float = env("KEY_WAIT_SECONDS", "longest a request waits in line for a free provider key before 503 capacity_exhausted (0: refuse at once)", 10.0, kind=float)
    key_wait_per_user: int = env("KEY_WAIT_PER_USER", "requests one account may have waiting in that line at once; more are refused at once", 20, kind=int)

    stripe_secret_key: str = env("STRIPE_SECRET_KEY", "Stripe secret API key", DEV_PLACEHOLDER, secret=True)
    stripe_webhook_secret: str = env("STRIPE_WEBHOOK_SECRET", "Stripe webhook signing secret", DEV_PLACEHOLDER, secret=True)
    stripe_api_base: str = env("STRIPE_API_BASE", "Stripe API root; a local fake in tests", "https://api.stripe.com")
    stripe_prices: str = env(
        "STRIPE_PRICES",
        "plan and pack to Stripe price id as name=price_id pairs separated by commas",
        "basic=price_basic,pro=price_pro,enterprise=price_enterprise,pack_500=price_pack_500",
    )
    payment_grace_days: int = env("PAYMENT_GRACE_DAYS", "days generation continues after a failed payment", 7, kind=int)

    session_secret: str = env("SESSION_SECRET", "32-byte base64 key encrypting portal session cookies", DEV_PLACEHOLDER, secret=True)
    # --- releases and panel updates ---
    update_signing_key: str = env(
        "UPDATE_SIGNING_KEY",
        "base64 Ed25519 private key(s) signing panel update manifests, separated by commas; each signs "
        "(two during a rotation); `releases keygen` makes one",
        DEV_PLACEHOLDER,
        secret=True,
    )
    update_manifest_ttl: int = env("UPDATE_MANIFEST_TTL", "seconds an update manifest stays valid; re-signed every third of it", 3 * 86400, kind=int)
    update_manifest_max_age: int = env("UPDATE_MANIFEST_MAX_AGE", "Cache-Control max-age of update manifests in seconds", 300, kind=int)
    release_max_bytes: int = env("RELEASE_MAX_BYTES", "largest panel package (ZXP/CCX) that may be published, in bytes", 100 * 1024 * 1024, kind=int)
    panel_version_required: bool = env(
        "PANEL_VERSION_REQUIRED", "refuse /v1 calls without X-Panel-Version with 426 (true/false; scripts then fail too)", False, kind=bool
    )

    smtp_url: str = env("SMTP_URL", "smtp://user:pass@host:port for outgoing mail; empty keeps mail in the outbox table", "", secret=True)

    # --- alerts and business figures (server/alerts, server/business) ---
    topup_url: str = env("TOPUP_URL", "where usage mails and the panel's low-credit banner send users to top up or upgrade (default: PUBLIC_URL/billing)", "")
    alert_emails: str = env("ALERT_EMAILS", "addresses that get key-bank alerts, separated by commas; empty: every active admin account", "")
    alert_webhook_url: str = env("ALERT_WEBHOOK_URL", "optional URL key-bank alerts are also POSTed to as JSON {\"text\": ...} (Slack, Mattermost, Teams)", "", secret=True)
    alert_check_interval: float = env("ALERT_CHECK_INTERVAL", "seconds between key-bank checks and usage-mail retries (each worker; incidents are told once)", 60.0, kind=float)
    alert_pool_min_days: float = env("ALERT_POOL_MIN_DAYS", "alert when a provider's remaining quota lasts fewer days than this at the last 7 days' burn rate", 5.0, kind=float)
    upstream_prices: str = env(
        "UPSTREAM_PRICES",
        "US dollars per 1,000 characters or tokens as provider=price pairs separated by commas; prices upstream cost on the business page",
        "elevenlabs=0.30,openai=0.002,anthropic=0.003",
    )

    @property
    def topup_link(self) -> str:
        return self.topup_url or self.public_url.rstrip("/") + "/billing"

    @property
    def upstream_price_per_1000(self) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in parse_pairs(self.upstream_prices, "UPSTREAM_PRICES").items()}
        except ValueError:
            raise SettingsError("UPSTREAM_PRICES prices must be numbers") from None

    # --- helpers ---------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def jwt_keys(self) -> dict[str, str]:
        return parse_pairs(self.jwt_secrets, "JWT_SECRETS")

    @property
    def master_keys(self) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in parse_pairs(self.keybank_master_keys, "KEYBANK_MASTER_KEYS").items()}

    @property
    def price_ids(self) -> dict[str, str]:
        return parse_pairs(self.stripe_prices, "STRIPE_PRICES")

    @functools.cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(ipaddress.ip_network(item.strip(), strict=False)
                         for item in self.trusted_proxies.split(",") if item.strip())
        except ValueError as exc:
            raise SettingsError(f"TRUSTED_PROXIES: {exc}") from None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def rkey(self, *parts: object) -> str:
        """A Redis key under this environment's prefix."""
        return self.redis_prefix + ":".join(str(p) for p in parts)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name in environ:
                values[f.name] = _convert(name, environ[name], f.metadata["kind"])
        settings = cls(**values)
        if not settings.upgrade_url:
            settings = dataclasses.replace(settings, upgrade_url=settings.public_url.rstrip("/") + "/pricing")
        if settings.environment not in ENVIRONMENTS:
            raise SettingsError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}")
        if settings.is_production:
            settings.check_production()
        else:
            settings = settings.with_local_secrets()
        settings.validate()
        return settings

    def check_production(self) -> None:
        missing = [
            f.metadata["env"]
            for f in dataclasses.fields(self)
            if f.metadata["secret"] and getattr(self, f.name) == DEV_PLACEHOLDER
        ]
        if missing:
            raise SettingsError("production needs real values for: " + ", ".join(missing))
        if "dev" in self.jwt_keys and self.jwt_keys["dev"] == DEV_PLACEHOLDER:
            raise SettingsError("JWT_SECRETS still holds the development secret")

    def with_local_secrets(self) -> "Settings":
        """Outside production, secrets left at the placeholder are generated once and kept under DATA_DIR."""
        wanted = {
            f.name: f.metadata["env"]
            for f in dataclasses.fields(self)
            if f.metadata["secret"] and getattr(self, f.name) == DEV_PLACEHOLDER
        }
        if not wanted:
            return self
        store = self.data_path / "secrets.json"
        kept: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
        changed = False
        for name, var in wanted.items():
            if var not in kept:
                kept[var] = _generate_secret(var)
                changed = True
        if changed:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_suffix(".tmp")
            tmp.write_text(json.dumps(kept, indent=2))
            tmp.chmod(0o600)
            tmp.replace(store)
        return dataclasses.replace(self, **{name: kept[var] for name, var in wanted.items()})

    def validate(self) -> None:
        if self.jwt_active_kid not in self.jwt_keys:
            raise SettingsError("JWT_ACTIVE_KID must name one of the kids in JWT_SECRETS")
        for version, key in self.master_keys.items():
            if len(key) != 32:
                raise SettingsError(f"KEYBANK_MASTER_KEYS version {version} must be 32 bytes (base64)")
        if self.keybank_active_version not in self.master_keys:
            raise SettingsError("KEYBANK_ACTIVE_VERSION must name a version in KEYBANK_MASTER_KEYS")
        if self.workers < 1:
            raise SettingsError("WORKERS must be at least 1")
        self.trusted_networks  # noqa: B018  (parses TRUSTED_PROXIES: a typo fails at start, not per request)
        self.upstream_price_per_1000  # noqa: B018  (a typo in UPSTREAM_PRICES fails at start)
        from server.releases.signing import SigningKeyError, load_keys

        try:
            load_keys(self.update_signing_key)
        except SigningKeyError as exc:
            raise SettingsError(str(exc)) from None
        if self.update_manifest_ttl < 3600:
            raise SettingsError("UPDATE_MANIFEST_TTL must be at least 3600 seconds")
        if self.storage_url and not self.storage_url.startswith(("file://", "s3://")):
            raise SettingsError("STORAGE_URL must be empty, file:///path or s3://bucket/prefix")
        if self.key_wait_seconds < 0 or self.key_wait_per_user < 1:
            raise SettingsError("KEY_WAIT_SECONDS must be 0 or more and KEY_WAIT_PER_USER at least 1")
        if self.max_json_bytes < 1024:
            raise SettingsError("MAX_JSON_BYTES must be at least 1024")
        if self.is_production and self.bcrypt_cost < 10:
            raise SettingsError("BCRYPT_COST must be at least 10 in production")
        if self.is_production and not self.allow_simulator and not self.elevenlabs_base_url.startswith("https://"):
            # A local simulator answers with synthetic audio: real customers must never be served by it.
            raise SettingsError("ELEVENLABS_BASE_URL must be an https:// ElevenLabs address in production "
                                "(set ALLOW_SIMULATOR=true only for a demo deployment)")
        for var, url in (("OPENAI_BASE_URL", self.openai_base_url), ("ANTHROPIC_BASE_URL", self.anthropic_base_url),
                         ("GEMINI_BASE_URL", self.gemini_base_url)):
            if self.is_production and not self.allow_simulator and not url.startswith("https://"):
                raise SettingsError(f"{var} must be an https:// address in production")
        from server.assist.routing import parse_routes  # a typo in the routes fails at start, not per request

        parse_routes(self.assist_routes)

    def redacted(self) -> dict[str, Any]:
        """A view safe to print or log."""
        return {
            f.metadata["env"]: ("***" if f.metadata["secret"] else getattr(self, f.name))
            for f in dataclasses.fields(self)
        }

    def secret_values(self) -> list[str]:
        values = []
        for f in dataclasses.fields(self):
            if f.metadata["secret"]:
                value = getattr(self, f.name)
                if isinstance(value, str) and value and f.name not in ("database_url", "redis_url"):
                    # Whole entries too: a base64 key ends in "=", which is not a kid separator.
                    values.extend(part for v in value.split(",") if v for part in (v, v.split("=", 1)[-1]))
        return [v for v in values if len(v) >= 8]


def documented_variables() -> dict[str, str]:
    return {f.metadata["env"]: f.metadata["doc"] for f in dataclasses.fields(Settings)}


def parse_pairs(raw: str, name: str) -> dict[str, str]:
    pairs = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise SettingsError(f"{name} entries must look like name=value")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    if not pairs:
        raise SettingsError(f"{name} must not be empty")
    return pairs


def _convert(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes")
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a {kind.__name__}") from None


def _generate_secret(var: str) -> str:
    if var == "JWT_SECRETS":
        return "dev=" + secrets.token_urlsafe(48)
    if var == "KEYBANK_MASTER_KEYS":
        return "1=" + base64.b64encode(secrets.token_bytes(32)).decode()
    if var == "SESSION_SECRET":
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    if var == "UPDATE_SIGNING_KEY":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(raw).decode()
    if var in ("DATABASE_URL", "REDIS_URL", "SMTP_URL"):
        return ""
    return "dev_" + secrets.token_urlsafe(32)
