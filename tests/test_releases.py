"""Panel releases from the server's side: what a publish accepts, what the signed manifest says,
how it is cached, and how outdated panels are turned away.

The manifest is read the way a panel reads it: the signature in `X-Update-Signatures` is checked
over the exact bytes received, with the public key alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from releases_support import ccx, zxp
from server.app import create_app
from server.appkeys import DB
from server.releases import RELEASES, Actor
from server.releases.signing import generate, load_keys, verify
from server.web.errors import ApiError

OPERATOR = Actor(None, "test-operator")


def service_of(client):
    return client.server.app[RELEASES]


async def publish(client, version: str, **kw):
    data = kw.pop("data", None) or zxp(version)
    return await service_of(client).publish(data, product=kw.pop("product", "cep"), channel=kw.pop("channel", "stable"),
                                            version=version, actor=OPERATOR, **kw)


async def fetch_manifest(client, product="cep", channel="stable", **headers):
    resp = await client.get(f"/v1/updates/{product}/{channel}", headers=headers)
    return resp, await resp.read()


def signatures(resp) -> dict[str, str]:
    return dict(item.split(":", 1) for item in resp.headers["X-Update-Signatures"].split(","))


def verifies(client, body: bytes, resp) -> bool:
    keys = {k.kid: k.public_b64 for k in service_of(client).keys}
    return any(kid in keys and verify(keys[kid], body, sig) for kid, sig in signatures(resp).items())


# --- the manifest ---------------------------------------------------------------------------------


async def test_a_published_release_is_offered_in_a_manifest_signed_over_its_exact_bytes(client):
    release = await publish(client, "1.4.0", notes_md="**Faster** previews\n\n<script>alert(1)</script>",
                            rollout=25, min_host="23.0")
    resp, body = await fetch_manifest(client)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert verifies(client, body, resp)
    tampered = body.replace(b'"1.4.0"', b'"9.4.0"')
    assert not verifies(client, tampered, resp), "the signature covers the bytes served"

    manifest = json.loads(body)
    assert body == json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(), "canonical JSON"
    assert manifest["product"] == "cep" and manifest["channel"] == "stable" and manifest["serial"] >= 1
    issued = datetime.fromisoformat(manifest["issued_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(manifest["expires_at"].replace("Z", "+00:00"))
    assert expires - issued == timedelta(seconds=service_of(client).settings.update_manifest_ttl)
    latest = manifest["latest"]
    assert latest["version"] == "1.4.0" and latest["sha256"] == release.sha256 and latest["size"] == release.size
    assert latest["url"] == "http://127.0.0.1:8080/downloads/cep/1.4.0"
    assert latest["min_host_version"] == "23.0"
    assert latest["rollout"]["percent"] == 25 and len(latest["rollout"]["salt"]) == 16
    assert "<strong>Faster</strong>" in latest["notes_html"] and "<script>" not in latest["notes_html"]
    assert manifest["min_supported_version"] is None


async def test_an_unknown_product_or_channel_is_a_404_in_the_error_envelope(client):
    resp, body = await fetch_manifest(client, "premiere", "stable")
    assert resp.status == 404 and json.loads(body)["error"]["code"] == "unknown_manifest"
    resp, body = await fetch_manifest(client, "cep", "nightly")
    assert resp.status == 404


async def test_a_product_without_releases_still_gets_a_signed_manifest_that_offers_nothing(client):
    resp, body = await fetch_manifest(client, "uxp", "beta")
    assert resp.status == 200 and verifies(client, body, resp)
    assert json.loads(body)["latest"] is None


async def test_an_unchanged_manifest_answers_304_with_no_body(client):
    await publish(client, "1.0.0")
    resp, body = await fetch_manifest(client)
    etag = resp.headers["ETag"]
    assert resp.headers["Cache-Control"].startswith("public, max-age=")
    again, again_body = await fetch_manifest(client, **{"If-None-Match": etag})
    assert again.status == 304 and again_body == b"" and again.headers["ETag"] == etag
    listed, _ = await fetch_manifest(client, **{"If-None-Match": f'"other", W/{etag}'})
    assert listed.status == 304, "a list of tags (weak or not) that holds ours is a match"
    stale, _ = await fetch_manifest(client, **{"If-None-Match": '"something-else"'})
    assert stale.status == 200


async def test_publish_rollout_yank_and_minimum_each_change_the_etag_and_raise_the_serial(client):
    seen = []

    async def state():
        resp, body = await fetch_manifest(client)
        seen.append((resp.headers["ETag"], json.loads(body)["serial"]))
        return json.loads(body)

    await state()
    await publish(client, "1.0.0")
    assert (await state())["latest"]["version"] == "1.0.0"
    await publish(client, "1.1.0", rollout=10)
    await service_of(client).set_rollout("cep", "1.1.0", 50, actor=OPERATOR)
    assert (await state())["latest"]["rollout"]["percent"] == 50
    await service_of(client).yank("cep", "1.1.0", actor=OPERATOR)
    assert (await state())["latest"]["version"] == "1.0.0", "a yanked release is no longer offered"
    await service_of(client).set_min_supported("cep", "1.0.0", actor=OPERATOR)
    assert (await state())["min_supported_version"] == "1.0.0"

    etags = [e for e, _ in seen]
    serials = [s for _, s in seen]
    assert len(set(etags)) == len(etags) == 5
    assert serials == sorted(serials) and len(set(serials)) == len(serials), serials


async def test_a_rebuild_that_read_the_tables_before_a_change_cannot_put_older_manifests_back(client, monkeypatch):
    # A worker's background rebuild (woken by an earlier change) may still be building when the next
    # change commits; whichever finishes last must be the one that read the newer tables.
    from server.releases import repo

    await publish(client, "1.0.0", rollout=10)
    service = service_of(client)
    read_old_tables, let_it_finish = asyncio.Event(), asyncio.Event()
    all_releases = repo.all_releases

    async def slow_first_read(*args, **kwargs):
        rows = await all_releases(*args, **kwargs)
        if not read_old_tables.is_set():
            read_old_tables.set()
            await let_it_finish.wait()
        return rows

    monkeypatch.setattr(repo, "all_releases", slow_first_read)
    background = asyncio.create_task(service.refresh())
    await read_old_tables.wait()
    change = asyncio.create_task(service.set_rollout("cep", "1.0.0", 50, actor=OPERATOR))
    await asyncio.sleep(0.2)  # the change has committed and waits to rebuild, or has rebuilt already
    let_it_finish.set()
    await asyncio.gather(background, change)
    _, body = await fetch_manifest(client)
    assert json.loads(body)["latest"]["rollout"]["percent"] == 50


async def test_manifests_are_served_from_memory_without_a_database_round_trip(client):
    await publish(client, "1.0.0")
    service = service_of(client)

    class NoDatabase:
        def __getattr__(self, name):
            raise AssertionError(f"the manifest handler touched the database ({name})")

    real, service.pool = service.pool, NoDatabase()
    try:
        for _ in range(3):
            resp, body = await fetch_manifest(client)
            assert resp.status == 200 and json.loads(body)["latest"]["version"] == "1.0.0"
    finally:
        service.pool = real


async def test_every_worker_builds_the_same_bytes_so_etags_agree(client, aiohttp_client, settings):
    await publish(client, "1.0.0")
    other = await aiohttp_client(create_app(settings))
    first, body_a = await fetch_manifest(client)
    second, body_b = await fetch_manifest(other)
    assert body_a == body_b and first.headers["ETag"] == second.headers["ETag"]


async def test_another_worker_learns_of_a_change_over_redis_pub_sub(client, aiohttp_client, settings):
    other = await aiohttp_client(create_app(settings))
    await fetch_manifest(other)
    await publish(client, "2.0.0")
    for _ in range(100):
        _, body = await fetch_manifest(other)
        if (json.loads(body)["latest"] or {}).get("version") == "2.0.0":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the other worker never saw the publish")


async def test_manifests_are_re_signed_before_they_expire_with_the_same_serial(client):
    await publish(client, "1.0.0")
    service = service_of(client)
    ttl = service.settings.update_manifest_ttl
    before = service.manifest("cep", "stable")
    later = datetime.now(timezone.utc) + timedelta(seconds=ttl // 3 + 5)
    await service.refresh(now=later)
    after = service.manifest("cep", "stable")
    assert after.serial == before.serial and after.etag != before.etag
    assert after.expires_at > before.expires_at and after.expires_at - later > timedelta(seconds=ttl * 0.6)


async def test_during_a_rotation_both_keys_sign_every_manifest(aiohttp_client, settings):
    old, _, old_kid = generate()
    new, _, new_kid = generate()
    client = await aiohttp_client(create_app(settings.replace(update_signing_key=f"{old},{new}")))
    resp, body = await fetch_manifest(client)
    sigs = signatures(resp)
    assert set(sigs) == {old_kid, new_kid}
    for key in load_keys(f"{old},{new}"):
        assert verify(key.public_b64, body, sigs[key.kid])


async def test_the_signing_keys_never_appear_in_responses(client):
    await publish(client, "1.0.0")
    resp, body = await fetch_manifest(client)
    private = service_of(client).settings.update_signing_key
    raw = base64.b64decode(private)
    assert private not in resp.headers["X-Update-Signatures"] and private.encode() not in body
    assert raw not in body


# --- publishing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case, status, code", [
    ("lower", 409, "version_not_higher"),
    ("same", 409, "version_exists"),
    ("broken zip", 422, "invalid_package"),
    ("wrong bundle id", 422, "invalid_package"),
    ("version inside differs", 422, "version_mismatch"),
    ("too large", 413, "package_too_large"),
    ("ccx with a foreign id", 422, "invalid_package"),
    ("not a version", 422, "validation_failed"),
])
async def test_publishing_refuses_what_panels_must_never_be_offered(client, case, status, code):
    await publish(client, "1.2.0")
    service = service_of(client)
    service.settings = service.settings.replace(release_max_bytes=64_000)
    before = service.manifest("cep", "stable").etag
    attempts = {
        "lower": dict(version="1.1.9"),
        "same": dict(version="1.2.0"),
        "broken zip": dict(version="1.3.0", data=zxp("1.3.0")[:-40]),
        "wrong bundle id": dict(version="1.3.0", data=zxp("1.3.0", bundle_id="com.someone.else")),
        "version inside differs": dict(version="1.3.0", data=zxp("1.2.5")),
        "too large": dict(version="1.3.0", data=zxp("1.3.0", padding=service.settings.release_max_bytes)),
        "ccx with a foreign id": dict(version="1.3.0", product="uxp", data=ccx("1.3.0", plugin_id="com.other.plugin")),
        "not a version": dict(version="1.3"),
    }[case]
    with pytest.raises(ApiError) as refused:
        await publish(client, **attempts)
    assert (refused.value.status, refused.value.code) == (status, code), refused.value.message
    assert [r.version for r in await service.list()] == ["1.2.0"]
    assert service.manifest("cep", "stable").etag == before


async def test_a_uxp_ccx_publishes_to_its_own_manifest(client):
    await publish(client, "1.0.0", product="uxp", data=ccx("1.0.0"))
    _, body = await fetch_manifest(client, "uxp", "stable")
    assert json.loads(body)["latest"]["url"].endswith("/downloads/uxp/1.0.0")
    _, body = await fetch_manifest(client, "cep", "stable")
    assert json.loads(body)["latest"] is None


async def test_beta_offers_the_newest_of_its_betas_and_stable_releases(client):
    await publish(client, "1.0.0")
    await publish(client, "1.1.0-beta.1", channel="beta")
    _, beta = await fetch_manifest(client, "cep", "beta")
    _, stable = await fetch_manifest(client, "cep", "stable")
    assert json.loads(beta)["latest"]["version"] == "1.1.0-beta.1"
    assert json.loads(stable)["latest"]["version"] == "1.0.0"
    await publish(client, "1.1.0")
    _, beta = await fetch_manifest(client, "cep", "beta")
    assert json.loads(beta)["latest"]["version"] == "1.1.0"


# --- forced upgrade ---------------------------------------------------------------------------------


async def test_a_panel_below_the_minimum_gets_426_with_the_download_url(client):
    await publish(client, "1.0.0")
    await publish(client, "1.2.0")
    await service_of(client).set_min_supported("cep", "1.2.0", actor=OPERATOR)

    resp = await client.get("/v1/pricing", headers={"X-Panel-Version": "1.1.9", "X-Panel-Product": "cep"})
    body = await resp.json()
    assert resp.status == 426 and body["error"]["code"] == "panel_outdated"
    assert body["error"]["details"]["download_url"] == "http://127.0.0.1:8080/downloads/cep/1.2.0"
    assert body["error"]["details"]["min_supported_version"] == "1.2.0"
    assert "1.2.0" in body["error"]["message"]

    for version in ("1.2.0", "1.3.0"):
        ok = await client.get("/v1/pricing", headers={"X-Panel-Version": version, "X-Panel-Product": "cep"})
        assert ok.status == 200
    assert (await client.get("/v1/pricing")).status == 200, "scripts without the header keep working"
    other = await client.get("/v1/pricing", headers={"X-Panel-Version": "0.1.0", "X-Panel-Product": "uxp"})
    assert other.status == 200, "the minimum is per product"
    resp, _ = await fetch_manifest(client, **{"X-Panel-Version": "0.0.1"})
    assert resp.status == 200, "an outdated panel can still read the manifest that tells it what to install"
    garbled = await client.get("/v1/pricing", headers={"X-Panel-Version": "new", "X-Panel-Product": "cep"})
    assert garbled.status == 400 and (await garbled.json())["error"]["code"] == "invalid_panel_version"


async def test_a_minimum_needs_a_live_release_to_upgrade_to(client):
    await publish(client, "1.0.0")
    with pytest.raises(ApiError) as refused:
        await service_of(client).set_min_supported("cep", "2.0.0", actor=OPERATOR)
    assert refused.value.code == "no_release_at_minimum"


async def test_a_setting_can_require_the_panel_header(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(panel_version_required=True)))
    resp = await client.get("/v1/pricing")
    assert resp.status == 426 and (await resp.json())["error"]["code"] == "panel_version_required"
    ok = await client.get("/v1/pricing", headers={"X-Panel-Version": "0.1.0"})
    assert ok.status == 200


async def test_cross_origin_panels_may_send_the_version_headers_and_read_the_signature(client):
    resp = await client.options("/v1/updates/cep/stable", headers={
        "Origin": "null", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-panel-version"})
    assert "X-Panel-Version" in resp.headers["Access-Control-Allow-Headers"]
    resp, _ = await fetch_manifest(client)
    exposed = resp.headers["Access-Control-Expose-Headers"]
    assert "X-Update-Signatures" in exposed and "ETag" in exposed


# --- downloads ----------------------------------------------------------------------------------------


async def test_downloads_stream_the_package_with_ranges_and_count_each_download_once(client, db):
    data = zxp("1.0.0", padding=5000)
    await publish(client, "1.0.0", data=data)
    resp = await client.get("/downloads/cep/1.0.0")
    assert resp.status == 200 and await resp.read() == data
    assert resp.headers["Content-Disposition"] == 'attachment; filename="sfx-studio-cep-1.0.0.zxp"'
    partial = await client.get("/downloads/cep/1.0.0", headers={"Range": "bytes=100-199"})
    assert partial.status == 206 and await partial.read() == data[100:200]
    first_part = await client.get("/downloads/cep/1.0.0", headers={"Range": "bytes=0-99"})
    assert first_part.status == 206
    counted = await db.fetchval("SELECT downloads FROM releases WHERE version = '1.0.0'")
    assert counted == 2, "a resumed download (range past byte 0) is the same download"


async def test_yanked_and_unknown_versions_are_not_downloadable(client):
    await publish(client, "1.0.0")
    await service_of(client).yank("cep", "1.0.0", actor=OPERATOR)
    assert (await client.get("/downloads/cep/1.0.0")).status == 410
    assert (await client.get("/downloads/cep/7.7.7")).status == 404
    assert (await client.get("/downloads/cep/..%2f..%2fetc")).status == 404


# --- the operator's CLI -----------------------------------------------------------------------------------


def cli(test_env: dict, *args: str) -> subprocess.CompletedProcess:
    """The real entry point in its own process (a second or two of imports: used once)."""
    return subprocess.run([sys.executable, "-m", "server", "releases", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **test_env})


async def command(settings, capsys, *args: str) -> tuple[int, str, str]:
    """The same commands in this process, on a thread (each runs its own event loop)."""
    from server.cli import build_parser

    parsed = build_parser().parse_args(["releases", *args])
    code = await asyncio.to_thread(parsed.func, parsed, settings)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_cli_publishes_steers_and_refuses_and_running_servers_follow(client, test_env, settings, capsys, tmp_path):
    package = tmp_path / "panel.zxp"
    package.write_bytes(zxp("3.1.0"))
    notes = tmp_path / "notes.md"
    notes.write_text("- Loops keep their fades")

    run = await asyncio.to_thread(cli, test_env, "publish", str(package), "--product", "cep", "--version", "3.1.0",
                                  "--channel", "stable", "--notes", str(notes), "--rollout", "10", "--min-host", "23.0")
    assert run.returncode == 0, run.stderr
    assert "published cep 3.1.0 on stable" in run.stdout and "/downloads/cep/3.1.0" in run.stdout
    for _ in range(100):  # the running server hears of it over Redis
        _, body = await fetch_manifest(client)
        if json.loads(body)["latest"]:
            break
        await asyncio.sleep(0.05)
    latest = json.loads(body)["latest"]
    assert latest["version"] == "3.1.0" and latest["rollout"]["percent"] == 10 and "Loops keep" in latest["notes_html"]

    code, _, err = await command(settings, capsys, "publish", str(package), "--version", "3.0.0")
    assert code == 1 and "not 3.0.0" in err, err
    assert (await command(settings, capsys, "rollout", "3.1.0", "60"))[0] == 0
    assert (await command(settings, capsys, "min-supported", "cep", "3.1.0"))[0] == 0
    code, out, _ = await command(settings, capsys, "list", "--json")
    listed = json.loads(out)
    assert listed["releases"][0]["rollout_percent"] == 60 and listed["min_supported"] == {"cep": "3.1.0"}
    audit = await client.server.app[DB].fetch("SELECT action, details->>'by' AS by FROM audit_log ORDER BY id")
    assert [a["action"] for a in audit] == ["release.published", "release.rollout_changed", "release.min_supported_changed"]
    assert all(a["by"].startswith("cli:") for a in audit)

    code, out, _ = await command(settings, capsys, "keygen")
    private = out.split("private key:")[1].split()[0]
    public = out.split("public key:")[1].split()[0]
    [key] = load_keys(private)
    assert key.public_b64 == public


async def test_manifest_polls_are_counted_not_access_logged_but_failures_are(client, caplog):
    caplog.set_level(logging.INFO, logger="server.http")
    await fetch_manifest(client)
    await fetch_manifest(client, "nope", "stable")
    logged = [r.path for r in caplog.records if r.name == "server.http" and r.msg == "request"]
    assert logged == ["/v1/updates/nope/stable"], "every panel polls: one line each would cost more than the answer"
    metrics = await (await client.get("/metrics")).text()
    assert 'route="/v1/updates/{product}/{channel}",status="200"' in metrics


async def test_the_signing_keys_are_scrubbed_from_log_lines(client):
    from server.web.logs import REDACTOR

    old, _, _ = generate()
    new = service_of(client).settings.update_signing_key
    assert new not in REDACTOR.scrub(f"failed with key {new}")
    rotated = service_of(client).settings.replace(update_signing_key=f"{old},{new}")
    REDACTOR.add(rotated.secret_values())
    assert old not in REDACTOR.scrub(f"oops {old} and {new}")
