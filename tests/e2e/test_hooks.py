"""Hooks end to end: install bitbridge's hook through Bitbucket's API (the emulator), push a
commit there, and watch the normalised event arrive on the bus."""

from __future__ import annotations

import json
import time

import pytest
import requests

from bitbridge.webhooks.signatures import sign
from tests.e2e.support import PROVIDERS, api_session, cli, emulator, user_id


def _wait_for_event(stack, since: int, predicate, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events, _ = stack.events(since)
        for envelope in events:
            if predicate(envelope["detail"]):
                return envelope["detail"]
        time.sleep(0.2)
    raise AssertionError("the event did not arrive on the bus")


def _hook_count(stack, flavor: str, owner: str, slug: str) -> int:
    state = requests.get(f"{emulator(stack, flavor)}/_emulator/state", timeout=5).json()
    repo = next(r for r in state["repositories"] if r["flavor"] == flavor and r["full_name"] == f"{owner}/{slug}")
    return int(repo["hooks"])


@pytest.mark.parametrize(
    ("flavor", "owner", "slug"), [("cloud", "acme", "api-service"), ("datacenter", "PLAT", "tools")]
)
def test_install_then_push_publishes_the_push_event(stack, flavor, owner, slug):
    user = user_id(stack, api_session(stack, flavor, "alice"))
    provider = PROVIDERS[flavor]
    args = ("hooks", "install", "--provider", provider, "--repo", f"{owner}/{slug}", "--user", user)
    first = cli(stack, *args)
    assert first.returncode == 0, first.stderr
    # Installing again updates the same hook instead of adding a second one.
    assert cli(stack, *args).returncode == 0
    assert _hook_count(stack, flavor, owner, slug) == 1

    _, cursor = stack.events()
    pushed = requests.post(
        f"{emulator(stack, flavor)}/_emulator/{flavor}/repos/{owner}/{slug}/push",
        json={"branch": "main", "commits": 1},
        timeout=10,
    )
    assert pushed.status_code in (200, 201), pushed.text
    full_name = f"{owner}/{slug}"
    event = _wait_for_event(
        stack, cursor, lambda d: d["type"] == "repository.push" and d["repository"]["full_name"] == full_name
    )
    assert event["provider"] == {"id": provider, "flavor": flavor}
    assert event["ref_changes"][0]["name"] == "main"
    listed = json.loads(cli(stack, "hooks", "list", "--json").stdout)
    assert full_name in {r["repository"] for r in listed}


def test_manual_install_prints_a_secret_the_receiver_accepts(stack):
    result = cli(
        stack,
        "hooks",
        "install",
        "--manual",
        "--provider",
        "acme-datacenter",
        "--repo",
        "WEB/cms",
        "--repository-id",
        "9999",
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.strip().split(":", 1) for line in result.stdout.splitlines() if line.startswith("  "))
    url, secret = lines["URL"].strip(), lines["Secret"].strip()
    assert url.startswith(f"{stack.api}/hooks/acme-datacenter/sub-")
    assert "repo:refs_changed" in lines["Events"]
    body = json.dumps({"eventKey": "pr:opened", "date": "2026-01-01T00:00:00+0000"}).encode()
    headers = {"X-Event-Key": "repo:modified", "X-Request-Id": "manual-1", "Content-Type": "application/json"}
    good = requests.post(url, data=body, headers={**headers, "X-Hub-Signature": sign(secret, body)}, timeout=10)
    assert good.status_code == 202
    wrong = requests.post(url, data=body, headers={**headers, "X-Hub-Signature": sign("nope", body)}, timeout=10)
    assert wrong.status_code == 401


def test_user_without_admin_rights_is_told_to_install_by_hand(stack):
    user = user_id(stack, api_session(stack, "datacenter", "carol"))  # carol can only read PLAT
    result = cli(stack, "hooks", "install", "--provider", "acme-datacenter", "--repo", "PLAT/core", "--user", user)
    assert result.returncode == 2
    assert "--manual" in result.stderr
