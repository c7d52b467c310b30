"""`bitbridge providers ...` against the local stack: add, verify (pre-flight + a real OAuth round
trip), diagnoses in words, set, rotate-secret, remove."""

from __future__ import annotations

import json
import uuid

import requests

from tests.e2e.browser import Browser, consent
from tests.e2e.support import cli, emulator


def _register_client(stack, flavor: str, provider_id: str, secret: str, redirect: str | None = None) -> str:
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    requests.post(
        f"{emulator(stack, flavor)}/_emulator/oauth/clients",
        json={
            "flavor": flavor,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": redirect or f"{stack.api}/auth/{provider_id}/callback",
            "scopes": ["REPO_ADMIN"] if flavor == "datacenter" else None,
        },
        timeout=5,
    ).raise_for_status()
    return client_id


def _add(stack, provider_id: str, flavor: str, key: str, secret: str, *extra: str, url: str | None = None):
    url = url or emulator(stack, flavor)
    return cli(
        stack,
        "providers",
        "add",
        provider_id,
        "--flavor",
        flavor,
        "--key",
        key,
        "--secret",
        secret,
        "--url",
        url,
        *extra,
    )


def _show(stack, provider_id: str) -> dict:
    result = cli(stack, "providers", "show", provider_id)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_add_prints_the_callback_url_and_verify_completes_with_one_round_trip(stack):
    provider_id = f"dc-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "datacenter", provider_id, "s3cret")
    added = _add(stack, provider_id, "datacenter", key, "s3cret")
    assert added.returncode == 0, added.stderr
    assert f"{stack.api}/auth/{provider_id}/callback" in added.stdout
    assert "REPO_ADMIN" in added.stdout  # the permissions to tick
    assert "s3cret" not in added.stdout
    assert _show(stack, provider_id)["status"] == "pending"

    verify = cli(stack, "providers", "verify", provider_id, "--no-wait")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    url = next(line.strip() for line in verify.stdout.splitlines() if "/authorize?purpose=verify" in line)
    browser = Browser()
    page = browser.get(url)
    done = browser.get(consent(browser, page, "alice").headers["Location"])
    assert done.status_code == 200 and "Provider verified" in done.text
    assert _show(stack, provider_id)["status"] == "verified"
    assert "bitbridge_session" not in str(browser.jar)  # a verification signs nobody in


def test_verify_diagnoses_a_wrong_secret_an_unknown_client_and_a_redirect_mismatch(stack):
    wrong_secret = f"ws-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "cloud", wrong_secret, "right")
    assert _add(stack, wrong_secret, "cloud", key, "wrong").returncode == 0
    result = cli(stack, "providers", "verify", wrong_secret, "--no-wait")
    assert result.returncode == 1 and "client secret is wrong" in result.stdout
    assert _show(stack, wrong_secret)["status"] == "failed"

    unknown = f"uc-{uuid.uuid4().hex[:6]}"
    assert _add(stack, unknown, "cloud", "no-such-client", "x").returncode == 0
    result = cli(stack, "providers", "verify", unknown, "--no-wait")
    assert result.returncode == 1 and "does not know this client id" in result.stdout

    mismatch = f"rm-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "datacenter", mismatch, "s", redirect="https://elsewhere.example/cb")
    assert _add(stack, mismatch, "datacenter", key, "s").returncode == 0
    result = cli(stack, "providers", "verify", mismatch, "--no-wait")
    assert result.returncode == 1 and "redirect URI" in result.stdout
    assert f"{stack.api}/auth/{mismatch}/callback" in result.stdout


def test_datacenter_must_use_https_and_be_reachable(stack):
    plain = _add(stack, "dc-plain", "datacenter", "k", "s", url="http://bitbucket.example.com")
    assert plain.returncode == 2 and "HTTPS" in plain.stderr
    unreachable = f"un-{uuid.uuid4().hex[:6]}"
    added = _add(stack, unreachable, "datacenter", "k", "s", url="http://127.0.0.1:9")
    assert added.returncode == 0, added.stderr
    result = cli(stack, "providers", "verify", unreachable, "--no-wait")
    assert result.returncode == 1 and "unreachable" in result.stdout


def test_set_rotate_and_remove(stack):
    provider_id = f"cl-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "cloud", provider_id, "one")
    assert _add(stack, provider_id, "cloud", key, "one").returncode == 0
    assert cli(stack, "providers", "set", provider_id, "--sign-in", "off").returncode == 0
    refused = requests.get(f"{stack.api}/auth/{provider_id}/authorize", allow_redirects=False, timeout=5)
    assert refused.status_code == 404 and "not enabled" in refused.text and "href='/login'" in refused.text
    assert cli(stack, "providers", "rotate-secret", provider_id, "--secret", "rotated-9f2c").returncode == 0
    listed = json.loads(cli(stack, "providers", "list", "--json").stdout)
    assert provider_id in {p["id"] for p in listed}
    assert "rotated-9f2c" not in json.dumps(listed)
    assert cli(stack, "providers", "remove", provider_id).returncode == 2  # needs --yes
    assert cli(stack, "providers", "remove", provider_id, "--yes").returncode == 0
    gone = requests.get(f"{stack.api}/auth/{provider_id}/authorize", allow_redirects=False, timeout=5)
    assert gone.status_code == 404


def test_add_that_fails_creates_nothing_and_a_retry_succeeds(stack):
    # The failure the first deploy hit: add failed after registering, and the retry said "already exists".
    provider_id = f"re-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "cloud", provider_id, "s3cret")
    failed = _add(stack, provider_id, "cloud", key, "s3cret", "--base-url", "not-a-url")
    assert failed.returncode == 2 and "absolute http(s) URL" in failed.stderr
    listed = json.loads(cli(stack, "providers", "list", "--json").stdout)
    assert provider_id not in {p["id"] for p in listed}
    retried = _add(stack, provider_id, "cloud", key, "s3cret")
    assert retried.returncode == 0, retried.stderr
    assert f"{stack.api}/auth/{provider_id}/callback" in retried.stdout
