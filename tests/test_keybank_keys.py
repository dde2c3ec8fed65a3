"""Provider keys at rest and the operator's commands: encrypted, validated, listed without secrets.

Keys are validated against the ElevenLabs simulator (a real HTTP server) through the official SDK.
"""

import asyncio
import base64
import json
import os
import secrets
import sys

import pytest

from server.keybank import KeyBank, KeyBankConfig
from server.keybank.crypto import KeyCipher, KeyDecryptError, Sealed
from server.web.errors import BadRequest, Conflict, NotFound, UpstreamError, ValidationFailed
from keybank_support import add_key, bank, json_logs, new_secret, redis, secrets_made, sim, sim_settings  # noqa: F401

# --- fixtures (shared ones in keybank_support) ---------------------------------------------


@pytest.fixture
def bank_config():
    return KeyBankConfig(cooldown_base=5.0)


def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# --- encryption ------------------------------------------------------------------------------


def test_encryption_round_trips_and_uses_a_fresh_nonce_each_time():
    cipher = KeyCipher({"1": secrets.token_bytes(32)}, "1")
    first = cipher.encrypt(7, "elevenlabs", "the-secret-value")
    second = cipher.encrypt(7, "elevenlabs", "the-secret-value")
    assert cipher.decrypt(7, "elevenlabs", first) == "the-secret-value"
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext
    assert b"the-secret-value" not in first.ciphertext
    assert first.key_version == "1"


def test_tampered_ciphertext_nonce_or_version_fails_authentication():
    cipher = KeyCipher({"1": secrets.token_bytes(32), "2": secrets.token_bytes(32)}, "1")
    sealed = cipher.encrypt(7, "elevenlabs", "the-secret-value")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    for bad in (
        Sealed(flipped, sealed.nonce, "1"),
        Sealed(sealed.ciphertext, bytes(12), "1"),
        Sealed(sealed.ciphertext, sealed.nonce, "2"),
        Sealed(sealed.ciphertext, sealed.nonce, "9"),
    ):
        with pytest.raises(KeyDecryptError):
            cipher.decrypt(7, "elevenlabs", bad)


def test_a_ciphertext_is_bound_to_its_row_and_provider():
    cipher = KeyCipher({"1": secrets.token_bytes(32)}, "1")
    sealed = cipher.encrypt(7, "elevenlabs", "the-secret-value")
    with pytest.raises(KeyDecryptError):
        cipher.decrypt(8, "elevenlabs", sealed)
    with pytest.raises(KeyDecryptError):
        cipher.decrypt(7, "openai", sealed)


async def test_stored_keys_are_encrypted_and_a_tampered_row_does_not_decrypt(bank, add_key, db):
    view, secret = await add_key("main")
    row = await db.fetchrow("SELECT ciphertext, nonce, key_version, last4 FROM provider_keys WHERE id = $1", view.id)
    assert secret.encode() not in bytes(row["ciphertext"])
    assert row["last4"] == secret[-4:]
    assert await bank.secret_for(view.id) == secret

    await db.execute("UPDATE provider_keys SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) WHERE id = $1", view.id)
    fresh = KeyBank(bank.settings, db, bank.leases.redis)
    with pytest.raises(KeyDecryptError):
        await fresh.secret_for(view.id)


async def test_a_ciphertext_copied_onto_another_row_does_not_decrypt(bank, add_key, db):
    first, _ = await add_key("first")
    second, _ = await add_key("second")
    await db.execute(
        """UPDATE provider_keys SET ciphertext = src.ciphertext, nonce = src.nonce
           FROM provider_keys src WHERE src.id = $1 AND provider_keys.id = $2""",
        first.id, second.id,
    )
    with pytest.raises(KeyDecryptError):
        await KeyBank(bank.settings, db, bank.leases.redis).secret_for(second.id)


async def test_rotate_master_reencrypts_every_row_and_the_old_master_key_is_no_longer_needed(
    sim_settings, db, redis, add_key, bank
):
    old_master = sim_settings.keybank_master_keys
    keys = [await add_key(f"key-{n}") for n in range(3)]
    before = {r["id"]: r for r in await db.fetch("SELECT id, ciphertext, nonce, key_version FROM provider_keys")}

    rotated_settings = sim_settings.replace(keybank_master_keys=f"{old_master},2={master_key()}", keybank_active_version="2")
    assert await KeyBank(rotated_settings, db, redis).rotate_master() == 3

    after = {r["id"]: r for r in await db.fetch("SELECT id, ciphertext, nonce, key_version FROM provider_keys")}
    for key_id, row in after.items():
        assert row["key_version"] == "2"
        assert row["ciphertext"] != before[key_id]["ciphertext"]
        assert row["nonce"] != before[key_id]["nonce"]

    # With only the new master key configured, every secret still decrypts...
    new_only = rotated_settings.replace(keybank_master_keys=rotated_settings.keybank_master_keys.split(",", 1)[1])
    new_bank = KeyBank(new_only, db, redis)
    for view, secret in keys:
        assert await new_bank.secret_for(view.id) == secret
    # ...and the old ciphertexts are dead: the new key cannot open them.
    cipher = KeyCipher.from_settings(new_only)
    for key_id, row in before.items():
        with pytest.raises(KeyDecryptError):
            cipher.decrypt(key_id, "elevenlabs", Sealed(bytes(row["ciphertext"]), bytes(row["nonce"]), "2"))
    # The old master key alone no longer opens the stored rows.
    with pytest.raises(KeyDecryptError):
        await KeyBank(sim_settings, db, redis).secret_for(keys[0][0].id)


# --- adding keys --------------------------------------------------------------------------------


async def test_adding_a_key_validates_it_with_the_provider_and_stores_its_quota(bank, sim, new_secret):
    state, _ = sim
    secret = new_secret()
    sim_key = state.add_key(secret, character_limit=50_000, character_count=1_234, tier="pro")
    view = await bank.add_key(provider="elevenlabs", label="Studio A", secret=secret, max_concurrency=4, weight=2)
    assert view.status == "active"
    assert (view.quota_limit, view.quota_used, view.quota_remaining) == (50_000, 1_234, 48_766)
    assert int(view.quota_reset_at.timestamp()) == sim_key.reset_unix
    assert view.tier == "pro"
    assert (view.max_concurrency, view.weight, view.last4) == (4, 2, secret[-4:])
    calls = [r for r in state.requests if r["path"] == "/v1/user/subscription"]
    assert len(calls) == 1 and calls[0]["key"] == secret[-4:]


async def test_a_key_the_provider_rejects_is_not_saved(bank, db, new_secret):
    with pytest.raises(BadRequest) as err:
        await bank.add_key(provider="elevenlabs", label="bad", secret=new_secret(), max_concurrency=2)
    assert err.value.code == "invalid_provider_key"
    assert await db.fetchval("SELECT count(*) FROM provider_keys") == 0


async def test_a_key_without_the_user_read_permission_is_refused_with_the_reason(bank, sim, db, new_secret):
    secret = new_secret()
    sim[0].add_key(secret)
    sim[0].inject(secret, "401_permissions", scope="all")
    with pytest.raises(BadRequest) as err:
        await bank.add_key(provider="elevenlabs", label="no-perms", secret=secret, max_concurrency=2)
    assert err.value.code == "key_missing_permissions"
    assert "user_read" in err.value.message
    assert await db.fetchval("SELECT count(*) FROM provider_keys") == 0


async def test_a_valid_key_whose_quota_is_used_up_is_stored_parked_until_its_reset(bank, sim, new_secret):
    secret = new_secret()
    sim_key = sim[0].add_key(secret, character_limit=1_000, character_count=1_000)
    view = await bank.add_key(provider="elevenlabs", label="empty", secret=secret, max_concurrency=2)
    assert view.status == "exhausted"
    assert int(view.quota_reset_at.timestamp()) == sim_key.reset_unix


async def test_an_unreachable_provider_means_the_key_is_not_saved(db, redis, settings, new_secret):
    unreachable = settings.replace(elevenlabs_base_url="http://127.0.0.1:9")
    bank = KeyBank(unreachable, db, redis)
    try:
        with pytest.raises(UpstreamError) as err:
            await bank.add_key(provider="elevenlabs", label="x", secret=new_secret(), max_concurrency=1)
    finally:
        await bank.aclose()
    assert err.value.code == "upstream_unavailable"
    assert await db.fetchval("SELECT count(*) FROM provider_keys") == 0


async def test_the_same_secret_or_label_cannot_be_added_twice(bank, add_key, sim, new_secret):
    view, secret = await add_key("one")
    with pytest.raises(Conflict) as err:
        await bank.add_key(provider="elevenlabs", label="another label", secret=secret, max_concurrency=2)
    assert err.value.code == "key_duplicate" and f"#{view.id}" in err.value.message
    other = new_secret()
    sim[0].add_key(other)
    with pytest.raises(Conflict) as err:
        await bank.add_key(provider="elevenlabs", label="one", secret=other, max_concurrency=2)
    assert err.value.code == "key_label_taken"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"provider": "acme"}, "provider"),
        ({"label": "  "}, "label"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"weight": 0}, "weight"),
        ({"secret": "short"}, "secret"),
        ({"secret": "has a space in it"}, "secret"),
    ],
)
async def test_bad_key_parameters_are_refused_before_any_provider_call(bank, sim, changes, field):
    params = {"provider": "elevenlabs", "label": "ok", "secret": "a-long-enough-secret", "max_concurrency": 2, "weight": 1}
    with pytest.raises(ValidationFailed) as err:
        await bank.add_key(**{**params, **changes})
    assert err.value.details["field"] == field
    assert list(sim[0].requests) == []


# --- listing and operator actions ----------------------------------------------------------------


async def test_list_keys_shows_state_and_never_the_secret(bank, add_key):
    view, secret = await add_key("listed", max_concurrency=3)
    lease = await bank.acquire("elevenlabs")
    try:
        (listed,) = await bank.list_keys()
    finally:
        await bank.release(lease)
    assert listed.in_flight == 1 and listed.max_concurrency == 3
    assert listed.last4 == secret[-4:] and listed.quota_limit == 100_000
    dumped = json.dumps(listed.to_dict())
    assert secret not in dumped and secret not in repr(listed)
    assert "ciphertext" not in dumped and "nonce" not in dumped
    assert secret not in repr(lease)


async def test_disable_enable_and_remove(bank, add_key, redis, settings):
    view, _ = await add_key("ops")
    disabled = await bank.disable(view.id, "rotating this account")
    assert (disabled.status, disabled.disabled_reason) == ("disabled", "rotating this account")
    assert await bank.leases.candidate_ids("elevenlabs") == set()

    enabled = await bank.enable(view.id)
    assert (enabled.status, enabled.disabled_reason) == ("active", None)
    assert await bank.leases.candidate_ids("elevenlabs") == {view.id}

    await bank.remove(view.id)
    assert await bank.list_keys() == []
    assert await bank.leases.candidate_ids("elevenlabs") == set()
    with pytest.raises(NotFound):
        await bank.enable(view.id)
    with pytest.raises(NotFound):
        await bank.disable(view.id)
    with pytest.raises(NotFound):
        await bank.remove(view.id)


async def test_enabling_a_key_clears_its_cooldown(bank, add_key):
    view, _ = await add_key("cooled")
    await bank.leases.cool_down(view.id, base=60, maximum=60, retry_after=None, error_window=60)
    assert (await bank.get_key(view.id)).cooldown_until is not None
    await bank.disable(view.id)
    enabled = await bank.enable(view.id)
    assert enabled.cooldown_until is None and enabled.consecutive_failures == 0


# --- the command line (a real `python -m server` process) -------------------------------------


@pytest.fixture
def cli_env(test_env, sim):
    return {**os.environ, **test_env, "ELEVENLABS_BASE_URL": sim[1], "LOG_LEVEL": "DEBUG"}


async def run_cli(env, *args, stdin=""):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "keys", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_add_reads_the_secret_from_stdin_validates_it_and_never_echoes_it(cli_env, sim, new_secret, db):
    secret = new_secret()
    sim[0].add_key(secret, character_limit=20_000, character_count=500)
    code, out, err = await run_cli(
        cli_env, "add", "--provider", "elevenlabs", "--label", "cli key", "--max-concurrency", "3", "--weight", "2",
        stdin=secret + "\n",
    )
    assert code == 0, err
    assert "added key #" in out and secret[-4:] in out and "500/20000" in out
    assert secret not in out + err
    row = await db.fetchrow("SELECT label, max_concurrency, weight, quota_used, quota_limit FROM provider_keys")
    assert tuple(row) == ("cli key", 3, 2, 500, 20_000)
    assert any(r["path"] == "/v1/user/subscription" and r["key"] == secret[-4:] for r in sim[0].requests)


async def test_cli_add_refuses_a_key_the_provider_rejects(cli_env, new_secret, db):
    secret = new_secret()
    code, out, err = await run_cli(
        cli_env, "add", "--provider", "elevenlabs", "--label", "bad", "--max-concurrency", "1", stdin=secret + "\n"
    )
    assert code == 1
    assert "rejected the key" in err and "not saved" in err
    assert secret not in out + err
    assert await db.fetchval("SELECT count(*) FROM provider_keys") == 0


async def test_cli_list_disable_enable_remove(cli_env, add_key):
    view, secret = await add_key("table row", max_concurrency=2)
    code, out, err = await run_cli(cli_env, "list")
    assert code == 0, err
    assert "table row" in out and secret[-4:] in out and "0/2" in out and "active" in out
    assert secret not in out + err

    code, out, _ = await run_cli(cli_env, "disable", str(view.id), "--reason", "billing issue")
    assert code == 0 and "disabled" in out
    code, out, _ = await run_cli(cli_env, "list", "--json")
    (listed,) = json.loads(out)["keys"]
    assert (listed["status"], listed["disabled_reason"]) == ("disabled", "billing issue")
    assert secret not in out

    code, out, _ = await run_cli(cli_env, "enable", str(view.id))
    assert code == 0 and "enabled" in out
    code, out, _ = await run_cli(cli_env, "remove", str(view.id))
    assert code == 0 and "removed" in out
    code, out, err = await run_cli(cli_env, "remove", str(view.id))
    assert code == 1 and f"No provider key #{view.id}" in err
    code, out, _ = await run_cli(cli_env, "list")
    assert "no provider keys" in out


async def test_cli_rotate_master(cli_env, add_key, bank, db, redis):
    view, secret = await add_key("rotated")
    env = {**cli_env, "KEYBANK_MASTER_KEYS": f"{cli_env['KEYBANK_MASTER_KEYS']},v2={master_key()}", "KEYBANK_ACTIVE_VERSION": "v2"}
    code, out, err = await run_cli(env, "rotate-master")
    assert code == 0, err
    assert "1 key(s) re-encrypted under master key version v2" in out
    assert await db.fetchval("SELECT key_version FROM provider_keys WHERE id = $1", view.id) == "v2"
    new_only = bank.settings.replace(keybank_master_keys=env["KEYBANK_MASTER_KEYS"].split(",", 1)[1], keybank_active_version="v2")
    assert await KeyBank(new_only, db, redis).secret_for(view.id) == secret
