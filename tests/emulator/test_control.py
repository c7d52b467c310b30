"""Control API: faults, request counting, token expiry/revocation, seeding, state, CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import CALLBACK, bearer, cloud_login, control, dc_login


def test_429_after_n_requests_for_m_requests_with_retry_after(emu):
    token = cloud_login(emu)
    assert (
        control(
            emu,
            "POST",
            "faults",
            json={
                "status": 429,
                "after": 2,
                "count": 2,
                "retry_after": 2,
                "path_prefix": "/2.0/repositories",
            },
        ).status_code
        == 201
    )
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    statuses = [requests.get(url, headers=bearer(token), timeout=10) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 429, 200]
    assert statuses[2].headers["Retry-After"] == "2"
    assert statuses[2].text == "Rate limit for this resource has been exceeded"
    # Other paths are untouched by a path-scoped fault.
    assert requests.get(f"{emu.cloud_url}/2.0/user", headers=bearer(token), timeout=10).status_code == 200


def test_429_time_window(emu):
    token = dc_login(emu)
    control(emu, "POST", "faults", json={"status": 429, "seconds": 0.4, "flavor": "datacenter"})
    url = f"{emu.dc_url}/rest/api/1.0/repos"
    first = requests.get(url, headers=bearer(token), timeout=10)
    assert first.status_code == 429 and int(first.headers["Retry-After"]) >= 1
    assert first.json()["errors"][0]["message"]
    time.sleep(0.5)
    assert requests.get(url, headers=bearer(token), timeout=10).status_code == 200


def test_5xx_latency_and_drop_connection(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/user"
    control(emu, "POST", "faults", json={"status": 503, "count": 1})
    failed = requests.get(url, headers=bearer(token), timeout=10)
    assert failed.status_code == 503 and failed.json()["type"] == "error"
    control(emu, "POST", "faults", json={"latency_ms": 300, "count": 1})
    started = time.monotonic()
    assert requests.get(url, headers=bearer(token), timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.3
    control(emu, "POST", "faults", json={"drop_connection": True, "count": 1})
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=bearer(token), timeout=10)
    assert requests.get(url, headers=bearer(token), timeout=10).status_code == 200
    assert control(emu, "DELETE", "faults").status_code == 204
    assert control(emu, "GET", "faults").json() == {"faults": []}


def test_request_counting_per_endpoint(emu):
    token = cloud_login(emu)
    dc = dc_login(emu)
    control(emu, "DELETE", "requests")
    for _ in range(3):
        requests.get(f"{emu.cloud_url}/2.0/repositories/acme/web-app/refs/branches", headers=bearer(token), timeout=10)
    requests.get(f"{emu.dc_url}/rest/api/latest/projects/PLAT/repos", headers=bearer(dc), timeout=10)
    control(emu, "GET", "state")  # control calls are not counted
    stats = control(emu, "GET", "requests").json()
    assert stats["total"] == 4
    assert stats["flavors"]["cloud"]["endpoints"] == {"GET /2.0/repositories/{workspace}/{repo_slug}/refs/branches": 3}
    assert stats["flavors"]["datacenter"]["endpoints"] == {"GET /rest/api/1.0/projects/{project_key}/repos": 1}
    assert control(emu, "DELETE", "requests").status_code == 204
    assert control(emu, "GET", "requests").json()["total"] == 0


def test_expired_and_revoked_tokens_get_401(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/user"
    assert control(emu, "POST", "tokens/expire", json={"token": token}).json() == {"expired": 1}
    expired = requests.get(url, headers=bearer(token), timeout=10)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]

    dc = dc_login(emu, user="bob")
    dc_url = f"{emu.dc_url}/rest/api/1.0/projects/WEB/repos/site"
    assert requests.get(dc_url, headers=bearer(dc), timeout=10).status_code == 200
    assert control(emu, "POST", "tokens/revoke", json={"user": "bob", "flavor": "datacenter"}).json()["revoked"] == 1
    revoked = requests.get(dc_url, headers=bearer(dc), timeout=10)
    assert revoked.status_code == 401 and revoked.json()["errors"][0]["exceptionName"]
    assert (
        requests.get(f"{emu.dc_url}/plugins/servlet/applinks/whoami", headers=bearer(dc), timeout=10).status_code == 401
    )


def test_expired_access_token_can_be_refreshed(emu):
    from .conftest import cloud_code, cloud_token, register_cloud_client

    register_cloud_client(emu)
    tokens = cloud_token(emu, cloud_code(emu)).json()
    control(emu, "POST", "tokens/expire", json={"all": True})
    refreshed = requests.post(
        f"{emu.cloud_url}/site/oauth2/access_token",
        auth=("cloud-client", "cloud-secret"),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        timeout=10,
    )
    assert refreshed.status_code == 200
    assert (
        requests.get(
            f"{emu.cloud_url}/2.0/user", headers=bearer(refreshed.json()["access_token"]), timeout=10
        ).status_code
        == 200
    )


def test_bulk_seed_and_state(emu):
    assert control(emu, "POST", "reset").json()["seeded"] is False
    assert control(emu, "GET", "state").json()["totals"]["repositories"] == 0
    spec = {
        "users": [{"name": "alice", "admin": True}, {"name": "bob"}],
        "cloud": {
            "workspaces": [
                {
                    "slug": "bench",
                    "members": {"alice": "owner"},
                    "repositories": [{"slug": "repo", "count": 1000, "branches": 3, "pull_requests": 20}],
                }
            ]
        },
        "datacenter": {
            "projects": [
                {
                    "key": "BENCH",
                    "permissions": {"alice": "admin"},
                    "repositories": [{"slug": "svc", "count": 5, "pull_requests": {"OPEN": 7}}],
                }
            ]
        },
    }
    # How fast a bulk seed is, is tests/bench/emulator_seed.py's to say (a loaded machine took over 10 s here).
    created = control(emu, "POST", "seed", timeout=120, json=spec).json()["created"]
    assert created["repositories"] == 1005 and created["pull_requests"] == 20035
    state = control(emu, "GET", "state").json()
    assert state["totals"]["pull_requests"] == 20035
    sample = next(r for r in state["repositories"] if r["full_name"] == "bench/repo-0001")
    assert sample["pull_requests"] == {"total": 20, "OPEN": 8, "MERGED": 10, "DECLINED": 2}
    token = cloud_login(emu)
    listing = requests.get(
        f"{emu.cloud_url}/2.0/repositories/bench?pagelen=100", headers=bearer(token), timeout=10
    ).json()
    assert listing["size"] == 1000 and "next" in listing


def test_default_seed_is_deterministic(emu):
    first = control(emu, "GET", "state").json()
    control(emu, "POST", "reset", json={"seed": True})
    assert control(emu, "GET", "state").json() == first
    assert first["totals"]["repositories"] >= 10
    personal = [r for r in first["repositories"] if r["personal"]]
    assert {r["owner"] for r in personal} == {"~ALICE", "~BOB"}
    web_app = next(r for r in first["repositories"] if r["full_name"] == "acme/web-app")
    assert web_app["branches"] > 100


def test_control_errors_are_json(emu):
    resp = control(emu, "POST", "cloud/repos/acme/nope/push", json={})
    assert resp.status_code == 404 and "error" in resp.json()
    assert control(emu, "POST", "oauth/clients", json={"flavor": "cloud"}).status_code == 400
    bad = control(
        emu,
        "POST",
        "oauth/authorize",
        json={"flavor": "cloud", "client_id": "unknown", "redirect_uri": CALLBACK.format("bitbucket")},
    )
    assert bad.status_code == 400


def test_cli_prints_urls_and_serves(tmp_path: Path):
    repo_root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.emulator", "--cloud-port", "0", "--dc-port", "0"],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        cloud_line = proc.stdout.readline()
        dc_line = proc.stdout.readline()
        assert "Cloud" in cloud_line and "Data Center" in dc_line
        cloud_url = cloud_line.split()[3]
        assert requests.get(f"{cloud_url}/_emulator/state", timeout=10).json()["totals"]["repositories"] >= 10
    finally:
        proc.terminate()
        proc.wait(timeout=10)
