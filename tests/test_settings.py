"""Settings: every variable is documented, production refuses defaults, dev keeps its secrets."""

import re

import pytest

from server.settings import DEV_PLACEHOLDER, Settings, SettingsError, documented_variables


def env_example_names(project_root):
    text = (project_root / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_every_setting_is_in_env_example_and_nothing_else(project_root):
    assert env_example_names(project_root) == set(documented_variables())


def test_every_setting_is_documented_in_the_readme(project_root):
    readme = (project_root / "README.md").read_text()
    missing = [name for name in documented_variables() if f"`{name}`" not in readme]
    assert missing == []


def test_production_refuses_to_start_with_default_secrets(tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"APP_ENV": "production", "DATA_DIR": str(tmp_path)})
    for name in ("JWT_SECRETS", "KEYBANK_MASTER_KEYS", "STRIPE_SECRET_KEY", "SESSION_SECRET"):
        assert name in str(err.value)
    assert not (tmp_path / "secrets.json").exists()


def test_dev_generates_secrets_once_and_keeps_them(tmp_path):
    first = Settings.from_env({"APP_ENV": "dev", "DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"APP_ENV": "dev", "DATA_DIR": str(tmp_path)})
    assert first.jwt_secrets != DEV_PLACEHOLDER
    assert first.jwt_secrets == second.jwt_secrets
    assert first.master_keys == second.master_keys
    assert len(first.master_keys[first.keybank_active_version]) == 32
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


def test_bad_values_name_their_variable(tmp_path):
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"PORT": "eighty", "DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="APP_ENV"):
        Settings.from_env({"APP_ENV": "staging", "DATA_DIR": str(tmp_path)})


def test_redacted_view_hides_secrets(settings):
    view = settings.redacted()
    assert view["JWT_SECRETS"] == "***"
    assert view["PORT"] == settings.port


def production_env(tmp_path, **extra):
    env = {
        "APP_ENV": "production",
        "DATA_DIR": str(tmp_path),
        "JWT_SECRETS": "p1=" + "x" * 48,
        "JWT_ACTIVE_KID": "p1",
        "KEYBANK_MASTER_KEYS": "1=" + "A" * 43 + "=",
        "STRIPE_SECRET_KEY": "sk_live_realistic_value",
        "STRIPE_WEBHOOK_SECRET": "whsec_realistic_value",
        "SESSION_SECRET": "B" * 43 + "=",
        "UPDATE_SIGNING_KEY": "C" * 43 + "=",
    }
    env.update(extra)
    return env


def test_production_starts_with_real_secrets(tmp_path):
    settings = Settings.from_env(production_env(tmp_path))
    assert settings.is_production
    assert not (tmp_path / "secrets.json").exists()


def test_production_refuses_the_local_simulator_unless_allowed(tmp_path):
    with pytest.raises(SettingsError, match="ELEVENLABS_BASE_URL"):
        Settings.from_env(production_env(tmp_path, ELEVENLABS_BASE_URL="http://127.0.0.1:8765"))
    allowed = Settings.from_env(production_env(tmp_path, ELEVENLABS_BASE_URL="http://127.0.0.1:8765", ALLOW_SIMULATOR="true"))
    assert allowed.allow_simulator
