"""`python -m server dev-up`: the whole product on one machine for development and demos.

Starts the ElevenLabs simulator when the key bank has no real ElevenLabs key, the LLM simulator
when it has no real OpenAI, Anthropic or Gemini key, the local Stripe
when no Stripe test key is configured, seeds demo accounts (idempotently), and runs the server
with the portal. Refuses to run in production.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
from datetime import datetime, timedelta, timezone

import asyncpg
from aiohttp import web

from server import serving
from server.settings import Settings

log = logging.getLogger("server.dev")

DEMO_PASSWORD = "demo-password-2026"
DEMO_ACCOUNTS = (
    ("demo@example.com", "user", "free"),
    ("pro@example.com", "user", "pro"),
    ("admin@example.com", "admin", "enterprise"),
)
SIMULATOR_PORT = 8765
SIMULATOR_LABEL = "simulator"
STRIPE_PORT = 8766
LLM_SIMULATOR_PORT = 8767
LLM_PROVIDERS = ("openai", "anthropic", "gemini")


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("dev-up", help="run server, portal, simulator and demo accounts (development only)")
    up.add_argument("--simulator-port", type=int, default=SIMULATOR_PORT)
    up.add_argument("--stripe-port", type=int, default=STRIPE_PORT)
    up.add_argument("--llm-simulator-port", type=int, default=LLM_SIMULATOR_PORT)
    up.set_defaults(func=cmd_dev_up)


def cmd_dev_up(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_production:
        print("dev-up is for development; use `serve` in production")
        return 2
    try:
        serving.run(run(settings, args.simulator_port, args.stripe_port, args.llm_simulator_port))
    except KeyboardInterrupt:
        pass
    return 0


async def run(settings: Settings, simulator_port: int, stripe_port: int, llm_simulator_port: int = LLM_SIMULATOR_PORT) -> None:
    from server.app import create_app
    from server.keybank import KeyBank

    simulator = llm_simulator = None
    async with KeyBank.open(settings) as bank:
        if not await has_real_elevenlabs_key(bank):
            simulator = await start_local_simulator(simulator_port)
            settings = settings.replace(elevenlabs_base_url=simulator.url, allow_simulator=True)
        if not await has_real_llm_key(bank):
            llm_simulator = await start_local_llm_simulator(llm_simulator_port)
            settings = settings.replace(**llm_simulator.base_urls(), allow_simulator=True)
    if simulator is not None or llm_simulator is not None:
        async with KeyBank.open(settings) as bank:
            if simulator is not None:
                await ensure_simulator_key(bank, settings, simulator)
            if llm_simulator is not None:
                await ensure_llm_simulator_keys(bank, settings, llm_simulator)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await seed_demo_accounts(pool, settings)
    finally:
        await pool.close()
    panel_release = await publish_dev_panel_safely(settings)

    stripe_sim = None
    if uses_generated_stripe_key(settings):
        # No Stripe test account configured: checkout, the customer portal and webhooks run
        # against the local Stripe, which posts signed webhooks back to this server.
        stripe_sim = await start_local_stripe(settings, stripe_port)
        settings = settings.replace(stripe_api_base=stripe_sim[0].base_url)

    runner = web.AppRunner(create_app(settings), access_log=None, handler_cancellation=True)  # as `serve`
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    print_banner(settings, panel_release)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if stripe_sim is not None:
            await stripe_sim[1].__aexit__(None, None, None)
        if simulator is not None:
            await simulator.aclose()
        if llm_simulator is not None:
            await llm_simulator.aclose()


async def publish_dev_panel_safely(settings: Settings) -> str:
    """The working tree's panel as a dev release; a failed build must not stop the dev server."""
    from server.releases.devbuild import publish_dev_panel

    try:
        return await publish_dev_panel(settings)
    except Exception as exc:
        log.warning("the dev panel release was not published", exc_info=True)
        return f"not published ({exc})"


def uses_generated_stripe_key(settings: Settings) -> bool:
    """Secrets generated for dev start with dev_; a real Stripe test key starts with sk_test_."""
    return settings.stripe_secret_key.startswith("dev_")


async def start_local_stripe(settings: Settings, port: int):
    from server.simulator.stripe import running_fake_stripe

    context = running_fake_stripe(
        api_key=settings.stripe_secret_key,
        webhook_secret=settings.stripe_webhook_secret,
        price_ids=settings.price_ids,
        webhook_url=settings.public_url.rstrip("/") + "/webhooks/stripe",
        port=port,
    )
    fake = await context.__aenter__()
    return fake, context


async def has_real_elevenlabs_key(bank) -> bool:
    keys = await bank.list_keys("elevenlabs")
    return any(k.status == "active" and k.label != SIMULATOR_LABEL for k in keys)


async def start_local_simulator(port: int):
    from server.simulator import SimulatorState, start_simulator

    return await start_simulator(SimulatorState(), port=port)


async def ensure_simulator_key(bank, settings: Settings, simulator) -> None:
    """The simulator forgets its keys on restart while the key bank keeps them: register the same secret again."""
    secret_file = settings.data_path / "simulator-key"
    if secret_file.exists():
        secret = secret_file.read_text().strip()
    else:
        secret = "sk_" + secrets.token_hex(24)
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secret)
        secret_file.chmod(0o600)
    simulator.state.add_key(secret, character_limit=10_000_000, max_concurrency=10, tier="creator",
                            voices=["Studio Narrator (cloned)"])
    existing = [k for k in await bank.list_keys("elevenlabs") if k.label == SIMULATOR_LABEL]
    if existing:
        # Whatever state it was parked in last time belongs to a simulator that is gone.
        await bank.enable(existing[0].id)
    else:
        await bank.add_key(provider="elevenlabs", label=SIMULATOR_LABEL, secret=secret, max_concurrency=10)


async def has_real_llm_key(bank) -> bool:
    keys = [k for provider in LLM_PROVIDERS for k in await bank.list_keys(provider)]
    return any(k.status == "active" and k.label != SIMULATOR_LABEL for k in keys)


async def start_local_llm_simulator(port: int):
    from server.simulator.llm import start_llm_simulator

    return await start_llm_simulator(port=port)


async def ensure_llm_simulator_keys(bank, settings: Settings, simulator) -> None:
    """One simulator key per LLM provider, the same secrets across restarts (the simulator forgets them)."""
    for provider in LLM_PROVIDERS:
        secret = _dev_secret(settings, f"llm-simulator-key-{provider}", f"sim-{provider}-")
        simulator.state.add_key(provider, secret, label=SIMULATOR_LABEL)
        existing = [k for k in await bank.list_keys(provider) if k.label == SIMULATOR_LABEL]
        if existing:
            await bank.enable(existing[0].id)
        else:
            await bank.add_key(provider=provider, label=SIMULATOR_LABEL, secret=secret, max_concurrency=10)


def _dev_secret(settings: Settings, name: str, prefix: str) -> str:
    secret_file = settings.data_path / name
    if secret_file.exists():
        return secret_file.read_text().strip()
    secret = prefix + secrets.token_hex(24)
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    return secret


async def seed_demo_accounts(pool: asyncpg.Pool, settings: Settings) -> None:
    from server.auth import service as auth
    from server.auth import verification
    from server.credits import service as credits

    for email, role, plan in DEMO_ACCOUNTS:
        user_id = await pool.fetchval("SELECT id FROM users WHERE email = $1", email)
        if user_id is None:
            user_id = await auth.create_user(pool, settings, email, DEMO_PASSWORD, role=role, verified=True)
            await credits.set_plan(pool, user_id, plan)
        # Demo accounts generate at once, also those made before verification existed.
        await verification.mark_verified(pool, user_id)
        await grant_demo_month(pool, user_id, plan)


async def grant_demo_month(pool: asyncpg.Pool, user_id, plan_code: str) -> None:
    """Paid plans get their allowance from Stripe invoices; demo accounts get this month's as if paid."""
    from server.credits import service as credits

    plan = await credits.plan_for(pool, user_id)
    if plan.code == "free":
        return
    now = datetime.now(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    await credits.grant_period(pool, user_id, start, end, plan.monthly_credits, f"demo:{user_id}:{start:%Y-%m}")


def print_banner(settings: Settings, panel_release: str = "") -> None:
    lines = [
        "",
        f"  SFX Studio is running at {settings.public_url}",
        f"  API: {settings.public_url}/v1/openapi.json   portal: {settings.public_url}/",
        f"  ElevenLabs: {settings.elevenlabs_base_url}   Stripe: {settings.stripe_api_base}",
        f"  Panel: {panel_release}; {settings.public_url}/downloads",
        f"  LLMs: {settings.openai_base_url}  {settings.anthropic_base_url}  {settings.gemini_base_url}",
        "  Demo accounts (password: " + DEMO_PASSWORD + "):",
        *[f"    {email:<22} {plan}{' (admin)' if role == 'admin' else ''}" for email, role, plan in DEMO_ACCOUNTS],
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
