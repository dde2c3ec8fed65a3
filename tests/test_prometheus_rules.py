"""deploy/prometheus/alerts.yml: valid for Prometheus, each alert fires on a synthetic series
(promtool's own rule tests in alerts_test.yml), and it only uses metrics the server exports."""

from __future__ import annotations

import re
import shutil
import subprocess

from server.web.metrics import Metrics


def promtool(*args: str, cwd) -> subprocess.CompletedProcess:
    # scripts/test installs promtool (Debian package `prometheus`); a missing tool fails here, loudly.
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (scripts/test does this)"
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_rules_file_is_valid(project_root):
    result = promtool("check", "rules", "alerts.yml", cwd=project_root / "deploy" / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


def test_each_alert_fires_on_its_synthetic_series(project_root):
    folder = project_root / "deploy" / "prometheus"
    result = promtool("test", "rules", "alerts_test.yml", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (folder / "alerts_test.yml").read_text()))
    alerts = set(re.findall(r"- alert: (\w+)", (folder / "alerts.yml").read_text()))
    assert alerts == tested == {"ProviderKeyInvalid", "ProviderKeyExhausted", "ProviderPoolRunningDry",
                                "ProviderKeysAllCooling"}


def test_the_rules_use_only_metrics_the_server_exports(project_root):
    exported = {m.name for m in Metrics().registry.collect()}
    text = (project_root / "deploy" / "prometheus" / "alerts.yml").read_text()
    exprs = " ".join(re.findall(r"expr: (?:\|\n)?((?:.*\n)+?)\s+(?:for|labels):", text))
    used = {name for name in re.findall(r"\b([a-z_]+)\s*(?=\{|\))", exprs) if name != "provider"}
    assert used and used <= exported, used - exported
