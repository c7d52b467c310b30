"""One rate-limit budget per person and resource class, end to end: the local stack and the emulator with
Bitbucket's limits on (windows played in seconds). Background work waits for room without holding a Lambda
(`waiting_budget`, with when it resumes) and gets every import done with no 429; people come first, the
reconciler last; another app spending the same person's allowance costs bitbridge at most one 429 per class
per window; Data Center's bucket is never run dry; a person whom the budget cannot serve now gets
bitbridge's own 429 with `retry_after`.

Each test has its own person, so budgets and the emulator's counters never mix; this module has its own
stack, since it changes the providers' and the emulator's limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from bitbridge.budget import RESERVATION_SECONDS
from bitbridge.client import Client, RateLimited
from tests.e2e.conftest import RunningStack, start_stack, stop_stack
from tests.e2e.service_support import add_client, connect
from tests.e2e.support import PROVIDERS, api_session, cli, control, emulator, job, start_imports, wait_for

SEED = {
    "cloud": {
        "workspaces": [
            {
                "slug": "quota",
                "name": "Quota",
                "members": {"alice": "owner", "bob": "owner", "carol": "owner"},
                "repositories": [
                    {"slug": "wait", "count": 12, "branches": 2, "tags": 1, "pull_requests": 2, "issues": 0},
                    {"slug": "other", "count": 4, "branches": 2, "tags": 1, "pull_requests": 2, "issues": 0},
                    {"slug": "spent", "count": 6, "branches": 1, "tags": 0, "pull_requests": 0, "issues": 0},
                ],
            }
        ]
    },
    "datacenter": {
        "projects": [
            {
                "key": "QUOTA",
                "name": "Quota",
                "permissions": {"alice": "admin"},
                "repositories": [{"slug": "bucket", "count": 14, "branches": 2, "tags": 1, "pull_requests": 2}],
            }
        ]
    },
}
CLASSES = ("repositories", "webhooks", "other")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("budget"))
    control(running, "cloud", "POST", "seed", SEED)
    yield running
    stop_stack(running)


def cloud_limits(stack: RunningStack, window: float, limit: int) -> None:
    """The same limits on Bitbucket (the emulator) and in bitbridge's settings for the provider."""
    control(
        stack,
        "cloud",
        "POST",
        "config",
        {"rate_limit_window_seconds": window, "cloud_rate_limits": dict.fromkeys(CLASSES, limit)},
    )
    classes = [arg for klass in CLASSES for arg in ("--class", f"{klass}={limit}")]
    done = cli(stack, "providers", "set-limits", PROVIDERS["cloud"], "--window-seconds", str(window), *classes)
    assert done.returncode == 0, done.stderr


def rate_limits(stack: RunningStack, flavor: str, user: str) -> list[dict]:
    found = control(stack, flavor, "GET", f"rate-limits?flavor={flavor}&user={user}")["limits"]
    return list(found)


def rejected(stack: RunningStack, flavor: str, user: str) -> int:
    """429s the emulator served to this person's calls (bitbridge's, here: no other app calls as them)."""
    return sum(int(r["rejected"]) for r in rate_limits(stack, flavor, user))


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(1, count + 1)]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def kickoff(session: requests.Session, stack: RunningStack, flavor: str, repos: list[str]) -> list[dict]:
    """POST /api/imports, coming back after `retry_after` when the budget has no room for the checks now."""
    for _ in range(10):
        answer = session.post(
            f"{stack.api}/api/imports", json={"provider": PROVIDERS[flavor], "repositories": repos}, timeout=60
        )
        if answer.status_code != 429:
            assert answer.status_code == 202, answer.text[:500]
            return list(answer.json()["imports"])
        error = answer.json()["error"]
        assert error["code"] == "rate_limited" and int(answer.headers["Retry-After"]) == error["retry_after"]
        time.sleep(error["retry_after"])
    raise AssertionError("the kickoff never found room")


def test_background_work_waits_for_budget_and_resumes_with_no_429(stack):
    window, limit = 20.0, 40  # 2 calls a window kept for people
    cloud_limits(stack, window, limit)
    alice = api_session(stack, "cloud", "alice")
    product = Client(stack.api, add_client(stack)[1])
    connect(stack, product, "cloud", "alice-in-product", "alice")  # the same person, through a product
    # ~4 calls each: over a window. Asked four at a time, as a person picks them in the console.
    wanted = names("quota/wait", 12)
    jobs = [j for at in range(0, 12, 4) for j in start_imports(alice, stack, "cloud", wanted[at : at + 4])]
    ids = [j["id"] for j in jobs]

    waiting: dict[str, float] = {}  # job -> when it said it resumes
    resumed_early: list[str] = []
    served_waits: list[float] = []
    reconciled: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        now = time.time()
        states = {i: job(alice, stack, i) for i in ids}
        for job_id, body in states.items():
            if body["state"] == "waiting_budget":
                until = epoch(body["waiting_until"])
                assert until > now - 2, body  # when it resumes, not a time gone by
                waiting[job_id] = until
            elif job_id in waiting and body["state"] != "queued" and now < waiting[job_id] - 1.5:
                resumed_early.append(job_id)
        done = [i for i, b in states.items() if b["state"] == "completed"]
        still = [i for i, b in states.items() if b["state"] == "waiting_budget"]
        if done and still and not served_waits:
            # A person asks meanwhile, in the same class: served from the reserve, not after the imports.
            answer = product.proxy.get(PROVIDERS["cloud"], "alice-in-product", "repositories/quota/other-0001")
            assert answer.status_code == 200
            served_waits.append(float({k.lower(): v for k, v in answer.headers.items()}["x-bitbridge-budget-wait"]))
        if done and still and not reconciled:
            # The reconciler yields to imports waiting for the same person's budget (it stays due).
            first = states[done[0]]["repository"]["full_name"]
            out = cli(stack, "reconcile", "--repo", first, "--json")
            assert out.returncode == 0, out.stderr
            reconciled = [r["status"] for r in json.loads(out.stdout)]
        if all(b["state"] in ("completed", "failed", "cancelled") for b in states.values()):
            break
        time.sleep(0.5)
    finished = {i: job(alice, stack, i) for i in ids}
    assert {b["state"] for b in finished.values()} == {"completed"}, finished
    assert waiting, "nothing waited: the limits were not binding"
    assert sum(b["budget_waits"] for b in finished.values()) >= len(waiting)
    assert resumed_early == []
    assert served_waits and max(served_waits) <= 3.0, served_waits
    assert reconciled == ["waiting_budget"]
    assert rejected(stack, "cloud", "alice") == 0
    # What it spent is what bitbridge says it spent (the budget never lost count), and now visible.
    report = json.loads(cli(stack, "budget", "--provider", PROVIDERS["cloud"], "--json").stdout)
    mine = {r["class"]: r for r in report if r.get("person") == "Alice Admin"}
    assert mine["repositories"]["limit"] == limit and mine["repositories"]["rejected"] == 0
    budget = product.budget(PROVIDERS["cloud"], "alice-in-product")
    assert budget["scope"] == "per_user" and budget["limits"]["window_seconds"] == window
    assert {b["class"] for b in budget["budgets"]} >= set(CLASSES)
    # The console's admin view: every person's budgets, for admins only.
    admin = alice.get(f"{stack.api}/api/admin/budgets", timeout=30)
    assert admin.status_code == 200
    rows = [r for r in admin.json()["budgets"] if r["person"] == "Alice Admin" and r["class"] == "repositories"]
    assert rows and rows[0]["limit"] == limit and rows[0]["rejected"] == 0
    carol = api_session(stack, "cloud", "carol")
    assert carol.get(f"{stack.api}/api/admin/budgets", timeout=30).status_code == 403
    table = cli(stack, "budget", "--provider", PROVIDERS["cloud"])
    assert table.returncode == 0 and "Alice Admin" in table.stdout and "repositories" in table.stdout


def test_another_app_spending_the_persons_allowance_costs_one_429_and_loses_nothing(stack):
    window, limit = 20.0, 20
    cloud_limits(stack, window, limit)
    bob = api_session(stack, "cloud", "bob")
    # Another app bob authorised spends 80 % of his repositories allowance just before bitbridge imports.
    base = emulator(stack, "cloud")
    control(
        stack,
        "cloud",
        "POST",
        "oauth/clients",
        {"flavor": "cloud", "client_id": "other-app", "client_secret": "s", "redirect_uri": "http://127.0.0.1:9/cb"},
    )
    code = control(stack, "cloud", "POST", "oauth/authorize", {"client_id": "other-app", "user": "bob", "state": "x"})
    token = requests.post(
        f"{base}/site/oauth2/access_token",
        auth=("other-app", "s"),
        data={"grant_type": "authorization_code", "code": code["code"]},
        timeout=10,
    ).json()["access_token"]
    for _ in range(int(limit * 0.8)):
        spent = requests.get(f"{base}/2.0/repositories/quota/other-0001", headers={"Authorization": f"Bearer {token}"})
        assert spent.status_code == 200
    started = time.monotonic()
    jobs = kickoff(bob, stack, "cloud", names("quota/other", 4))
    done = wait_for(bob, stack, [j["id"] for j in jobs], timeout=180)
    took = time.monotonic() - started
    assert {b["state"] for b in done.values()} == {"completed"}
    # At most one 429 per class per window, however long the import took.
    for row in rate_limits(stack, "cloud", "bob"):
        assert row["rejected"] <= 1 + int(took // window), row
    assert sum(r["rejected"] for r in rate_limits(stack, "cloud", "bob")) >= 1  # it did meet the other app
    # Nothing lost: every branch, tag and pull request of every repository is in its snapshot.
    for body in done.values():
        assert body["progress"] == {"branches": 2, "tags": 1, "pull_requests": 2}, body
    report = json.loads(cli(stack, "budget", "--provider", PROVIDERS["cloud"], "--json").stdout)
    assert sum(r["rejected"] for r in report if r.get("person") == "Bob Builder") >= 1  # counted by bitbridge


def test_a_person_the_budget_cannot_serve_now_gets_bitbridges_429_with_retry_after(stack):
    window, limit = 60.0, 6
    cloud_limits(stack, window, limit)
    carol = api_session(stack, "cloud", "carol")
    started = start_imports(carol, stack, "cloud", names("quota/spent", 6))  # the checks take the whole window
    refused = carol.post(
        f"{stack.api}/api/imports",
        json={"provider": PROVIDERS["cloud"], "repositories": ["quota/other-0001"]},
        timeout=30,
    )
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    # Room frees when the first request's checks leave the window: counted as made at the end of their
    # reservation (budget.RESERVATION_SECONDS), so they leave it no earlier than Bitbucket's count does.
    assert error["code"] == "rate_limited" and 30 <= error["retry_after"] <= window + RESERVATION_SECONDS + 5
    assert refused.headers["Retry-After"] == str(error["retry_after"])
    # Nothing was started for the refused request; the imports accepted before wait for the next window.
    mine = carol.get(f"{stack.api}/api/imports", timeout=30).json()["imports"]
    assert {j["repository"]["full_name"] for j in mine} == {j["repository"]["full_name"] for j in started}
    product = Client(stack.api, add_client(stack)[1])
    connect(stack, product, "cloud", "carol-in-product", "carol")
    with pytest.raises(RateLimited) as caught:
        product.proxy.get(PROVIDERS["cloud"], "carol-in-product", "repositories/quota/spent-0001")
    assert caught.value.code == "rate_limited" and (caught.value.retry_after or 0) >= 30
    assert rejected(stack, "cloud", "carol") == 0


def test_a_datacenter_bucket_of_60_refilled_5_a_second_is_never_run_dry(stack):
    control(stack, "datacenter", "POST", "config", {"dc_rate_limit": {"capacity": 60, "refill_per_second": 5}})
    done = cli(stack, "providers", "set-limits", PROVIDERS["datacenter"], "--reset")
    assert done.returncode == 0, done.stderr
    alice = api_session(stack, "datacenter", "alice")
    jobs = kickoff(alice, stack, "datacenter", names("QUOTA/bucket", 14))
    finished = wait_for(alice, stack, [j["id"] for j in jobs], timeout=180)
    assert {b["state"] for b in finished.values()} == {"completed"}
    (bucket,) = rate_limits(stack, "datacenter", "alice")
    assert bucket["rejected"] == 0
    assert bucket["admitted"] > 60  # more than one bucket's worth: the budget spaced the rest
