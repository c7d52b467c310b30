"""The reconciler's comments, reviews and deleted pull requests (issue 27, item 4): differences against the
ledger's items as observations, their events shaped as deliveries' are, and the ledger's claims so that what a
delivery told and what the reconciler found is published once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from bitbridge.bitbucket.review import Discussed, Standing
from bitbridge.change_ids import (
    ABSORBED,
    CLAIMED,
    COMMENT_DELETED,
    DELETED_VALUE,
    STALE,
    ItemEntry,
    ItemSeen,
    Ledger,
    PrEntry,
    PrSeen,
    comment_key,
    observation_from_dict,
    observation_to_dict,
    pr_value,
    review_key,
)
from bitbridge.reconcile import diff, events
from bitbridge.webhooks.normalise import comment_state, ledger_reports, normalise
from tests.unit.reconcile import REPO

SCHEMA = json.loads((Path(__file__).parents[3] / "layers/bitbridge/python/bitbridge/schemas/event-v1.json").read_text())
BOB = {"uuid": "{bob}", "display_name": "Bob", "nickname": "bob", "type": "user"}
CAROL = {"uuid": "{carol}", "display_name": "Carol", "nickname": "carol", "type": "user"}
PR = {
    "id": 7,
    "title": "t",
    "state": "OPEN",
    "updated_on": "2026-03-01T09:00:00+00:00",
    "created_on": "2026-03-01T08:00:00+00:00",
    "source": {"branch": {"name": "f"}, "commit": {"hash": "a" * 12}},
    "destination": {"branch": {"name": "main"}, "commit": {"hash": "b" * 12}},
}
STARTED = "2026-03-01T10:00:00.000000Z"  # when the ledger began recording reviews
READ = "2026-03-01T12:00:00.000000Z"


def _comment(
    cid: int, updated: str, *, deleted: bool = False, parent: int | None = None, inline: bool = False
) -> Discussed:
    raw = {
        "id": cid,
        "content": {"raw": f"text {cid}"},
        "user": BOB,
        "created_on": "2026-03-01T11:00:00+00:00",
        "updated_on": updated,
        "deleted": deleted,
    }
    if parent is not None:
        raw["parent"] = {"id": parent}
    if inline:
        raw["inline"] = {"path": "src/a.py", "from": None, "to": 3}
    return Discussed(raw, parent, "2026-03-01T11:00:00.000000Z", deleted)


def _value(comment: Discussed) -> str:
    return comment_state("cloud", comment.raw, comment.deleted)


def _ledger(**items: ItemEntry) -> Ledger:
    ledger = Ledger("e", 20, prs={7: PrEntry(pr_value("OPEN", "t", "main", "a" * 12), "x", 3)})
    ledger.items = {key.replace("_", ":"): entry for key, entry in items.items()}
    ledger.reviews_at = STARTED
    return ledger


def _changes(ledger: Ledger, comments: list[Discussed], standings: dict[str, Standing] | None = None):
    return diff.review_changes(ledger, PR, 7, comments, standings, _value, READ)


def test_new_edited_and_deleted_comments_and_changed_statuses_are_observed_with_the_claim_each_was_read_at():
    edited, deleted = _comment(2, "2026-03-01T11:30:00+00:00"), _comment(3, "2026-03-01T11:00:00+00:00", deleted=True)
    told = _comment(4, "2026-03-01T11:00:00+00:00")
    ledger = _ledger()
    ledger.items = {
        comment_key(7, 2): ItemEntry(_value(_comment(2, "2026-03-01T11:00:00+00:00")), 11),
        comment_key(7, 3): ItemEntry(_value(_comment(3, "2026-03-01T11:00:00+00:00")), 12),
        comment_key(7, 4): ItemEntry(_value(told), 13),
        review_key(7, "{bob}"): ItemEntry("APPROVED", 14),
    }
    new_reply = _comment(5, "2026-03-01T11:00:00+00:00", parent=4, inline=True)
    standings = {"{bob}": Standing(BOB, "CHANGES_REQUESTED"), "{carol}": Standing(CAROL, "APPROVED")}
    scan = _changes(ledger, [edited, deleted, told, new_reply], standings)
    assert [(c.event_type, c.observation.key, c.observation.seen) for c in scan.changes] == [
        ("pull_request.comment.updated", "c:7:2", 11),
        ("pull_request.comment.deleted", "c:7:3", 12),
        ("pull_request.comment.created", "c:7:5", 0),
        ("pull_request.review.changes_requested", "v:7:{bob}", 14),
        ("pull_request.review.approved", "v:7:{carol}", 0),
    ]
    assert scan.changes[2].observation.value == _value(new_reply) and scan.baseline == {}
    assert all(c.observation.read_at == READ for c in scan.changes)


def test_a_person_back_to_unapproved_is_an_unapproval_and_one_never_recorded_unapproved_is_nothing():
    ledger = _ledger()
    ledger.items = {review_key(7, "{bob}"): ItemEntry("APPROVED", 4)}
    standings = {"{bob}": Standing(BOB, "UNAPPROVED"), "{carol}": Standing(CAROL, "UNAPPROVED")}
    (change,) = _changes(ledger, [], standings).changes
    assert (change.event_type, change.previous) == ("pull_request.review.unapproved", "APPROVED")


def test_a_comment_data_center_no_longer_lists_is_deleted_and_one_created_and_deleted_unseen_is_nothing():
    ledger = _ledger()
    ledger.items = {comment_key(7, 9): ItemEntry("v000000001", 5), comment_key(8, 1): ItemEntry("v000000000", 6)}
    (change,) = _changes(ledger, [_comment(10, "2026-03-01T11:00:00+00:00", deleted=True)]).changes
    assert (change.event_type, change.observation.key, change.observation.value) == (
        "pull_request.comment.deleted",
        "c:7:9",
        COMMENT_DELETED,
    )


def test_before_the_first_sweep_everything_is_a_baseline_and_older_comments_stay_one():
    ledger = _ledger()
    ledger.reviews_at = None
    comment = _comment(2, "2026-03-01T11:00:00+00:00")
    scan = _changes(ledger, [comment], {"{bob}": Standing(BOB, "APPROVED")})
    assert scan.changes == [] and scan.baseline == {"c:7:2": _value(comment), "v:7:{bob}": "APPROVED"}
    # Recording began after this comment was made: recorded, not told (it was there before bitbridge looked).
    ledger.reviews_at = "2026-03-01T11:30:00.000000Z"
    scan = _changes(ledger, [comment])
    assert scan.changes == [] and scan.baseline == {"c:7:2": _value(comment)}


def test_a_backfilled_comment_or_review_event_has_a_deliverys_shape():
    comment = _comment(5, "2026-03-01T11:00:00+00:00", parent=4, inline=True)
    scan = _changes(_ledger(), [comment], {"{carol}": Standing(CAROL, "APPROVED")})
    for change in scan.changes:
        event = events.review_event("p", "cloud", REPO, "e", change, "2026-03-01T12:00:01Z")
        assert event is not None
        event["change_id"] = "chg-x"
        jsonschema.validate(event, SCHEMA)
        assert event["event_key"] in ("pullrequest:comment_created", "pullrequest:approved")
    made = events.review_event("p", "cloud", REPO, "e", scan.changes[0], "2026-03-01T12:00:01Z")
    assert made is not None and made["comment"] == {
        "id": 5,
        "text": "text 5",
        "truncated": False,
        "author": {"id": "{bob}", "name": "Bob", "username": "bob"},
        "parent_id": 4,
        "inline": {"path": "src/a.py", "line": 3, "side": "new"},
        "commit": None,
        "url": None,
    }
    approved = events.review_event("p", "cloud", REPO, "e", scan.changes[1], "2026-03-01T12:00:01Z")
    assert approved is not None and approved["review"]["reviewer"]["id"] == "{carol}"
    assert approved["review"]["status"] == "APPROVED"


def test_an_open_pull_request_no_listing_showed_is_a_deletion_candidate_and_its_event_names_it():
    ledger = Ledger(
        "e", 9, prs={1: PrEntry("OPEN|a", "s1", 2), 2: PrEntry("MERGED|b", "s2", 3), 3: PrEntry("OPEN|c", "s3", 4)}
    )
    assert diff.deleted_candidates(ledger, {3}) == [1]
    observation = diff.deletion(ledger, 1)
    assert (observation.seen, observation.value, observation.stamp) == (2, DELETED_VALUE, "s1")
    event = events.deleted_event("p", "datacenter", REPO, "e", observation, "2026-03-01T12:00:01Z")
    event["change_id"] = "chg-x"
    jsonschema.validate(event, SCHEMA)
    assert (event["type"], event["event_key"], event["pull_request"]["id"]) == ("pull_request.deleted", "pr:deleted", 1)
    assert observation_from_dict(observation_to_dict(observation)).value == DELETED_VALUE


# ------------------------------------------------------------------------------------------ the ledger


def test_a_delivery_of_what_the_reconciler_told_is_absorbed_and_a_later_change_claimed():
    ledger = Ledger("e", 10)
    key = comment_key(7, 2)
    (observed,) = [o for o in _changes(_ledger(), [_comment(2, "2026-03-01T11:00:00+00:00")]).changes]
    assert ledger.apply_observation("rec-1", observed.observation, "2026-03-01T12:00:05Z").kind == CLAIMED
    number = ledger.items[key].number
    # The created delivery, received after the read (a slow one): the same state, told already.
    late = ItemSeen(key, observed.observation.value, True)
    (outcome,) = ledger.apply_delivery(
        "d-1", [], None, "2026-03-01T12:00:06Z", "2026-03-01T12:00:06.000000Z", False, late
    )
    assert (outcome.kind, outcome.number) == (ABSORBED, number)
    # An edit made after the read: claimed.
    edit = ItemSeen(key, "2026-03-01T12:01:00.000000Z", True)
    (outcome,) = ledger.apply_delivery(
        "d-2", [], None, "2026-03-01T12:01:01Z", "2026-03-01T12:01:01.000000Z", False, edit
    )
    assert outcome.kind == CLAIMED and outcome.number > number


def test_an_intermediate_state_received_before_the_read_is_absorbed_into_the_observation():
    ledger = Ledger("e", 10)
    key = review_key(7, "{bob}")
    observation = diff.review_changes(_ledger(), PR, 7, [], {"{bob}": Standing(BOB, "APPROVED")}, _value, READ).changes[
        0
    ]
    ledger.apply_observation("rec-1", observation.observation, "2026-03-01T12:00:05Z")
    # Bob requested changes, then approved, before the read; the first delivery arrives late.
    late = ItemSeen(key, "CHANGES_REQUESTED", False)
    (outcome,) = ledger.apply_delivery(
        "d-1", [], None, "2026-03-01T12:00:06Z", "2026-03-01T11:59:00.000000Z", False, late
    )
    assert outcome.kind == ABSORBED and ledger.items[key].value == "APPROVED"


def test_an_observation_a_delivery_overtook_is_stale_and_an_older_comment_state_keeps_the_newer():
    ledger = Ledger("e", 10)
    key = comment_key(7, 2)
    now = "2026-03-01T12:00:00Z"
    ledger.apply_delivery("d-1", [], None, now, None, False, ItemSeen(key, "2026-03-01T11:00:00.000000Z", True))
    stale = diff.review_changes(_ledger(), PR, 7, [_comment(2, "2026-03-01T11:00:00+00:00")], None, _value, READ)
    assert ledger.apply_observation("rec-1", stale.changes[0].observation, now).kind == STALE
    ledger.apply_delivery("d-2", [], None, now, None, False, ItemSeen(key, "2026-03-01T11:30:00.000000Z", True))
    (older,) = ledger.apply_delivery(
        "d-3", [], None, now, None, False, ItemSeen(key, "2026-03-01T11:10:00.000000Z", True)
    )
    assert older.kind == CLAIMED and ledger.items[key].value == "2026-03-01T11:30:00.000000Z"


def test_a_deleted_pull_request_absorbs_every_later_report_of_it():
    ledger = Ledger("e", 10, prs={1: PrEntry("OPEN|a", "2026-03-01T09:00:00.000000Z", 2)})
    claimed = ledger.apply_observation("rec-1", diff.deletion(ledger, 1), "2026-03-01T12:00:05Z")
    assert claimed.kind == CLAIMED and ledger.prs[1].value == DELETED_VALUE
    deleted = PrSeen(1, pr_value("DELETED", "whatever it was", "main", "a" * 12), "2026-03-01T09:00:00.000000Z")
    (outcome,) = ledger.apply_delivery("d-1", [], deleted, "2026-03-01T12:00:06Z")
    assert (outcome.kind, outcome.number) == (ABSORBED, claimed.number)


def test_comment_and_review_deliveries_report_the_items_the_reconciler_compares():
    """The same value from a payload and from the REST listing (the emulator's and Atlassian's shapes)."""
    payload = {
        "repository": {"uuid": "{r}", "full_name": "w/s", "name": "s"},
        "actor": BOB,
        "pullrequest": {**PR, "author": CAROL},
        "comment": _comment(2, "2026-03-01T11:30:00+00:00").raw,
    }
    event = _delivered("pullrequest:comment_updated", payload, "d-1")
    reports = ledger_reports("cloud", payload, event)
    assert reports is not None and reports[2] is not None
    assert (reports[2].key, reports[2].value) == ("c:7:2", _value(_comment(2, "2026-03-01T11:30:00+00:00")))
    approved = {**payload, "approval": {"date": "2026-03-01T11:00:00+00:00", "user": CAROL}}
    event = _delivered("pullrequest:approved", approved, "d-2")
    reports = ledger_reports("cloud", approved, event)
    assert reports is not None and reports[2] is not None
    assert (reports[2].key, reports[2].value, reports[2].ordered) == ("v:7:{carol}", "APPROVED", False)
    assert "change_id" not in event  # the publisher sets it when it claims


def _delivered(event_key: str, payload: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    """A Cloud delivery as the receipt normalises it."""
    received = "2026-03-01T12:00:00Z"
    return normalise(
        flavor="cloud",
        provider_id="p",
        event_key=event_key,
        payload=payload,
        delivery_id=delivery_id,
        received_at=received,
    )
