"""The reconciler's pure parts: ref and pull request differences against the ledger, as observations."""

from __future__ import annotations

from bitbridge.bitbucket.cloud import CLOUD_API
from bitbridge.bitbucket.datacenter import DATACENTER_API
from bitbridge.change_ids import Ledger, PrEntry, RefEntry, RefObservation, pr_value
from bitbridge.reconcile import diff, events
from bitbridge.store.observed import Observed
from tests.unit.reconcile import REPO

C1, C2, C3, C4, C5 = (str(n) * 40 for n in range(1, 6))


def _pr(pr_id: int, state: str, title: str, updated: str) -> dict:
    return {
        "id": pr_id,
        "title": title,
        "state": state,
        "updated_on": updated,
        "source": {"branch": {"name": "f"}, "commit": {"hash": "a" * 12}},
        "destination": {"branch": {"name": "main"}, "commit": {"hash": "b" * 12}},
    }


def _section(raw: dict) -> dict:
    from bitbridge.webhooks.normalise import pull_request_section

    return pull_request_section("cloud", raw, "pull_request.updated")


def test_ref_changes_created_moved_deleted_and_unchanged_with_the_claim_each_was_read_at():
    ledger = Ledger("e", 9, {"b:main": RefEntry(C1, 7), "b:gone": RefEntry(C2, 3), "t:v1": RefEntry(C3, 0)})
    truth = {"b:main": (C4, C4), "t:v1": (C3, C3), "b:new": (C5, C5)}
    changes = diff.ref_changes(ledger, truth)
    assert [(c.kind, c.name, c.old, c.new) for c in changes] == [
        ("branch", "gone", C2, None),
        ("branch", "main", C1, C4),
        ("branch", "new", None, C5),
    ]
    assert [(o.key, o.seen, o.start, o.end) for o in (c.observation for c in changes)] == [
        ("b:gone", 3, C2, None),
        ("b:main", 7, C1, C4),
        ("b:new", 0, None, C5),
    ]
    # A ref deleted in the ledger and absent from Bitbucket is no change.
    assert diff.ref_changes(Ledger("e", 1, {"b:x": RefEntry(None, 1)}), {}) == []


def test_a_data_center_annotated_tag_is_compared_by_its_object_so_no_phantom_push():
    """The tag's object (what refs_changed's toHash names) on both paths; events show the commit."""
    tag_object, commit = "a" * 40, "c" * 40
    listed = {"displayId": "v1", "id": "refs/tags/v1", "type": "TAG", "hash": tag_object, "latestCommit": commit}
    assert DATACENTER_API.ref_head(listed) == ("v1", tag_object, commit)
    # Told by a delivery without toCommit: the head is the tag object, no commit known.
    ledger = Ledger("e", 1, {"t:v1": RefEntry(tag_object, 1)})
    assert diff.ref_changes(ledger, {"t:v1": (tag_object, commit)}) == []
    # Deleted in Bitbucket: the observation starts at the object a deletion's fromHash names.
    (gone,) = diff.ref_changes(ledger, {})
    assert (gone.observation.start, gone.observation.end, gone.new) == (tag_object, None, None)
    # Created while deliveries were lost: the event shows the commit, the ledger records the object.
    (made,) = diff.ref_changes(Ledger("e"), {"t:v1": (tag_object, commit)})
    assert (made.new, made.observation.end, made.observation.commit) == (commit, tag_object, commit)


def test_an_observed_push_has_its_id_from_the_observation_and_no_change_id_until_claimed():
    change = diff.RefChange("branch", "main", C1, C4, RefObservation("b:main", 2, C1, C4))
    event = events.push_event("p", "cloud", REPO, "ep", change, "2026-01-01T00:00:00Z")
    assert event["id"].startswith("rec-") and "change_id" not in event and event["origin"] == "reconciliation"
    again = events.push_event("p", "cloud", REPO, "ep", change, "2026-02-01T00:00:00Z")
    assert again["id"] == event["id"]  # the same difference from the same ledger state: one outbox item
    later = diff.RefChange("branch", "main", C1, C4, RefObservation("b:main", 5, C1, C4))
    assert events.push_event("p", "cloud", REPO, "ep", later, "2026-01-01T00:00:00Z")["id"] != event["id"]


def _lazily(items: list[dict], read: list[int]):
    for pr in items:
        read.append(pr["id"])
        yield pr


def test_pull_requests_compared_down_to_the_watermark_only():
    seen = Observed(
        Ledger(
            "e",
            4,
            prs={
                1: PrEntry(pr_value("OPEN", "one", "main", "a" * 12), None, 3),
                2: PrEntry(pr_value("OPEN", "two", "main", "a" * 12), None, 4),
            },
        ),
        pr_watermark="2026-01-02T00:00:00.000000Z",
    )
    newest_first = [
        _pr(3, "OPEN", "three", "2026-01-04T00:00:00+00:00"),  # never seen: opened
        _pr(1, "MERGED", "one", "2026-01-03T00:00:00+00:00"),  # was open: merged
        _pr(2, "OPEN", "two", "2026-01-02T00:00:00+00:00"),  # at the watermark, unchanged
        _pr(4, "OPEN", "old", "2026-01-01T00:00:00+00:00"),  # below: never read
    ]
    read: list[int] = []
    scan = diff.scan_pull_requests(seen, _lazily(newest_first, read), CLOUD_API.pull_request_updated, _section)
    assert [(c.event_type, c.raw["id"], c.observation.seen) for c in scan.changes] == [
        ("pull_request.opened", 3, 0),
        ("pull_request.merged", 1, 3),
    ]
    assert read == [3, 1, 2, 4] and scan.compared == 3  # stopped at the first one below the watermark
    # The next run starts at the oldest that differed: its observation may lose to a delivery.
    assert scan.watermark == "2026-01-03T00:00:00.000000Z"


def test_the_watermark_moves_to_the_newest_when_all_agree_and_never_back():
    ledger = Ledger("e", 1, prs={1: PrEntry(pr_value("OPEN", "one", "main", "a" * 12), None, 1)})
    seen = Observed(ledger, pr_watermark="2026-01-02T00:00:00.000000Z")
    scan = diff.scan_pull_requests(
        seen, iter([_pr(1, "OPEN", "one", "2026-01-05T00:00:00+00:00")]), CLOUD_API.pull_request_updated, _section
    )
    assert scan.changes == [] and scan.watermark == "2026-01-05T00:00:00.000000Z"
    empty = diff.scan_pull_requests(seen, iter([]), CLOUD_API.pull_request_updated, _section)
    assert empty.watermark == "2026-01-02T00:00:00.000000Z"


def test_a_pull_request_the_ledger_lacks_below_the_watermark_is_no_change_and_one_at_it_is_compared():
    """Below: closed before the baseline (the import keeps open ones only), or settled and forgotten. At
    it: maybe the one the last run found, whose observation the publisher has not claimed yet."""
    seen = Observed(Ledger("e"), pr_watermark="2026-01-02T00:00:00.000000Z")
    below = diff.scan_pull_requests(
        seen,
        iter([_pr(9, "MERGED", "old", "2026-01-01T00:00:00+00:00")]),
        CLOUD_API.pull_request_updated,
        _section,
    )
    assert below.changes == []
    at = diff.scan_pull_requests(
        seen,
        iter([_pr(9, "OPEN", "new", "2026-01-02T00:00:00+00:00")]),
        CLOUD_API.pull_request_updated,
        _section,
    )
    assert [(c.event_type, c.raw["id"]) for c in at.changes] == [("pull_request.opened", 9)]
    assert at.watermark == "2026-01-02T00:00:00.000000Z"  # held there until it is claimed


def test_a_title_edit_is_an_update_and_an_unchanged_pull_request_is_nothing():
    section = _section(_pr(1, "OPEN", "new title", "2026-01-01T00:00:00+00:00"))
    assert (
        diff.pull_request_change_type(pr_value("OPEN", "old title", "main", "a" * 12), section)
        == "pull_request.updated"
    )
    from bitbridge.change_ids import section_value

    assert diff.pull_request_change_type(section_value(section), section) is None
