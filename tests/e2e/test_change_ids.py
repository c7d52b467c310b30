"""A change is one transition of a ref or pull request (issue 21), end to end on the local stack, both
flavors: states revisited after a backfill, a branch deleted and restored, a title flipped back and forth,
a rollback and redeploy - each change on the bus once, with its own id, and bitbridge agreeing with
Bitbucket afterwards."""

from __future__ import annotations

import pytest

from tests.e2e.reconcile_support import LIFECYCLE, Repo, hooks_list, reconcile

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_state_revisited_after_a_backfill_is_backfilled_again(stack, flavor):
    """X->Y lost and backfilled, Y->X delivered, X->Y lost: Bitbucket and bitbridge agree again."""
    repo = Repo(stack, flavor, branches=7)
    x = repo.change("POST", "push", {"branch": "f/00", "commits": 1})["head"]
    y = repo.change("POST", "push", {"branch": "f/00", "commits": 1, "deliver": False})["head"]
    assert reconcile(stack, repo.full_name)["backfilled"] == 1
    repo.change("POST", "push", {"branch": "f/00", "to": x, "force": True})
    repo.deliveries()
    repo.change("POST", "push", {"branch": "f/00", "to": y, "force": True, "deliver": False})
    assert reconcile(stack, repo.full_name)["backfilled"] == 1  # today: the first backfill's id, never written
    moves = [
        (c["old"], c["new"], c["change_id"]) for e in repo.events() for c in e["ref_changes"] if c["name"] == "f/00"
    ]
    assert [(old, new) for old, new, _ in moves] == [(moves[0][0], x), (x, y), (y, x), (x, y)]
    assert len({cid for _, _, cid in moves}) == 4
    assert reconcile(stack, repo.full_name)["backfilled"] == 0
    assert hooks_list(stack)[repo.full_name]["state"] == "active"


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_branch_deleted_and_restored_at_the_same_commit_with_every_delivery_lost(stack, flavor):
    """Created, deleted, restored at the same commit, each delivery lost, a reconciliation after each:
    three changes (today the restore had the creation's id, was never written, and bitbridge believed
    the branch gone)."""
    repo = Repo(stack, flavor, branches=7)
    head = repo.change("POST", "push", {"branch": "f/03", "commits": 1})["head"]
    repo.change("POST", "branches", {"name": "gone/soon", "from": head, "deliver": False})
    assert reconcile(stack, repo.full_name)["backfilled"] == 1
    repo.change("DELETE", "branches/gone/soon?deliver=false")
    assert reconcile(stack, repo.full_name)["backfilled"] == 1
    repo.change("POST", "branches", {"name": "gone/soon", "from": head, "deliver": False})
    assert reconcile(stack, repo.full_name)["backfilled"] == 1
    changes = [
        (c["old"], c["new"], c["change_id"])
        for e in repo.events()
        for c in e["ref_changes"]
        if c["name"] == "gone/soon"
    ]
    assert [(old, new) for old, new, _ in changes] == [(None, head), (head, None), (None, head)]
    assert len({cid for _, _, cid in changes}) == 3
    assert reconcile(stack, repo.full_name)["backfilled"] == 0


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_pull_request_title_flipped_back_and_forth(stack, flavor):
    repo = Repo(stack, flavor, branches=7)
    pr = repo.change("POST", "pullrequests", {"source": "f/06", "destination": "main", "title": "A"})["id"]
    for title, deliver in (("B", False), ("A", True), ("B", False)):
        repo.change("POST", f"pullrequests/{pr}/update", {"title": title, "deliver": deliver})
        repo.deliveries()
        reconcile(stack, repo.full_name)
    titles = [
        (e["pull_request"]["title"], e.get("origin", "webhook"))
        for e in repo.events()
        if e["type"] in LIFECYCLE and e["pull_request"]["id"] == pr
    ]
    assert titles == [("A", "webhook"), ("B", "reconciliation"), ("A", "webhook"), ("B", "reconciliation")]
    assert reconcile(stack, repo.full_name)["backfilled"] == 0


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_rollback_and_redeploy_are_three_changes(stack, flavor):
    """A deploy X->Y, a rollback Y->X, a redeploy X->Y: three `repository.push` changes, none twice, whether
    every delivery arrives, none does, or every other one (a reconciliation after each move). One branch
    per case, moved together."""
    repo = Repo(stack, flavor, branches=0)
    delivered = {"every": (True, True, True), "none": (False, False, False), "half": (False, True, False)}
    x = repo.change("POST", "push", {"branch": "main", "commits": 1})["head"]
    for case in delivered:
        repo.change("POST", "branches", {"name": f"deploy/{case}", "from": x})
    y = {case: "" for case in delivered}
    for step in range(3):
        for case, deliver in delivered.items():
            branch = f"deploy/{case}"
            if step == 0:
                y[case] = repo.change("POST", "push", {"branch": branch, "commits": 1, "deliver": deliver[0]})["head"]
            else:
                to = x if step == 1 else y[case]
                repo.change("POST", "push", {"branch": branch, "to": to, "force": True, "deliver": deliver[step]})
        repo.deliveries()
        reconcile(stack, repo.full_name)
    events = repo.events()
    for case, deliver in delivered.items():
        moves = [
            (c["old"], c["new"], c["change_id"], e.get("origin", "webhook"))
            for e in events
            if e["type"] == "repository.push"
            for c in e["ref_changes"]
            if c["name"] == f"deploy/{case}" and c["old"] is not None
        ]
        assert [(old, new) for old, new, _, _ in moves] == [(x, y[case]), (y[case], x), (x, y[case])], case
        assert len({cid for _, _, cid, _ in moves}) == 3, case
        assert [origin for _, _, _, origin in moves] == ["webhook" if d else "reconciliation" for d in deliver], case
    assert reconcile(stack, repo.full_name)["backfilled"] == 0
