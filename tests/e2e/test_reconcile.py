"""Reconciliation end to end (local stack + emulator, both flavors): Bitbucket loses deliveries (the
emulator's delivery faults), bitbridge's reconciler finds and backfills every missed change exactly once
per change id, repairs hooks, and flags subscriptions it cannot repair."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from bitbridge.webhooks.normalise import HANDLED_EVENT_KEYS, normalise
from tests.e2e.support import PROVIDERS, api_session, cli, control, emulator, user_id
from tests.emulator.conftest import bearer, cloud_login, dc_login

pytestmark = pytest.mark.e2e
OWNER = {"cloud": "acme", "datacenter": "PLAT"}


def bitbridge(stack, *args: str):
    return cli(stack, *args, timeout=300)


def reconcile(stack, full_name: str) -> dict[str, Any]:
    done = bitbridge(stack, "reconcile", "--repo", full_name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(done.stdout)
    return dict(result)


def hooks_list(stack) -> dict[str, dict[str, Any]]:
    listed = bitbridge(stack, "hooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {r["repository"]: r for r in json.loads(listed.stdout)}


class Repo:
    """A fresh emulator repository with bitbridge's hook installed and a reconciliation baseline."""

    def __init__(self, stack, flavor: str, installer: str = "alice", permissions: dict | None = None) -> None:
        self.stack, self.flavor = stack, flavor
        self.slug = f"rec-{uuid.uuid4().hex[:8]}"
        self.full_name = f"{OWNER[flavor]}/{self.slug}"
        self.path = f"{flavor}/repos/{self.full_name}"
        control(
            stack,
            flavor,
            "POST",
            f"{flavor}/repos",
            {"owner": OWNER[flavor], "slug": self.slug, "permissions": permissions},
        )
        for n in range(12):  # feature branches to push to and to open pull requests from
            control(stack, flavor, "POST", f"{self.path}/branches", {"name": f"f/{n:02d}", "from": "main"})
        self.user = user_id(stack, api_session(stack, flavor, installer))
        args = ("hooks", "install", "--provider", PROVIDERS[flavor], "--repo", self.full_name, "--user", self.user)
        installed = bitbridge(stack, *args)
        assert installed.returncode == 0, installed.stderr
        assert reconcile(stack, self.full_name)["status"] == "baseline"

    def change(self, method: str, path: str, body: Any = None) -> Any:
        return control(self.stack, self.flavor, method, f"{self.path}/{path}", body)

    def deliveries(self) -> list[dict[str, Any]]:
        query = f"deliveries?wait=1&timeout=60&repository={self.full_name}"
        return list(control(self.stack, self.flavor, "GET", query)["deliveries"])

    def events(self, settle: float = 3.0, timeout: float = 90.0) -> list[dict[str, Any]]:
        """This repository's events on the bus, once no new one arrived for `settle` seconds."""
        deadline, last, stable_since = time.monotonic() + timeout, -1, time.monotonic()
        while True:
            found = [
                e["detail"]
                for e in self.stack.events(0)[0]
                if (e["detail"].get("repository") or {}).get("full_name") == self.full_name
            ]
            if len(found) != last:
                last, stable_since = len(found), time.monotonic()
            elif time.monotonic() - stable_since >= settle or time.monotonic() > deadline:
                return found
            time.sleep(0.3)

    def rest(self, token: str) -> str:
        if self.flavor == "cloud":
            return f"{emulator(self.stack, 'cloud')}/2.0/repositories/{self.full_name}"
        return f"{emulator(self.stack, 'datacenter')}/rest/api/1.0/projects/{OWNER['datacenter']}/repos/{self.slug}"


def two_hundred_changes(repo: Repo, seed: int) -> None:
    """Pushes, new branches, tag creates and deletes, pull requests opened / updated / merged / declined."""
    rnd = random.Random(seed)
    pushed = [f"f/{n:02d}" for n in range(6)]  # never pull request sources: their pushes are plain pushes
    sources = [f"f/{n:02d}" for n in range(6, 12)]
    left = {"push": 40, "branch": 40, "tag": 20, "untag": 20, "open": 30, "update": 20, "merge": 15, "decline": 15}
    tags: list[str] = []
    open_prs: list[int] = []

    def possible(op: str) -> bool:
        if op == "untag":
            return bool(tags)
        if op == "update":
            return bool(open_prs)
        if op in ("merge", "decline"):  # keep one open while updates remain and nothing more opens
            return bool(open_prs) and (not left["update"] or len(open_prs) > 1 or left["open"] > 0)
        return True

    for done in range(200):
        op = rnd.choice(sorted(o for o, n in left.items() if n and possible(o)))
        left[op] -= 1
        if op == "push":
            repo.change("POST", "push", {"branch": rnd.choice(pushed), "commits": 1})
        elif op == "branch":
            repo.change("POST", "branches", {"name": f"new/{done:03d}", "from": "main"})
        elif op == "tag":
            tags.append(f"v{done:03d}")
            repo.change("POST", "tags", {"name": tags[-1], "target": "main"})
        elif op == "untag":
            repo.change("DELETE", f"tags/{tags.pop(rnd.randrange(len(tags)))}")
        elif op == "open":
            body = {"source": rnd.choice(sources), "destination": "main", "title": f"PR {done}"}
            open_prs.append(int(repo.change("POST", "pullrequests", body)["id"]))
        elif op == "update":
            repo.change("POST", f"pullrequests/{rnd.choice(open_prs)}/update", {"title": f"edited {done}"})
        else:
            pr = open_prs.pop(rnd.randrange(len(open_prs)))
            repo.change("POST", f"pullrequests/{pr}/{op}", {})
    assert not any(left.values())


def change_ids(events: list[dict[str, Any]]) -> list[str]:
    """One id per change: each ref change of a push, the event's for everything else."""
    out: list[str] = []
    for event in events:
        if event["type"] == "repository.push":
            out.extend(c["change_id"] for c in event["ref_changes"])
        else:
            out.append(event["change_id"])
    return out


def changes_per_object(repo: Repo, deliveries: list[dict[str, Any]]) -> dict[tuple, list[tuple[str, bool]]]:
    """Each ref's / pull request's changes in order, as (change id, is a deletion), from every delivery
    Bitbucket attempted (delivered or dropped), normalised exactly as bitbridge normalises deliveries."""
    last: dict[tuple, list[tuple[str, bool]]] = {}
    for d in deliveries:
        if d["event_key"] not in HANDLED_EVENT_KEYS[repo.flavor]:
            continue
        event = normalise(
            flavor=repo.flavor,
            provider_id=PROVIDERS[repo.flavor],
            event_key=d["event_key"],
            payload=d["payload"],
            delivery_id=str(d["id"]),
            received_at="2026-01-01T00:00:00Z",
        )
        for c in event["ref_changes"]:
            last.setdefault(("ref", c["kind"], c["name"]), []).append((c["change_id"], c["new"] is None))
        if event["pull_request"] is not None:
            last.setdefault(("pr", event["pull_request"]["id"]), []).append((event["change_id"], False))
    return last


def missing_last_changes(repo: Repo, deliveries: list[dict[str, Any]], on_bus: set[str]) -> dict[tuple, str]:
    """Objects whose last change is not on the bus - except a ref created and deleted with neither change
    delivered: Bitbucket keeps no trace of it, and bitbridge never knew it, so there is nothing to say."""
    missing = {}
    for obj, changes in changes_per_object(repo, deliveries).items():
        last, deleted = changes[-1]
        unseen_ref = deleted and not any(cid in on_bus for cid, _ in changes)
        if last not in on_bus and not unseen_ref:
            missing[obj] = last
    return missing


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_thirty_percent_dropped_every_change_reaches_the_bus_once(stack, flavor):
    repo = Repo(stack, flavor)
    fault = {"drop_fraction": 0.3, "seed": 7, "repository": repo.full_name}
    control(stack, flavor, "POST", "delivery-faults", fault)
    try:
        two_hundred_changes(repo, seed=13)
        deliveries = repo.deliveries()
    finally:
        control(stack, flavor, "DELETE", "delivery-faults")
    dropped = [d for d in deliveries if d["state"] == "dropped"]
    assert len(dropped) > 40  # the fault really lost deliveries
    before = repo.events()

    result = reconcile(stack, repo.full_name)
    assert result["status"] == "backfilled" and result["backfilled"] > 0
    events = repo.events()
    backfilled = [e for e in events if e.get("origin") == "reconciliation"]
    assert len(backfilled) == result["backfilled"]
    assert all(e["id"].startswith("rec-") and e["actor"] is None for e in backfilled)

    ids = change_ids(events)
    assert [i for i, n in Counter(ids).items() if n > 1] == []  # exactly once per change id
    assert missing_last_changes(repo, deliveries, set(ids)) == {}  # every ref's and PR's last change
    assert set(change_ids(before)) <= set(ids) and len(ids) == len(change_ids(before)) + result["backfilled"]

    # Reconciling again finds nothing: nothing is emitted twice.
    again = reconcile(stack, repo.full_name)
    extra = [e for e in repo.events() if e["id"] not in {x["id"] for x in events}]
    assert (again["status"], again["backfilled"]) == ("ok", 0), json.dumps(extra, indent=1)[:3000]
    assert len(repo.events(settle=2)) == len(events)
    health = hooks_list(stack)[repo.full_name]
    assert health["missed_changes_backfilled"] == result["backfilled"] and health["last_reconciled_at"]


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_nothing_dropped_the_reconciler_emits_nothing_delivered(stack, flavor):
    repo = Repo(stack, flavor)
    two_hundred_changes(repo, seed=13)
    deliveries = repo.deliveries()
    assert {d["state"] for d in deliveries} == {"delivered"}
    delivered = set(change_ids(repo.events()))

    result = reconcile(stack, repo.full_name)
    backfilled = [e for e in repo.events() if e.get("origin") == "reconciliation"]
    assert not set(change_ids(backfilled)) & delivered
    # A merge moves its target branch with a push event, as on Bitbucket: every change was delivered, so
    # there is nothing to backfill.
    assert backfilled == []
    assert (result["status"], result["backfilled"]) == ("ok", 0)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_hook_deleted_in_bitbucket_is_recreated(stack, flavor):
    repo = Repo(stack, flavor)
    emu = SimpleNamespace(cloud_url=emulator(stack, "cloud"), dc_url=emulator(stack, "datacenter"))
    token = cloud_login(emu) if flavor == "cloud" else dc_login(emu)
    hook_id = hooks_list(stack)[repo.full_name]["hook_id"]
    path = "hooks" if flavor == "cloud" else "webhooks"
    assert requests.delete(f"{repo.rest(token)}/{path}/{hook_id}", headers=bearer(token), timeout=10).status_code == 204
    repo.change("POST", "push", {"branch": "f/00"})  # lost: no hook
    result = reconcile(stack, repo.full_name)
    assert result["repaired"] == "the hook was deleted in Bitbucket" and result["backfilled"] == 1
    health = hooks_list(stack)[repo.full_name]
    assert health["hook_repairs"] == 1 and health["hook_id"] != hook_id
    # The recreated hook delivers again.
    head = repo.change("POST", "push", {"branch": "f/01"})["head"]
    assert repo.deliveries()[-1]["state"] == "delivered"
    assert any(c["new"] == head for e in repo.events() for c in e["ref_changes"])


def test_a_hook_disabled_by_data_center_after_failures_is_re_enabled(stack):
    repo = Repo(stack, "datacenter")
    # Opt-in emulator mode (not documented DC behaviour, which skips a failing hook but keeps it active):
    # after 5 failed deliveries Data Center sets the hook inactive.
    control(stack, "datacenter", "POST", "config", {"dc_hook_on_failures": "disable", "dc_hook_failure_threshold": 5})
    control(stack, "datacenter", "POST", "delivery-faults", {"action": "unreachable", "repository": repo.full_name})
    try:
        for _ in range(6):
            repo.change("POST", "push", {"branch": "f/00"})
        repo.deliveries()
        hooks = control(stack, "datacenter", "GET", "hooks")["hooks"]
        assert next(h for h in hooks if h["repository"] == repo.full_name)["active"] is False
    finally:
        control(stack, "datacenter", "DELETE", "delivery-faults")
        control(stack, "datacenter", "POST", "config", {"dc_hook_on_failures": "skip"})
    result = reconcile(stack, repo.full_name)
    assert result["repaired"] == "the hook is disabled" and result["backfilled"] == 1  # f/00's final head
    hooks = control(stack, "datacenter", "GET", "hooks")["hooks"]
    assert next(h for h in hooks if h["repository"] == repo.full_name)["active"] is True
    repo.change("POST", "push", {"branch": "f/01"})
    assert repo.deliveries()[-1]["state"] == "delivered"


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_connection_without_admin_rights_needs_attention_and_says_so_once(stack, flavor):
    repo = Repo(stack, flavor, installer="bob", permissions={"bob": "admin"})
    control(stack, flavor, "PUT", f"{repo.path}/permissions", {"bob": "write"})
    result = reconcile(stack, repo.full_name)
    assert result["status"] == "needs_attention" and "no admin rights" in result["reason"]
    events = [e for e in repo.events() if e["type"] == "subscription.unhealthy"]
    assert len(events) == 1
    assert events[0]["subscription"]["state"] == "needs_attention" and "admin" in events[0]["subscription"]["reason"]
    listed = hooks_list(stack)[repo.full_name]
    assert listed["state"] == "needs_attention" and "admin" in listed["attention_reason"]
    assert reconcile(stack, repo.full_name)["status"] == "needs_attention"
    assert len([e for e in repo.events(settle=2) if e["type"] == "subscription.unhealthy"]) == 1  # not again
    # Admin rights back: healthy again.
    control(stack, flavor, "PUT", f"{repo.path}/permissions", {"bob": "admin"})
    assert reconcile(stack, repo.full_name)["status"] == "ok"
    assert hooks_list(stack)[repo.full_name]["state"] == "active"


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_reconciler_crashing_mid_run_resumes_without_emitting_twice(stack, flavor):
    repo = Repo(stack, flavor)
    for n in range(6):  # six changes Bitbucket never delivers
        repo.change("POST", "push", {"branch": f"f/{n:02d}", "commits": 1, "deliver": False})
    crashed = bitbridge(stack, "reconcile", "--repo", repo.full_name, "--crash-after-events", "3")
    assert crashed.returncode == 3, crashed.stdout + crashed.stderr
    resumed = reconcile(stack, repo.full_name)
    assert resumed["backfilled"] == 3  # only what the crashed run had not written
    events = [e for e in repo.events() if e.get("origin") == "reconciliation"]
    assert sorted(c["name"] for e in events for c in e["ref_changes"]) == [f"f/{n:02d}" for n in range(6)]
    assert len(set(change_ids(events))) == len(change_ids(events)) == 6
    assert reconcile(stack, repo.full_name)["backfilled"] == 0
