"""Change ids name one transition of a ref or pull request (bitbridge.change_ids), the same on the webhook
and reconciliation paths, never two transitions' id: each case issue 21 tried, on both flavors, through
the publisher's and the reconciler's pure functions (tests/unit/histories.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbridge.change_ids import (
    ABSORBED,
    CLAIMED,
    STALE,
    Ledger,
    PrObservation,
    PrSeen,
    RefEntry,
    RefMove,
    RefObservation,
    change_id,
    stamp,
)
from bitbridge.webhooks.normalise import ledger_reports, normalise
from tests.unit.histories import Bitbridge, Truth, change_ids_of, sha

FLAVORS = ["cloud", "datacenter"]
X, Y = sha("x"), sha("y")


def _repository(flavor: str) -> tuple[Truth, Bitbridge]:
    truth = Truth(flavor)
    truth.branches["f1"] = sha("f1", 0)
    truth.history["b:f1"] = [truth.branches["f1"]]
    bitbridge = Bitbridge(truth)
    bitbridge.import_repository()
    return truth, bitbridge


def _settle(bitbridge: Bitbridge) -> None:
    bitbridge.receive_new()
    bitbridge.drain()


def _main_moves(bitbridge: Bitbridge) -> list[tuple[str | None, str | None, str]]:
    return [
        (c["old"], c["new"], c["change_id"])
        for p in bitbridge.published
        if p.event["type"] == "repository.push"
        for c in p.event["ref_changes"]
        if c["name"] == "main"
    ]


def _assert_once_each(bitbridge: Bitbridge) -> None:
    ids = change_ids_of(bitbridge.published)
    assert [i for i, n in Counter(ids).items() if n > 1] == []


# ------------------------------------------------------------------------------------------ rollbacks


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("lost", ["none", "all", "every other"])
def test_a_rollback_and_redeploy_are_three_changes(flavor, lost):
    """main X->Y, Y->X, X->Y: three `repository.push` changes, none twice, whatever deliveries are lost
    (a reconciliation after each move sees each one)."""
    truth, bitbridge = _repository(flavor)
    x = truth.branches["main"]
    for n, commit in enumerate([Y, x, Y]):
        dropped = lost == "all" or (lost == "every other" and n % 2 == 0)
        truth.move_branch("main", commit, dropped=dropped)
        _settle(bitbridge)
        bitbridge.reconcile()
        bitbridge.drain()
    moves = _main_moves(bitbridge)
    assert [(old, new) for old, new, _ in moves] == [(x, Y), (Y, x), (x, Y)]
    assert len({cid for _, _, cid in moves}) == 3
    _assert_once_each(bitbridge)
    assert bitbridge.heads()["b:main"] == truth.branches["main"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_state_revisited_after_a_backfill_is_backfilled_again(flavor):
    """X->Y lost and backfilled, Y->X delivered, X->Y lost: the second backfill is a change of its own."""
    truth, bitbridge = _repository(flavor)
    x = truth.branches["main"]
    truth.move_branch("main", Y, dropped=True)
    bitbridge.reconcile()
    bitbridge.drain()
    truth.move_branch("main", x, dropped=False)
    _settle(bitbridge)
    truth.move_branch("main", Y, dropped=True)
    assert bitbridge.reconcile() == 1  # old code: the same id as the first backfill, never written
    bitbridge.drain()
    assert [(o, n) for o, n, _ in _main_moves(bitbridge)] == [(x, Y), (Y, x), (x, Y)]
    assert [p.event.get("origin") for p in bitbridge.published] == ["reconciliation", "webhook", "reconciliation"]
    _assert_once_each(bitbridge)
    assert bitbridge.heads()["b:main"] == Y and bitbridge.reconcile() == 0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_branch_deleted_and_restored_at_the_same_commit_with_every_delivery_lost(flavor):
    truth, bitbridge = _repository(flavor)
    head = truth.branches["f1"]
    truth.move_branch("f1", None, dropped=True)
    bitbridge.reconcile()
    bitbridge.drain()
    truth.move_branch("f1", head, dropped=True)
    assert bitbridge.reconcile() == 1
    bitbridge.drain()
    changes = [c for p in bitbridge.published for c in p.event["ref_changes"]]
    assert [(c["old"], c["new"]) for c in changes] == [(head, None), (None, head)]
    assert len({c["change_id"] for c in changes}) == 2
    assert bitbridge.heads()["b:f1"] == head


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_pull_request_title_flipped_back_and_forth(flavor):
    """A->B->A->B, the flips to B lost: each is published once, with its own id; bitbridge ends at B."""
    truth, bitbridge = _repository(flavor)
    truth.open_pr(1, "A", "f1", dropped=False)
    _settle(bitbridge)
    pr = truth.pull_requests[1]
    for title, dropped in (("B", True), ("A", False), ("B", True)):
        pr.title = title
        truth.update_pr(pr, dropped)
        _settle(bitbridge)
        bitbridge.reconcile()
        bitbridge.drain()
    titles = [(p.event["pull_request"]["title"], p.event["origin"]) for p in bitbridge.published]
    assert titles == [("A", "webhook"), ("B", "reconciliation"), ("A", "webhook"), ("B", "reconciliation")]
    _assert_once_each(bitbridge)
    assert bitbridge.reconcile() == 0


# ------------------------------------------------------------------------------------------ issue 20's race


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_reconciliation_while_stored_deliveries_wait_in_the_stream_tells_nothing_twice(flavor):
    """The deliveries are stored (in the stream) but not published when the reconciler reads: its
    observations come after them in the stream and are superseded."""
    truth, bitbridge = _repository(flavor)
    truth.move_branch("main", X, dropped=False)
    truth.move_branch("main", Y, dropped=False)
    truth.move_branch("late", sha("late"), dropped=False)
    bitbridge.receive_new()  # stored, not yet published
    assert bitbridge.reconcile() == 2  # main's final head and the new branch
    bitbridge.drain()
    assert len(bitbridge.superseded) == 2
    assert [p.event["origin"] for p in bitbridge.published] == ["webhook"] * 3
    _assert_once_each(bitbridge)
    assert bitbridge.reconcile() == 0


# ------------------------------------------------------------------------------------------ the ledger's rules


def _jump_ledger() -> tuple[Ledger, str]:
    ledger = Ledger("e", 4, {"b:main": RefEntry(X, 4)})
    read_at = "2026-03-01T12:00:00.000000Z"
    outcome = ledger.apply_observation(
        "rec-1", RefObservation("b:main", 4, X, Y, read_at=read_at), "2026-03-01T12:00:01Z"
    )
    assert (outcome.kind, outcome.number) == (CLAIMED, 5)
    return ledger, read_at


def test_a_late_delivery_received_before_the_reconcilers_read_shares_its_change():
    ledger, _ = _jump_ledger()
    move = RefMove("b:main", X, Y)
    (outcome,) = ledger.apply_delivery("d-1", [move], None, "2026-03-01T12:00:02Z", "2026-03-01T11:59:59.000000Z")
    assert (outcome.kind, outcome.number) == (ABSORBED, 5)  # the reconciler's change id: told once
    assert ledger.refs["b:main"].jumps == []  # it reached the jump's end


def test_a_delivery_received_after_the_read_is_a_move_of_its_own_unless_a_prompt_retry():
    ledger, _ = _jump_ledger()
    after = "2026-03-01T12:00:05.000000Z"
    (retry,) = ledger.apply_delivery("d-1", [RefMove("b:main", X, Y)], None, "2026-03-01T12:00:06Z", after, True)
    assert retry.kind == ABSORBED  # Bitbucket's retry: its first attempt may predate the read
    ledger, _ = _jump_ledger()
    (first,) = ledger.apply_delivery("d-2", [RefMove("b:main", X, Y)], None, "2026-03-01T12:00:06Z", after)
    assert (first.kind, first.number) == (CLAIMED, 6)
    late = "2026-03-01T12:20:00.000000Z"  # a retry far beyond Bitbucket's retry window
    ledger, _ = _jump_ledger()
    (far,) = ledger.apply_delivery("d-3", [RefMove("b:main", X, Y)], None, "2026-03-01T12:21:00Z", late, True)
    assert far.kind == CLAIMED


def test_an_observation_overtaken_by_a_delivery_is_stale():
    ledger = Ledger("e", 4, {"b:main": RefEntry(X, 4)})
    ledger.apply_delivery("d-1", [RefMove("b:main", X, Y)], None, "2026-03-01T12:00:00Z")
    seen = RefObservation("b:main", 4, X, Y, read_at="2026-03-01T11:00:00.000000Z")
    assert ledger.apply_observation("rec-1", seen, "2026-03-01T12:00:01Z").kind == STALE
    pr = Ledger("e", 2)
    pr.apply_delivery("d-2", [], PrSeen(7, "OPEN|a", "2026-03-01T10:00:00.000000Z"), "2026-03-01T12:00:00Z")
    assert (
        pr.apply_observation("rec-2", PrObservation(7, 0, "OPEN|b", "2026-03-01T09:00:00.000000Z"), "n").kind == STALE
    )


def test_a_retried_report_gets_the_same_outcome_and_claims_nothing_more():
    ledger = Ledger("e")
    first = ledger.apply_delivery("d-1", [RefMove("b:main", None, X)], None, "2026-03-01T12:00:00Z")
    again = ledger.apply_delivery("d-1", [RefMove("b:main", None, X)], None, "2026-03-01T12:00:01Z")
    assert first == again and ledger.clock == 1


def test_change_ids_differ_by_repository_epoch_and_number():
    ids = {
        change_id("p", "r", "e1", 1),
        change_id("p", "r", "e1", 2),
        change_id("p", "r", "e2", 1),
        change_id("p", "s", "e1", 1),
    }
    assert len(ids) == 4 and all(i.startswith("chg-") for i in ids)


def test_bitbuckets_update_times_compare_equal_from_payloads_and_the_rest_api():
    assert (
        stamp("2026-03-01T12:00:00.123456+00:00")
        == stamp("2026-03-01T12:00:00.123456Z")
        == "2026-03-01T12:00:00.123456Z"
    )
    assert stamp(1772366400123) == "2026-03-01T12:00:00.123000Z"  # Data Center updatedDate, milliseconds
    assert stamp(None) is None and stamp("yesterday") is None and stamp(True) is None


# ------------------------------------------------------------------------------------------ Data Center tags


def _dc_tag_push(from_hash: str, to_hash: str, **extra: object) -> dict:
    return {
        "eventKey": "repo:refs_changed",
        "date": "2026-03-01T12:00:00+0000",
        "repository": {"slug": "hist", "id": 42, "name": "hist", "project": {"key": "ENG"}},
        "changes": [
            {
                "ref": {"id": "refs/tags/v1", "displayId": "v1", "type": "TAG"},
                "refId": "refs/tags/v1",
                "fromHash": from_hash,
                "toHash": to_hash,
                "type": "ADD" if from_hash == "0" * 40 else "DELETE" if to_hash == "0" * 40 else "UPDATE",
            }
        ],
        **extra,
    }


def _moves(payload: dict) -> list[tuple[str | None, str | None, str | None]]:
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="repo:refs_changed",
        payload=payload,
        delivery_id="d",
        received_at="2026-03-01T12:00:00Z",
    )
    reports = ledger_reports("datacenter", payload, event)
    assert reports is not None
    return [(m.old, m.new, m.commit) for m in reports[0]]


def test_a_data_center_annotated_tag_is_one_ident_with_or_without_to_commit():
    tag_object, commit, zero = "a" * 40, "c" * 40, "0" * 40
    with_commit = _dc_tag_push(zero, tag_object, toCommit={"id": commit})
    without = _dc_tag_push(zero, tag_object)
    assert _moves(with_commit) == [(None, tag_object, commit)]  # the event shows the commit
    assert _moves(without) == [(None, tag_object, tag_object)]  # ... or the tag object when not named
    assert _moves(_dc_tag_push(tag_object, zero)) == [(tag_object, None, None)]  # a deletion names the object


@pytest.mark.parametrize("with_commit", [True, False])
def test_a_data_center_annotated_tag_has_one_change_id_on_both_paths(with_commit):
    """The reconciler told the tag first (its REST `hash` is the tag object); the delivery, received before
    the read, names the same object with or without `toCommit`: the same change, told once."""
    tag_object, commit, zero = "a" * 40, "c" * 40, "0" * 40
    ledger = Ledger("e")
    read_at = "2026-03-01T12:00:00.000000Z"
    seen = RefObservation("t:v1", 0, None, tag_object, commit, read_at)
    told = ledger.apply_observation("rec-1", seen, "2026-03-01T12:00:01Z")
    payload = _dc_tag_push(zero, tag_object, **({"toCommit": {"id": commit}} if with_commit else {}))
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="repo:refs_changed",
        payload=payload,
        delivery_id="d-1",
        received_at="2026-03-01T11:59:59.000Z",
    )
    reports = ledger_reports("datacenter", payload, event)
    assert reports is not None
    (late,) = ledger.apply_delivery("d-1", reports[0], None, "2026-03-01T12:00:02Z", stamp(event["received_at"]))
    assert (late.kind, late.number) == (ABSORBED, told.number)
    assert ledger.change_id("p", "42", late) == ledger.change_id("p", "42", told)


@pytest.mark.parametrize("with_commit", [True, False])
def test_a_data_center_annotated_tag_told_by_either_path_then_deleted_is_no_phantom_push(with_commit):
    truth, bitbridge = _repository("datacenter")
    truth.move_tag("v1", truth.branches["main"], annotated=True, dropped=False, with_commit=with_commit)
    _settle(bitbridge)
    assert bitbridge.reconcile() == 0  # the REST API's tag hash is the tag object: nothing moved
    truth.move_tag("v1", None, annotated=True, dropped=False, with_commit=with_commit)
    _settle(bitbridge)
    assert bitbridge.reconcile() == 0
    truth.move_tag("v1", truth.branches["main"], annotated=True, dropped=True, with_commit=with_commit)
    assert bitbridge.reconcile() == 1  # lost: backfilled once, showing the commit
    bitbridge.drain()
    assert bitbridge.reconcile() == 0
    tags = [c for p in bitbridge.published for c in p.event["ref_changes"]]
    assert [c["new"] for c in tags][-1] == truth.branches["main"]
    _assert_once_each(bitbridge)


# ------------------------------------------------------------------------------------------ mirrors


def test_a_mirror_synchronisation_is_its_own_change_and_says_which_mirror_and_how():
    push = {
        "eventKey": "repo:refs_changed",
        "date": "2026-03-01T12:00:00+0000",
        "repository": {"slug": "hist", "id": 42, "name": "hist", "project": {"key": "ENG"}},
        "changes": [
            {
                "ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                "refId": "refs/heads/main",
                "fromHash": X,
                "toHash": Y,
                "type": "UPDATE",
            }
        ],
    }
    mirror = {
        **json.loads(json.dumps(push)),
        "eventKey": "mirror:repo_synchronized",
        "mirrorServer": {"id": "B1E2-4F5A", "name": "Mirror in Sydney"},
        "syncType": "incremental",
        "refLimitExceeded": False,
    }
    synced = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="mirror:repo_synchronized",
        payload=mirror,
        delivery_id="m-1",
        received_at="2026-03-01T12:00:00Z",
    )
    assert synced["mirror"] == {
        "id": "B1E2-4F5A",
        "name": "Mirror in Sydney",
        "sync_type": "incremental",
        "ref_limit_exceeded": False,
    }
    assert ledger_reports("datacenter", mirror, synced) is None  # not a move of the repository's refs
    assert synced["change_id"] == "m-1"
    (change,) = synced["ref_changes"]
    # The push it replicates gets its id from the ledger: never this one.
    ledger = Ledger("e")
    pushed = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="repo:refs_changed",
        payload=push,
        delivery_id="p-1",
        received_at="2026-03-01T12:00:00Z",
    )
    reports = ledger_reports("datacenter", push, pushed)
    assert reports is not None
    (outcome,) = ledger.apply_delivery("p-1", reports[0], None, "2026-03-01T12:00:00Z")
    assert change["change_id"] != ledger.change_id("p", "42", outcome)
    # Another synchronisation of the same move is another change too.
    again = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="mirror:repo_synchronized",
        payload={**mirror, "syncType": "snapshot", "refLimitExceeded": True, "changes": []},
        delivery_id="m-2",
        received_at="2026-03-01T12:00:00Z",
    )
    assert again["change_id"] == "m-2" and again["mirror"]["ref_limit_exceeded"] is True and again["ref_changes"] == []


@given(st.datetimes(timezones=st.timezones()), st.datetimes(timezones=st.timezones()))
def test_update_times_order_as_the_instants_they_name(first, second):
    """The ledger compares stamps as strings: they must order as the instants do, from any offset."""
    a, b = stamp(first.isoformat()), stamp(second.isoformat())
    assert a is not None and b is not None and a.endswith("Z")
    assert (a < b) == (first < second) and (a == b) == (first == second)


@given(st.one_of(st.none(), st.booleans(), st.text(max_size=40), st.integers(), st.floats(allow_nan=True)))
def test_an_update_time_from_anything_a_payload_carries_is_a_stamp_or_none(value):
    result = stamp(value)
    assert result is None or (result.endswith("Z") and stamp(result) == result)


def test_a_ref_deleted_more_than_a_day_ago_can_be_forgotten_and_its_ids_stay_unique():
    ledger = Ledger("e")
    ledger.apply_delivery("d-1", [RefMove("b:old", None, X)], None, "2026-03-01T00:00:00.000000Z")
    ledger.apply_delivery("d-2", [RefMove("b:old", X, None)], None, "2026-03-01T00:00:01.000000Z")
    assert ledger.forgettable_refs("2026-03-01T12:00:00.000000Z") == []  # told today: kept
    assert ledger.forgettable_refs("2026-03-03T00:00:00.000000Z") == ["b:old"]
    del ledger.refs["b:old"]
    (again,) = ledger.apply_delivery("d-3", [RefMove("b:old", None, X)], None, "2026-03-03T00:00:01.000000Z")
    assert again.number == 3  # the repository's clock, not the entry, numbers changes
