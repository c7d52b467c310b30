"""Comments, review statuses and Data Center pull-request deletions backfilled (issue 27, item 4), end to end
on the local stack + emulator, both flavors: with 30 % of deliveries dropped, every comment (general, inline,
a reply, edited, deleted) and every approval, change request and unapproval ends up on the bus as Bitbucket has
it after one reconcile, each change once (nothing a delivery told is told again), and a second reconcile adds
nothing. A comment or a review does not move a pull request's update time (docs/architecture.md, *Reconciler*):
the review sweep finds them."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import pytest

from tests.e2e.reconcile_support import Repo, change_ids, reconcile
from tests.e2e.support import control

pytestmark = pytest.mark.e2e

REVIEW_STATUS = {"APPROVED": "APPROVED", "NEEDS_WORK": "CHANGES_REQUESTED", "UNAPPROVED": "UNAPPROVED"}
ITEM_TYPES = ("pull_request.comment.", "pull_request.review.")


def discuss(repo: Repo, pr: int) -> list[int]:
    """A review's worth of comments and statuses on one pull request; the ids of the comments made."""

    def comment(user: str, text: str, **more: Any) -> int:
        return int(repo.change("POST", f"pullrequests/{pr}/comments", {"user": user, "text": text, **more})["id"])

    def review(user: str, action: str) -> None:
        repo.change("POST", f"pullrequests/{pr}/{action}", {"user": user})

    general = comment("alice", "general")
    inline = comment("bob", "inline", inline={"path": "README.md", "to": 1})
    reply = comment("carol", "a reply", parent=general)
    review("bob", "approve")
    repo.change("PUT", f"pullrequests/{pr}/comments/{general}", {"user": "alice", "text": "general, edited"})
    review("carol", "request-changes")
    repo.change("PUT", f"pullrequests/{pr}/comments/{inline}", {"user": "bob", "text": "inline, edited"})
    review("bob", "unapprove")
    repo.change("PUT", f"pullrequests/{pr}/comments/{inline}", {"user": "bob", "text": "inline, edited twice"})
    repo.change("DELETE", f"pullrequests/{pr}/comments/{reply}?user=carol")
    review("carol", "approve")
    gone = comment("alice", "soon gone")
    repo.change("DELETE", f"pullrequests/{pr}/comments/{gone}?user=alice")
    review("bob", "request-changes")
    return [general, inline, reply, gone]


def truth(repo: Repo, made: dict[int, list[int]]) -> dict[tuple, str]:
    """Each comment's text ("deleted" once deleted) and each person's review status, as Bitbucket has them."""
    out: dict[tuple, str] = {}
    for pr, comments in made.items():
        held = control(repo.stack, repo.flavor, "GET", f"{repo.path}/pullrequests/{pr}")
        listed = {c["id"]: ("deleted" if c["deleted"] else c["text"]) for c in held["comments"]}
        for comment_id in comments:  # Data Center removes a deleted comment
            out[("comment", pr, comment_id)] = listed.get(comment_id, "deleted")
        for reviewer in held["reviewers"]:
            out[("review", pr, reviewer["user"])] = REVIEW_STATUS[reviewer["status"]]
    return out


def told(events: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    """What the bus said of each comment and person's review, in order."""
    out: dict[tuple, list[str]] = {}
    for event in events:
        pr = (event.get("pull_request") or {}).get("id")
        if event["type"].startswith("pull_request.comment."):
            text = "deleted" if event["type"].endswith(".deleted") else event["comment"]["text"]
            out.setdefault(("comment", pr, event["comment"]["id"]), []).append(text)
        elif event["type"].startswith("pull_request.review."):
            out.setdefault(("review", pr, event["review"]["reviewer"]["username"]), []).append(
                event["review"]["status"]
            )
    return out


def agrees(expected: dict[tuple, str]):
    def check(events: list[dict[str, Any]]) -> bool:
        said = told(events)
        return all((said.get(key) or ["UNAPPROVED"])[-1] == state for key, state in expected.items())

    return check


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_comments_and_reviews_made_while_deliveries_drop_are_on_the_bus_once_after_one_reconcile(stack, flavor):
    repo = Repo(stack, flavor)
    prs = [
        int(
            repo.change("POST", "pullrequests", {"source": f"f/{n:02d}", "destination": "main", "title": f"PR {n}"})[
                "id"
            ]
        )
        for n in (6, 7, 8)
    ]
    control(stack, flavor, "POST", "delivery-faults", {"drop_fraction": 0.3, "seed": 7, "repository": repo.full_name})
    try:
        made = {pr: discuss(repo, pr) for pr in prs}
        deliveries = repo.deliveries()
    finally:
        control(stack, flavor, "DELETE", "delivery-faults")
    reviewing = [
        d
        for d in deliveries
        if d["event_key"].startswith(
            (
                "pullrequest:comment",
                "pullrequest:approved",
                "pullrequest:unapproved",
                "pullrequest:changes",
                "pr:comment",
                "pr:reviewer",
            )
        )
    ]
    dropped = [d for d in reviewing if d["state"] == "dropped"]
    assert len(reviewing) == 42 and len(dropped) >= 6  # the fault really lost comments and reviews
    delivered = sum(1 for d in deliveries if d["state"] == "delivered")
    before = repo.events(until=lambda events: len(events) >= delivered)
    expected = truth(repo, made)
    assert not agrees(expected)(before)  # the bus is behind Bitbucket

    result = reconcile(stack, repo.full_name)
    assert result["status"] == "backfilled" and result["backfilled"] > 0, result
    events = repo.events(until=agrees(expected))
    backfilled = [e for e in events if e.get("origin") == "reconciliation"]
    assert backfilled and all(e["type"].startswith(ITEM_TYPES) and e["actor"] is None for e in backfilled)
    assert {e["type"].split(".")[1] for e in backfilled} == {"comment", "review"}

    ids = change_ids(events)
    assert [i for i, n in Counter(ids).items() if n > 1] == []  # once per change id
    # Nothing told twice: no comment or review is told the same state two times in a row.
    said = told(events).items()
    repeats = {key: states for key, states in said if any(a == b for a, b in itertools.pairwise(states))}
    assert repeats == {}, repeats
    assert agrees(expected)(events)

    again = reconcile(stack, repo.full_name)
    extra = [e for e in repo.events(settle=2) if e["id"] not in {x["id"] for x in events}]
    assert (again["status"], again["backfilled"], extra) == ("ok", 0, []), json.dumps(extra, indent=1)[:3000]


def test_a_data_center_pull_request_deleted_while_its_delivery_was_lost_is_backfilled_once(stack):
    repo = Repo(stack, "datacenter")
    lost, told_pr = (
        int(repo.change("POST", "pullrequests", {"source": f"f/{n:02d}", "destination": "main"})["id"]) for n in (6, 7)
    )
    repo.events(until=lambda events: len([e for e in events if e["type"] == "pull_request.opened"]) == 2)
    control(stack, "datacenter", "POST", "delivery-faults", {"drop_fraction": 1.0, "repository": repo.full_name})
    try:
        repo.change("DELETE", f"pullrequests/{lost}")
        assert repo.deliveries()[-1]["state"] == "dropped"
    finally:
        control(stack, "datacenter", "DELETE", "delivery-faults")
    repo.change("DELETE", f"pullrequests/{told_pr}")  # delivered: the reconciler must not tell it again
    repo.events(until=lambda events: any(e["type"] == "pull_request.deleted" for e in events))

    result = reconcile(stack, repo.full_name)
    assert (result["status"], result["backfilled"]) == ("backfilled", 1), result
    events = repo.events(until=lambda events: len([e for e in events if e["type"] == "pull_request.deleted"]) == 2)
    deleted = [e for e in events if e["type"] == "pull_request.deleted"]
    assert sorted((e["pull_request"]["id"], e["origin"]) for e in deleted) == [
        (lost, "reconciliation"),
        (told_pr, "webhook"),
    ]
    assert all(e["pull_request"]["state"] == "DELETED" and e["event_key"] == "pr:deleted" for e in deleted)
    assert len(set(change_ids(events))) == len(change_ids(events))
    assert reconcile(stack, repo.full_name)["backfilled"] == 0
    assert len(repo.events(settle=2)) == len(events)
