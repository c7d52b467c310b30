"""Reconciliation whose cost follows what changed (issue 22, item 4), end to end on the local stack + emulator,
both flavors: an unchanged repository costs the minimum (Cloud: the workspace listing filtered by `updated_on`
and one page of pull requests; Data Center: the ref-change probe and one page of pull requests), its hook is
left to its own cadence, and a change Bitbucket did not deliver is still found - a push through the refs
read that its mark triggers, a pull request change through the pull request page alone."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.reconcile_support import Repo, bitbridge, change_ids
from tests.e2e.support import PROVIDERS, api_session, control, user_id

pytestmark = pytest.mark.e2e

MINIMUM = {"cloud": 2, "datacenter": 2}  # calls for one unchanged repository reconciled on its own
PER_REPOSITORY = {"cloud": 1, "datacenter": 2}  # of which Bitbucket counts against the repository itself


def reconcile_due(stack, full_name: str) -> dict[str, Any]:
    """One repository, as the scheduled run treats it: its hook only when due."""
    done = bitbridge(stack, "reconcile", "--repo", full_name, "--hooks", "due", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(done.stdout)
    return dict(result)


def repository_calls(stack, flavor: str, full_name: str) -> int:
    return int(control(stack, flavor, "GET", "requests")["flavors"][flavor]["repositories"].get(full_name, 0))


def lost(stack, repo: Repo, *changes: tuple[str, str, Any]) -> None:
    """Make `changes` in Bitbucket with every delivery for this repository dropped."""
    control(stack, repo.flavor, "POST", "delivery-faults", {"drop_fraction": 1.0, "repository": repo.full_name})
    try:
        for method, path, body in changes:
            repo.change(method, path, body)
        assert {d["state"] for d in repo.deliveries()[-len(changes) :]} == {"dropped"}
    finally:
        control(stack, repo.flavor, "DELETE", "delivery-faults")


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_an_unchanged_repository_costs_the_minimum_and_what_was_lost_is_still_found(stack, flavor):
    repo = Repo(stack, flavor)  # hook installed, baseline reconciled (its hook checked then)
    pr = repo.change("POST", "pullrequests", {"source": "f/06", "destination": "main", "title": "open"})["id"]
    repo.events(until=lambda events: any(e["type"].startswith("pull_request") for e in events))

    control(stack, flavor, "DELETE", "requests")
    quiet = reconcile_due(stack, repo.full_name)
    assert (quiet["status"], quiet["backfilled"]) == ("ok", 0)
    # Nothing changed: no refs read, no hook read (checked at the baseline), one page of pull requests.
    assert (quiet["refs_read"], quiet["hook_checked"], quiet["calls"]) == (False, False, MINIMUM[flavor])
    assert repository_calls(stack, flavor, repo.full_name) == PER_REPOSITORY[flavor]

    # A push and a pull request update, both deliveries lost: the push moves the repository's mark, so its
    # refs are read; the pull request is found on the page read anyway.
    lost(
        stack,
        repo,
        ("POST", "push", {"branch": "f/00", "commits": 1}),
        ("POST", f"pullrequests/{pr}/update", {"title": "edited while the hook was lost"}),
    )
    before = {e["id"] for e in repo.events()}
    found = reconcile_due(stack, repo.full_name)
    assert (found["status"], found["backfilled"], found["refs_read"]) == ("backfilled", 2, True)
    backfilled = repo.events(until=lambda events: len([e for e in events if e["id"] not in before]) >= 2)
    new = [e for e in backfilled if e["id"] not in before]
    assert sorted(e["type"] for e in new) == ["pull_request.updated", "repository.push"], new
    assert all(e.get("origin") == "reconciliation" for e in new)

    # Only a pull request changed: its refs are not read, and the change is still found.
    lost(stack, repo, ("POST", f"pullrequests/{pr}/update", {"title": "edited again"}))
    pr_only = reconcile_due(stack, repo.full_name)
    assert (pr_only["status"], pr_only["backfilled"], pr_only["refs_read"]) == ("backfilled", 1, False)

    # And then nothing is left: the minimum again, nothing emitted twice.
    again = reconcile_due(stack, repo.full_name)
    assert (again["status"], again["backfilled"], again["refs_read"]) == ("ok", 0, False)
    assert again["calls"] == MINIMUM[flavor]
    ids = change_ids(repo.events(settle=2))
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_tag_deleted_and_a_branch_created_are_found_through_the_mark(stack, flavor):
    repo = Repo(stack, flavor, branches=2)
    repo.change("POST", "tags", {"name": "v1", "target": "main"})
    repo.events(until=lambda events: any(c["name"] == "v1" for e in events for c in e["ref_changes"]))
    assert reconcile_due(stack, repo.full_name)["status"] == "ok"

    lost(stack, repo, ("DELETE", "tags/v1", None), ("POST", "branches", {"name": "new/one", "from": "main"}))
    found = reconcile_due(stack, repo.full_name)
    assert (found["status"], found["backfilled"], found["refs_read"]) == ("backfilled", 2, True)


def test_a_hook_is_checked_on_its_own_cadence_and_every_run_when_asked(stack):
    from tests.e2e.reconcile_support import delete_hook

    repo = Repo(stack, "cloud", branches=1)
    delete_hook(stack, repo)
    # Within its cadence a run does not look at the hook (that is the saving) ...
    assert reconcile_due(stack, repo.full_name)["hook_checked"] is False
    # ... an operator's run does, and repairs it.
    done = bitbridge(stack, "reconcile", "--repo", repo.full_name, "--hooks", "all", "--json")
    (result,) = json.loads(done.stdout)
    assert result["hook_checked"] is True and result["repaired"] == "the hook was deleted in Bitbucket"


def test_a_wide_workspace_costs_its_listing_and_probe_and_a_members_lost_pull_request_is_found(stack):
    """Cloud, a workspace of PR_PROBE_FROM repositories: a quiet run reads no repository's pull requests (the
    listing, the member list and one query per member answer for all), and a pull request a member opened while
    its delivery was lost is found through the probe - that repository's page alone is read - and told once."""
    from bitbridge.reconcile.run import PR_PROBE_FROM

    ws, members = "wide-probe", {"alice": "owner", "bob": "member"}
    spec = {"slug": "p", "count": PR_PROBE_FROM, "branches": 2, "tags": 0, "pull_requests": 2}
    control(
        stack,
        "cloud",
        "POST",
        "seed",
        {"cloud": {"workspaces": [{"slug": ws, "name": ws, "members": members, "repositories": [spec]}]}},
    )
    names = [f"{ws}/p-{n:04d}" for n in range(1, PR_PROBE_FROM + 1)]
    user = user_id(stack, api_session(stack, "cloud", "alice"))
    for name in names:
        installed = bitbridge(
            stack, "hooks", "install", "--provider", PROVIDERS["cloud"], "--repo", name, "--user", user
        )
        assert installed.returncode == 0, installed.stderr

    def run() -> dict[str, dict[str, Any]]:
        done = bitbridge(stack, "reconcile", "--hooks", "due", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return {r["repository"]: r for r in json.loads(done.stdout) if r["repository"].startswith(ws + "/")}

    assert {r["status"] for r in run().values()} == {"baseline"}
    quiet = run()
    assert {(r["status"], r["refs_read"], r["backfilled"]) for r in quiet.values()} == {("ok", False, 0)}
    assert sum(r["calls"] for r in quiet.values()) == 1 + 1 + len(members)  # listing, members, one query each

    # bob opens a pull request in one of them; Bitbucket's delivery of it is lost.
    control(stack, "cloud", "POST", "delivery-faults", {"drop_fraction": 1.0, "repository": names[6]})
    try:
        opened = control(
            stack,
            "cloud",
            "POST",
            f"cloud/repos/{names[6]}/pullrequests",
            {"source": "feature/0001", "title": "lost", "user": "bob"},
        )
    finally:
        control(stack, "cloud", "DELETE", "delivery-faults")
    found = run()
    assert found[names[6]]["status"] == "backfilled" and found[names[6]]["backfilled"] == 1
    assert {r["status"] for name, r in found.items() if name != names[6]} == {"ok"}
    assert sum(r["calls"] for r in found.values()) == 1 + 1 + len(members) + 1  # + that repository's page

    def told(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            e["detail"]
            for e in events
            if (e["detail"].get("repository") or {}).get("full_name") == names[6]
            and (e["detail"].get("pull_request") or {}).get("id") == opened["id"]
        ]

    deadline = time.monotonic() + 120
    while not told(stack.events(0)[0]):
        assert time.monotonic() < deadline, "the lost pull request never reached the bus"
        time.sleep(0.5)
    again = run()
    assert {r["backfilled"] for r in again.values()} == {0}
    time.sleep(3)
    assert [e["type"] for e in told(stack.events(0)[0])] == ["pull_request.opened"]
