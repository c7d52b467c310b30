"""`bitbridge providers ...` against the local stack: add, verify (pre-flight + a real OAuth round
trip), diagnoses in words, set, rotate-secret, remove."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import requests

from tests.conftest import REPO_ROOT
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
    assert "bitbridge_session" not in str(browser.jar)  # (nor __Host-bitbridge_session): a verification signs nobody in


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


def _round_trip(url: str) -> requests.Response:
    """An admin opens the verification link and grants on the emulator's consent page."""
    browser = Browser()
    page = browser.get(url)
    assert page.status_code == 200 and "Grant access" in page.text, page.text[:300]
    return browser.get(consent(browser, page, "alice").headers["Location"])


def _verify_waiting(stack, provider_id: str) -> tuple[int, str, str]:
    """`providers verify` as an admin runs it (waiting for the round trip), the round trip done in a
    browser meanwhile: (exit code, everything it printed, the link it printed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BITBRIDGE_"))}
    command = [sys.executable, "-m", "bitbridge.cli", "--local", stack.urls["console"]]
    process = subprocess.Popen(
        [*command, "providers", "verify", provider_id, "--timeout", "60"],
        cwd=REPO_ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    printed = []
    for line in process.stdout:
        printed.append(line)
        if "/authorize?purpose=verify" in line:
            url = line.strip()
            break
    else:
        raise AssertionError("".join(printed))
    assert _round_trip(url).status_code == 200
    rest, _ = process.communicate(timeout=60)
    return process.returncode, "".join(printed) + rest, url


def test_reverification_works_and_a_fixed_misconfiguration_leaves_no_stale_diagnosis(stack):
    provider_id = f"rv-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "datacenter", provider_id, "right")
    assert _add(stack, provider_id, "datacenter", key, "right").returncode == 0

    code, out, _ = _verify_waiting(stack, provider_id)
    assert code == 0 and f"{provider_id} is verified" in out, out
    first = _show(stack, provider_id)["verified_at"]
    # An already verified provider verifies again (was: "No round trip completed in time").
    code, out, _ = _verify_waiting(stack, provider_id)
    assert code == 0 and f"{provider_id} is verified" in out, out
    assert _show(stack, provider_id)["status"] == "verified" and _show(stack, provider_id)["verified_at"] >= first

    assert cli(stack, "providers", "rotate-secret", provider_id, "--secret", "wrong").returncode == 0
    broken = cli(stack, "providers", "verify", provider_id, "--no-wait")
    assert broken.returncode == 1 and "client secret is wrong" in broken.stdout
    shown = _show(stack, provider_id)
    assert shown["status"] == "failed" and "client secret is wrong" in shown["status_detail"]

    assert cli(stack, "providers", "rotate-secret", provider_id, "--secret", "right").returncode == 0
    code, out, url = _verify_waiting(stack, provider_id)
    assert code == 0 and f"{provider_id} is verified" in out, out
    shown = _show(stack, provider_id)
    assert shown["status"] == "verified" and shown["status_detail"] is None

    # The link the CLI printed worked once; opened again it is refused and changes nothing.
    reused = requests.get(url, allow_redirects=False, timeout=10)
    assert reused.status_code == 403 and "already used" in reused.text
    assert _show(stack, provider_id) == shown


def test_verification_without_an_admin_or_a_ticket_is_refused_and_changes_nothing(stack):
    provider_id = f"fv-{uuid.uuid4().hex[:6]}"
    key = _register_client(stack, "cloud", provider_id, "s3cret")
    assert _add(stack, provider_id, "cloud", key, "s3cret").returncode == 0
    before = _show(stack, provider_id)
    anonymous = requests.get(
        f"{stack.api}/auth/{provider_id}/authorize?purpose=verify", allow_redirects=False, timeout=10
    )
    assert anonymous.status_code == 401 and "providers verify" in anonymous.text
    forged = requests.get(
        f"{stack.api}/auth/{provider_id}/callback",
        params={"state": "x" * 43, "error": "server_error", "error_description": "\x1b[31mbroken"},
        allow_redirects=False,
        timeout=10,
    )
    assert forged.status_code == 400
    assert _show(stack, provider_id) == before
