"""The reconciler's pure parts: ref and pull request differences, and change ids equal on both paths."""

from __future__ import annotations

from bitbridge.reconcile import diff, events
from bitbridge.store.observed import Observed, pr_value
from bitbridge.webhooks.change_ids import ref_change_id

REPO = {
    "id": "{r}",
    "workspace": "w",
    "slug": "s",
    "full_name": "w/s",
    "name": "s",
    "links": {"html": None, "clone": []},
}


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


def test_ref_changes_created_moved_deleted_and_unchanged():
    observed = {"b:main": "1" * 40, "b:gone": "2" * 40, "t:v1": "3" * 40}
    truth = {"b:main": "4" * 40, "t:v1": "3" * 40, "b:new": "5" * 40}
    assert diff.ref_changes(observed, truth) == [
        diff.RefChange("branch", "gone", "2" * 40, None),
        diff.RefChange("branch", "main", "1" * 40, "4" * 40),
        diff.RefChange("branch", "new", None, "5" * 40),
    ]
    assert diff.ref_changes(truth, truth) == []


def test_a_backfilled_push_carries_the_change_id_the_webhook_would_have():
    event = events.push_event(
        "p", "cloud", REPO, diff.RefChange("branch", "main", "1" * 40, "4" * 40), "2026-01-01T00:00:00Z"
    )
    expected = ref_change_id("p", "{r}", "branch", "main", "1" * 40, "4" * 40)
    assert event["change_id"] == event["ref_changes"][0]["change_id"] == expected
    assert event["id"] == "rec-" + expected.removeprefix("chg-") and event["origin"] == "reconciliation"
    # The old head does not matter for a move: a webhook that saw another old head names the same change.
    assert ref_change_id("p", "{r}", "branch", "main", "9" * 40, "4" * 40) == expected


def test_pull_requests_compared_down_to_the_watermark_only():
    seen = Observed(
        prs={1: pr_value("OPEN", "one", "main", "a" * 12), 2: pr_value("OPEN", "two", "main", "a" * 12)},
        pr_watermark="2026-01-02T00:00:00.000000Z",
    )
    newest_first = [
        _pr(3, "OPEN", "three", "2026-01-04T00:00:00+00:00"),  # never seen: opened
        _pr(1, "MERGED", "one", "2026-01-03T00:00:00+00:00"),  # was open: merged
        _pr(2, "OPEN", "two", "2026-01-02T00:00:00+00:00"),  # at the watermark, unchanged
        _pr(4, "OPEN", "old", "2026-01-01T00:00:00+00:00"),  # below: never read
    ]
    read: list[int] = []

    def lazily():
        for pr in newest_first:
            read.append(pr["id"])
            yield pr

    from bitbridge.bitbucket.cloud import CLOUD_API

    scan = diff.scan_pull_requests(seen, lazily(), CLOUD_API.pull_request_updated, _section)
    assert [(c.event_type, c.raw["id"]) for c in scan.changes] == [
        ("pull_request.opened", 3),
        ("pull_request.merged", 1),
    ]
    assert read == [3, 1, 2, 4] and scan.compared == 3  # stopped at the first one below the watermark
    assert scan.watermark == "2026-01-04T00:00:00.000000Z"


def test_a_title_edit_is_an_update_and_an_unchanged_pull_request_is_nothing():
    section = _section(_pr(1, "OPEN", "new title", "2026-01-01T00:00:00+00:00"))
    assert (
        diff.pull_request_change_type(pr_value("OPEN", "old title", "main", "a" * 12), section)
        == "pull_request.updated"
    )
    assert diff.pull_request_change_type(diff.section_value(section), section) is None
