"""Delivery faults over real HTTP: seeded random drops, drop windows, unreachable and slow receivers, silent
changes, and Data Center's circuit breaker / automatic disable (Cloud never disables a hook)."""

from __future__ import annotations

import time

import pytest
import requests

from .conftest import Receiver, bearer, cloud_login, control, dc_login, verify_signature

SECRET = "hook-secret"


def cloud_hook(emu, token: str, url: str, repo: str = "acme/api-service", events=("repo:push",)) -> dict:
    resp = requests.post(
        f"{emu.cloud_url}/2.0/repositories/{repo}/hooks",
        headers=bearer(token),
        json={"description": "t", "url": url, "active": True, "secret": SECRET, "events": list(events)},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def dc_hook(emu, token: str, url: str, repo: str = "PLAT/tools", events=("repo:refs_changed",)) -> dict:
    project, slug = repo.split("/")
    resp = requests.post(
        f"{emu.dc_url}/rest/api/1.0/projects/{project}/repos/{slug}/webhooks",
        headers=bearer(token),
        json={"name": "t", "url": url, "events": list(events), "configuration": {"secret": SECRET}},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def push(emu, flavor: str, repo: str, branch: str = "main", **extra: object) -> dict:
    resp = control(emu, "POST", f"{flavor}/repos/{repo}/push", json={"branch": branch, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


def add_fault(emu, **spec: object) -> int:
    resp = control(emu, "POST", "delivery-faults", json=spec)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def log(emu, **filters: str) -> list[dict]:
    return control(emu, "GET", "deliveries", params={"wait": "1", **filters}).json()["deliveries"]


def fast_deliveries(emu, timeout: float = 0.3) -> None:
    assert control(emu, "POST", "config", json={"delivery_timeout": timeout, "delivery_retry_delay": 0.01}).ok


# ---------------------------------------- random drops
def _dropped_pattern(emu, receiver, seed: int, n: int = 40) -> list[bool]:
    control(emu, "DELETE", "deliveries")
    control(emu, "DELETE", "delivery-faults")
    receiver.requests.clear()
    add_fault(emu, drop_fraction=0.3, seed=seed)
    for _ in range(n):
        push(emu, "cloud", "acme/api-service")
    entries = log(emu)
    assert len(entries) == n
    return [d["state"] == "dropped" for d in entries]


def test_drop_fraction_is_seeded_and_reproducible(emu, receiver):
    cloud_hook(emu, cloud_login(emu), receiver.url)
    first = _dropped_pattern(emu, receiver, seed=7)
    delivered = [d for d in log(emu) if d["state"] == "delivered"]
    # What was dropped never reached the receiver; everything else did, once.
    got = receiver.wait_for(len(delivered))
    assert sorted(r["headers"]["X-Request-UUID"] for r in got) == sorted(d["request_id"] for d in delivered)
    assert 4 <= sum(first) <= 20  # about 30 % of 40
    dropped = [d for d in log(emu) if d["state"] == "dropped"]
    assert all(d["reason"] == "dropped by delivery fault 1 (fraction 0.3)" and d["attempts"] == [] for d in dropped)
    assert _dropped_pattern(emu, receiver, seed=7) == first  # same seed, same changes: same drops
    assert _dropped_pattern(emu, receiver, seed=8) != first


def test_drop_window_next_n_for_one_repository(emu, receiver):
    token = dc_login(emu)
    dc_hook(emu, token, receiver.url, repo="PLAT/tools")
    dc_hook(emu, token, receiver.url, repo="PLAT/core")
    add_fault(emu, repository="plat/core", after=1, count=2)
    for _ in range(4):
        push(emu, "datacenter", "PLAT/core")
        push(emu, "datacenter", "PLAT/tools")
    core = [d["state"] for d in log(emu, repository="PLAT/core")]
    assert core == ["delivered", "dropped", "dropped", "delivered"]
    assert {d["state"] for d in log(emu, repository="PLAT/tools")} == {"delivered"}
    (rule,) = control(emu, "GET", "delivery-faults").json()["delivery_faults"]
    assert (rule["seen"], rule["fired"], rule["active"]) == (4, 2, False)


def test_drop_window_in_seconds_for_one_hook(emu, receiver):
    token = cloud_login(emu)
    other = Receiver()
    try:
        lost = cloud_hook(emu, token, receiver.url)
        cloud_hook(emu, token, other.url)
        add_fault(emu, flavor="cloud", hook_id=lost["uuid"], seconds=1.0)
        push(emu, "cloud", "acme/api-service")
        time.sleep(1.1)
        push(emu, "cloud", "acme/api-service")
        states = [d["state"] for d in log(emu, hook_id=lost["uuid"])]
        assert states == ["dropped", "delivered"]
        assert len(other.wait_for(2)) == 2  # the other hook of the same repository got both
    finally:
        other.close()


# ---------------------------------------- failures: unreachable, slow
def test_unreachable_receiver_fails_every_cloud_attempt(emu, receiver):
    fast_deliveries(emu)
    cloud_hook(emu, cloud_login(emu), receiver.url)
    add_fault(emu, action="unreachable", count=1)
    push(emu, "cloud", "acme/api-service")
    push(emu, "cloud", "acme/api-service")
    failed, ok = log(emu)
    assert failed["state"] == "failed" and failed["fault_id"] == 1
    assert [a["error"] for a in failed["attempts"]] == ["ConnectionError"] * 3  # Cloud retried twice
    assert failed["reason"] == "ConnectionError (receiver unreachable by delivery fault 1) after 3 attempt(s)"
    assert ok["state"] == "delivered"
    assert len(receiver.wait_for(1)) == 1


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_answer_slower_than_the_timeout_is_a_failure(emu, receiver, flavor):
    fast_deliveries(emu, timeout=0.3)
    if flavor == "cloud":
        cloud_hook(emu, cloud_login(emu), receiver.url)
        repo = "acme/api-service"
    else:
        dc_hook(emu, dc_login(emu), receiver.url)
        repo = "PLAT/tools"
    add_fault(emu, action="delay", delay_ms=5000, count=1)
    started = time.monotonic()
    push(emu, flavor, repo)
    (slow,) = log(emu)
    assert time.monotonic() - started < 3  # the emulator waited for its own timeout, not for 5 s per attempt
    attempts = 3 if flavor == "cloud" else 1  # Cloud resends after a timeout, DC does not
    assert slow["state"] == "failed" and slow["status"] is None
    assert [(a["error"], a["receiver_status"]) for a in slow["attempts"]] == [("timeout", 200)] * attempts
    assert all(290 <= a["duration_ms"] < 2000 for a in slow["attempts"])
    assert "answer delayed 5000 ms by delivery fault 1" in slow["reason"]
    # The receiver did get the request every time (a late answer is not a lost request).
    assert len(receiver.wait_for(attempts)) == attempts

    # Below the timeout the delay just makes the delivery slower.
    add_fault(emu, action="delay", delay_ms=100, count=1)
    push(emu, flavor, repo)
    quick = log(emu)[-1]
    assert quick["state"] == "delivered" and quick["attempts"][0]["duration_ms"] >= 100


def test_really_slow_receiver_times_out(emu, receiver):
    fast_deliveries(emu, timeout=0.2)
    dc_hook(emu, dc_login(emu), receiver.url)
    receiver.delay = 0.5
    push(emu, "datacenter", "PLAT/tools")
    (slow,) = log(emu)
    assert slow["state"] == "failed" and slow["attempts"][0]["error"] == "timeout"
    assert slow["reason"] == "timeout after 1 attempt(s)"


# ---------------------------------------- silent changes
def test_changes_with_deliver_false_fire_no_webhook(emu, receiver):
    token = dc_login(emu)
    dc_hook(emu, token, receiver.url, events=("repo:refs_changed", "pr:opened", "pr:merged"))
    repo = "datacenter/repos/PLAT/tools"
    head = push(emu, "datacenter", "PLAT/tools", branch="feature/quiet", deliver=False)["head"]
    assert control(emu, "POST", f"{repo}/tags", json={"name": "v9.9.9", "deliver": False}).status_code == 201
    assert control(emu, "DELETE", f"{repo}/tags/v9.9.9?deliver=false").status_code == 204
    pr = control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/quiet", "deliver": False}).json()
    assert control(emu, "POST", f"{repo}/pullrequests/{pr['id']}/merge", json={"deliver": False}).ok
    silent = log(emu)
    assert [d["event_key"] for d in silent] == [
        "repo:refs_changed",
        "repo:refs_changed",
        "repo:refs_changed",
        "pr:opened",
        "pr:merged",
        "repo:refs_changed",  # the merge moved main
    ]
    assert {(d["state"], d["reason"]) for d in silent} == {("dropped", "silent change (deliver: false)")}
    # The changes happened: the REST API shows them.
    branch = requests.get(
        f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/tools/branches",
        params={"filterText": "feature/quiet"},
        headers=bearer(token),
        timeout=10,
    ).json()["values"][0]
    assert branch["latestCommit"] == head
    merged = requests.get(
        f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/tools/pull-requests/{pr['id']}",
        headers=bearer(token),
        timeout=10,
    ).json()
    assert merged["state"] == "MERGED"
    # A normal change afterwards is delivered; nothing of the silent ones ever reached the receiver.
    push(emu, "datacenter", "PLAT/tools")
    assert log(emu)[-1]["state"] == "delivered"
    assert len(receiver.wait_for(1)) == 1 and len(receiver.requests) == 1
    bad = control(emu, "POST", f"{repo}/push", json={"deliver": "nope"})
    assert bad.status_code == 400 and bad.json() == {"error": "deliver must be true or false"}


# ---------------------------------------- DC circuit breaker / disable; Cloud keeps the hook
def _dc_webhook(emu, token: str, hook_id: int) -> dict:
    url = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/tools/webhooks/{hook_id}"
    return requests.get(url, headers=bearer(token), timeout=10).json()


def _health(emu, hook_id: str) -> dict:
    return next(h for h in control(emu, "GET", "hooks").json()["hooks"] if h["id"] == hook_id)


def test_dc_circuit_breaker_skips_a_failing_hook_then_recovers(emu, receiver):
    assert control(emu, "POST", "config", json={"dc_hook_failure_threshold": 3, "dc_hook_skip_seconds": 1.0}).ok
    token = dc_login(emu)
    hook = dc_hook(emu, token, receiver.url)
    receiver.statuses = [500, 500, 500]
    for _ in range(4):
        push(emu, "datacenter", "PLAT/tools")
    states = [(d["state"], d["reason"]) for d in log(emu)]
    assert states[:3] == [("failed", "HTTP 500 after 1 attempt(s)")] * 3
    assert states[3][0] == "skipped" and states[3][1].startswith("webhook failed 3 times in a row: skipped")
    assert len(receiver.requests) == 3  # the skipped one was never sent
    health = _health(emu, str(hook["id"]))
    assert health["consecutive_failures"] == 3 and health["skipped_for_seconds"] <= 1.0
    assert _dc_webhook(emu, token, hook["id"])["active"] is True  # DC documents skipping, not disabling
    time.sleep(1.1)  # the breaker lets the next delivery through; it fails again: a longer skip
    receiver.statuses = [500]
    push(emu, "datacenter", "PLAT/tools")
    assert log(emu)[-1]["state"] == "failed"
    health = _health(emu, str(hook["id"]))
    assert health["consecutive_failures"] == 4 and 1.0 < health["skipped_for_seconds"] <= 2.0  # 1 s x 2^1
    # An update through the REST API (the reconciler's repair) closes the breaker at once.
    put = requests.put(
        f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/tools/webhooks/{hook['id']}",
        headers=bearer(token),
        json={"active": True},
        timeout=10,
    )
    assert put.status_code == 200
    push(emu, "datacenter", "PLAT/tools")
    assert log(emu)[-1]["state"] == "delivered"
    assert _health(emu, str(hook["id"]))["consecutive_failures"] == 0


def test_dc_disable_mode_turns_the_hook_off_until_a_put_reenables_it(emu, receiver):
    assert control(emu, "POST", "config", json={"dc_hook_failure_threshold": 2, "dc_hook_on_failures": "disable"}).ok
    token = dc_login(emu)
    hook = dc_hook(emu, token, receiver.url)
    add_fault(emu, action="unreachable", count=2)
    push(emu, "datacenter", "PLAT/tools")
    push(emu, "datacenter", "PLAT/tools")
    assert [d["state"] for d in log(emu)] == ["failed", "failed"]
    shown = _dc_webhook(emu, token, hook["id"])
    assert shown["active"] is False
    assert _health(emu, str(hook["id"]))["disabled_reason"] == "disabled after 2 consecutive failed deliveries"
    push(emu, "datacenter", "PLAT/tools")
    assert len(log(emu)) == 2 and receiver.requests == []  # a disabled hook gets nothing
    put = requests.put(
        f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/tools/webhooks/{hook['id']}",
        headers=bearer(token),
        json={"active": True},
        timeout=10,
    )
    assert put.status_code == 200 and put.json()["active"] is True
    head = push(emu, "datacenter", "PLAT/tools")["head"]
    assert log(emu)[-1]["state"] == "delivered"
    (got,) = receiver.wait_for(1)
    assert head.encode() in got["body"]
    assert _health(emu, str(hook["id"]))["consecutive_failures"] == 0
    bad = control(emu, "POST", "config", json={"dc_hook_on_failures": "explode"})
    assert bad.status_code == 400


def test_cloud_keeps_a_failing_hook_active(emu, receiver):
    fast_deliveries(emu)
    token = cloud_login(emu)
    hook = cloud_hook(emu, token, receiver.url)
    add_fault(emu, action="unreachable", count=8)
    for _ in range(8):
        push(emu, "cloud", "acme/api-service")
    assert {d["state"] for d in log(emu)} == {"failed"}
    url = f"{emu.cloud_url}/2.0/repositories/acme/api-service/hooks/{hook['uuid']}"
    assert requests.get(url, headers=bearer(token), timeout=10).json()["active"] is True
    push(emu, "cloud", "acme/api-service")
    assert log(emu)[-1]["state"] == "delivered"


# ---------------------------------------- control API validation
def test_delivery_fault_rules_are_validated_listed_and_removable(emu):
    for spec, message in [
        ({"action": "explode"}, "action must be one of drop, unreachable, delay"),
        ({"drop_fraction": 1.5}, "fraction (drop_fraction) must be a number from 0 to 1"),
        ({"action": "delay"}, "a delay fault needs delay_ms"),
        ({"delay_ms": 5}, "delay_ms only goes with action delay"),
        ({"bogus": 1}, "unknown delivery fault field(s): bogus"),
    ]:
        resp = control(emu, "POST", "delivery-faults", json=spec)
        assert resp.status_code == 400 and resp.json() == {"error": message}
    first = add_fault(emu, drop_fraction=0.3, seed=7)
    add_fault(emu, action="delay", delay_ms=12000, flavor="dc", repository="PLAT/core")
    rules = control(emu, "GET", "delivery-faults").json()["delivery_faults"]
    assert [(r["action"], r["fraction"], r["flavor"]) for r in rules] == [
        ("drop", 0.3, None),
        ("delay", 1.0, "datacenter"),
    ]
    assert control(emu, "DELETE", f"delivery-faults/{first}").status_code == 204
    assert len(control(emu, "GET", "delivery-faults").json()["delivery_faults"]) == 1
    assert control(emu, "DELETE", f"delivery-faults/{first}").status_code == 400
    assert control(emu, "POST", "reset").ok
    assert control(emu, "GET", "delivery-faults").json()["delivery_faults"] == []


def test_signature_still_verifies_on_delivered_requests(emu, receiver):
    """Faults never touch what is sent: a delivered request is byte-for-byte what Bitbucket signs."""
    cloud_hook(emu, cloud_login(emu), receiver.url)
    add_fault(emu, action="delay", delay_ms=50)
    push(emu, "cloud", "acme/api-service")
    (got,) = receiver.wait_for(1)
    assert verify_signature(SECRET, got["body"], got["headers"]["X-Hub-Signature"])
