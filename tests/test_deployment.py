"""The container image and the compose file a team starts from. No Docker engine runs here, so the
Dockerfile is linted (hadolint, installed from PyPI with the test dependencies) and both files are
checked against the code they package: the dependencies, the folders, the settings, the health checks."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from server.settings import documented_variables


def dockerfile(project_root: Path) -> str:
    return (project_root / "Dockerfile").read_text()


def test_the_dockerfile_passes_hadolint(project_root):
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", "Dockerfile"], cwd=project_root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_runtime_dependencies_and_carries_what_serve_reads(project_root):
    text = dockerfile(project_root)
    requirements = subprocess.run(
        [sys.executable, "-c", text.split('RUN python -c "', 1)[1].split('" \\', 1)[0].replace("\\'", "'")],
        cwd=project_root, capture_output=True, text=True, check=True,
    ).stdout.split()
    project = tomllib.loads((project_root / "pyproject.toml").read_text())["project"]
    # The same list the scripts install, without the test tools.
    assert "".join(requirements) == "".join(d.replace(" ", "") for d in project["dependencies"])
    for folder in ("server", "portal", "migrations"):
        assert f"COPY {folder} ./{folder}" in text
        assert (project_root / folder).is_dir()
    assert 'CMD ["python", "-m", "server", "serve"]' in text
    assert "APP_ENV=production" in text and "HOST=0.0.0.0" in text
    assert "/readyz" in text  # the container's health is the balancer's


def test_the_compose_file_runs_two_app_containers_on_postgres_redis_and_a_minio_bucket(project_root):
    compose = yaml.safe_load((project_root / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app-1", "app-2", "postgres", "redis", "minio", "bucket"} <= set(services)
    settings = set(documented_variables())
    for name in ("app-1", "app-2"):
        app = services[name]
        assert app["build"] == "."
        env = app["environment"]
        assert set(env) <= settings, set(env) - settings
        assert env["STORAGE_URL"].startswith("s3://sfx-blobs/")
        assert env["S3_ENDPOINT"] == "http://minio:9000"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["TRUSTED_PROXIES"]
        assert set(app["depends_on"]) == {"postgres", "redis", "bucket"}
    assert "sfx-blobs" in " ".join(services["bucket"]["command"])
    # No secret is written into the file: they come from .env.
    for value in services["app-1"]["environment"].values():
        assert "${" in value or "secret" not in value.lower()
