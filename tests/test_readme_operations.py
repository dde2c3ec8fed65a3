"""What the README tells an operator works as written: the sign-in body it gives is the one the API
requires, and its development commands reach the local simulator and the local Stripe."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from server.auth.handlers import LoginRequest
from server.settings import Settings
from server.simulator import SimulatorState, start_simulator
from server.simulator.stripe import running_fake_stripe


def readme(project_root) -> str:
    return (project_root / "README.md").read_text()


def test_the_readme_gives_every_required_field_of_the_login_body(project_root):
    match = re.search(r"`POST /v1/auth/login` with `\{([^}]*)\}`", readme(project_root))
    assert match, "the README does not show the login body"
    documented = set(re.findall(r'"(\w+)"', match.group(1)))
    assert documented == set(LoginRequest.model_json_schema()["required"])


async def test_the_readmes_development_commands_run_against_the_local_simulator_and_stripe(project_root, test_env, db):
    block = re.search(r"```sh\n(export DATABASE_URL=.*?)```", readme(project_root), re.S)
    assert block, "the README has no development commands block"
    settings = Settings.from_env(test_env)
    async with await start_simulator(SimulatorState()) as simulator, running_fake_stripe(
        api_key=settings.stripe_secret_key, webhook_secret=settings.stripe_webhook_secret, price_ids=settings.price_ids,
    ) as stripe:
        # The block as written, on this run's ports and with this run's database instead of sfx_dev.
        script = (block.group(1).replace("http://127.0.0.1:8765", simulator.url)
                  .replace("http://127.0.0.1:8766", stripe.base_url))
        script = re.sub(r"^export DATABASE_URL=.*$", "", script, flags=re.M)
        env = {**os.environ, **test_env, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
        proc = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", script, cwd=project_root, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "added key" in text and "status active" in text
    assert "change(s) (dry run: nothing was written)" in text
    row = await db.fetchrow("SELECT provider, status, last4 FROM provider_keys WHERE label = 'sim-2'")
    assert dict(row) == {"provider": "elevenlabs", "status": "active", "last4": "0001"}
