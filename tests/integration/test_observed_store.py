"""The ledger on DynamoDB (moto, with each function's policy enforced): claims are one conditional write
on the clock and survive a conflicting writer; what an import records never overwrites a claim; items
written before the ledger are read as a baseline and moved; confirmations and forgetting only touch
entries unchanged since they were read."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from bitbridge.aws import client
from bitbridge.change_ids import CLAIMED, Ledger, PrEntry, RefMove
from bitbridge.store import observed
from infra.local.iam import acting_as

X, Y, Z = "1" * 40, "2" * 40, "3" * 40
P, R = "prov", "repo-1"


def _item(aws) -> dict[str, Any]:
    key = {"pk": {"S": f"PROJECT#{P}#{R}"}, "sk": {"S": "OBSERVED"}}
    return boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws.ref("ImportsTable"), Key=key, ConsistentRead=True
    )["Item"]


def _move(old: str | None, new: str | None, source: str):
    def apply(seen: observed.Observed) -> Any:
        return seen.ledger.apply_delivery(source, [RefMove("b:main", old, new)], None, "2026-03-01T12:00:00Z")

    return apply


def test_a_claim_makes_the_ledger_then_advances_its_clock_by_one_conditional_write(aws):
    with acting_as("EventPublisherFunction"):
        (first,) = observed.claim(P, R, _move(None, X, "d-1"), {"id": R, "full_name": "w/s"})
        (second,) = observed.claim(P, R, _move(X, Y, "d-2"))
        (again,) = observed.claim(P, R, _move(X, Y, "d-2"))  # a retry: remembered, nothing written
        seen = observed.read(P, R)
    assert (first.kind, first.number, second.number, again.number) == (CLAIMED, 1, 2, 2)
    assert seen is not None and seen.ledger.clock == 2 and seen.ledger.refs["b:main"].head == Y
    item = _item(aws)
    assert item["clock"] == {"N": "2"} and len(item["epoch"]["S"]) == 16
    assert json.loads(item["ref:b:main"]["S"])[:2] == [Y, 2]
    assert json.loads(item["repository"]["S"]) == {"id": R, "full_name": "w/s"}


def test_a_writer_that_claimed_in_between_makes_the_claim_read_and_apply_again(aws):
    calls = []

    def racing(seen: observed.Observed) -> Any:
        calls.append(seen.ledger.clock)
        if len(calls) == 1:  # another publisher claims after our read, before our write
            observed.claim(P, R, _move(X, Y, "other"))
        return seen.ledger.apply_delivery("mine", [RefMove("b:main", Y, Z)], None, "2026-03-01T12:00:00Z")

    with acting_as("EventPublisherFunction"):
        observed.claim(P, R, _move(None, X, "d-1"))
        (outcome,) = observed.claim(P, R, racing)
        seen = observed.read(P, R)
    assert calls == [1, 2]  # read again after the conflict: the other claim is not lost
    assert outcome.number == 3 and seen is not None and seen.ledger.refs["b:main"].head == Z


def test_what_an_import_records_never_overwrites_a_claim_and_fits_any_number_of_refs(aws):
    with acting_as("EventPublisherFunction"):
        observed.claim(P, R, _move(None, Y, "d-1"))  # a delivery told main first
    refs: dict[str, tuple[str, str | None]] = {"b:main": (X, None)}
    refs |= {f"b:feature/{n:04d}-{'x' * 40}": (Z, None) for n in range(250)}
    with acting_as("ImportWorkerFunction"):
        writes = observed.record_seen(
            P, R, refs, {7: ("OPEN|v", "2026-03-01T00:00:00.000000Z")}, "2026-03-01T12:00:00Z"
        )
        observed.finish_baseline(P, R, "2026-03-01T12:00:01Z", "2026-03-01T00:00:00.000000Z", None)
        observed.finish_baseline(P, R, "2026-03-02T00:00:00Z", "2026-03-02T00:00:00.000000Z", None)
    seen = observed.read(P, R)
    assert writes == 4  # 252 entries, 80 per write (an update expression is at most 4 KB)
    assert seen is not None and seen.ledger.refs["b:main"].head == Y and seen.ledger.refs["b:main"].number == 1
    assert len(seen.ledger.refs) == 251 and seen.ledger.prs[7].value == "OPEN|v"
    assert (seen.baseline_at, seen.pr_watermark) == ("2026-03-01T12:00:01Z", "2026-03-01T00:00:00.000000Z")


def test_an_item_written_before_the_ledger_is_a_baseline_and_is_moved_to_entries(aws):
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.put_item(
        TableName=aws.ref("ImportsTable"),
        Item={
            "pk": {"S": f"PROJECT#{P}#{R}"},
            "sk": {"S": "OBSERVED"},
            "refs": {"M": {"b:main": {"S": X}, "t:v1": {"S": Y}}},
            "prs": {"M": {"3": {"S": "OPEN|f"}}},
            "baseline_at": {"S": "2026-01-01T00:00:00Z"},
            "pr_watermark": {"S": "2026-01-01T00:00:00.000000Z"},
        },
    )
    seen = observed.read(P, R)
    assert seen is not None and seen.legacy and seen.ledger.clock == 0
    assert (seen.ledger.refs["b:main"].head, seen.ledger.prs[3].value) == (X, "OPEN|f")
    with acting_as("ReconcilerFunction"):
        observed.migrate_legacy(P, R, seen, "2026-03-01T12:00:00Z")
    item = _item(aws)
    assert "refs" not in item and "prs" not in item and {"ref:b:main", "ref:t:v1", "pr:3"} <= set(item)
    with acting_as("EventPublisherFunction"):
        (moved,) = observed.claim(P, R, _move(X, Z, "d-1"))
    assert moved.kind == CLAIMED and observed.read(P, R).ledger.refs["b:main"].head == Z  # type: ignore[union-attr]


def test_confirmations_and_forgetting_touch_only_entries_unchanged_since_the_read(aws):
    def open_pr(seen: observed.Observed) -> Any:
        seen.ledger.prs[5] = PrEntry("OPEN|a", "2026-03-01T00:00:00.000000Z", 0, "x")
        seen.ledger.prs[6] = PrEntry("MERGED|b", "2026-03-01T00:00:00.000000Z", 0, "x")
        seen.ledger.touched |= {5, 6}

    with acting_as("EventPublisherFunction"):
        observed.claim(P, R, open_pr)
    read = observed.read(P, R)
    assert read is not None
    with acting_as("EventPublisherFunction"):  # a delivery changes pull request 5 after the reconciler's read
        observed.claim(
            P,
            R,
            lambda seen: seen.ledger.apply_delivery(
                "d-9", [], _seen(5, "OPEN|c", "2026-03-02T00:00:00.000000Z"), "2026-03-02T00:00:01Z"
            ),
        )
    with acting_as("ReconcilerFunction"):
        unconfirmed = observed.confirm_pull_requests(P, R, read, {5: "2026-03-03T00:00:00.000000Z"})
        observed.forget(P, R, read, [], [6])
    after = observed.read(P, R)
    assert unconfirmed == [5] and after is not None
    assert after.ledger.prs[5].value == "OPEN|c" and 6 not in after.ledger.prs


def _seen(pr_id: int, value: str, when: str) -> Any:
    from bitbridge.change_ids import PrSeen

    return PrSeen(pr_id, value, when)


def test_an_observed_state_too_large_for_one_item_is_said_so(aws):
    ledger_refs = {f"b:{'n' * 200}-{n}": (X, None) for n in range(2500)}  # ~0.6 MB of entries
    with acting_as("ImportWorkerFunction"), pytest.raises(observed.TooLarge):
        observed.record_seen(P, R, ledger_refs, {}, "2026-03-01T12:00:00Z")


def test_a_new_ledger_has_its_own_epoch(aws):
    with acting_as("EventPublisherFunction"):
        observed.claim(P, R, _move(None, X, "d-1"))
        observed.claim(P, "repo-2", _move(None, X, "d-1"))
    first, second = observed.read(P, R), observed.read(P, "repo-2")
    assert first is not None and second is not None and first.ledger.epoch != second.ledger.epoch
    assert isinstance(first.ledger, Ledger)


def test_a_run_reads_many_ledgers_in_pages_of_a_hundred_as_the_reconciler_may(aws):
    with acting_as("EventPublisherFunction"):
        for n in range(0, 230, 2):  # every other repository has a ledger
            observed.claim(P, f"repo-{n}", _move(None, X, f"d-{n}"))
    pages: list[int] = []
    ddb = client("dynamodb")

    def count(params: dict[str, Any], **_: Any) -> None:
        pages.append(len(params["RequestItems"][aws.ref("ImportsTable")]["Keys"]))

    ddb.meta.events.register("before-parameter-build.dynamodb.BatchGetItem", count)
    try:
        with acting_as("ReconcilerFunction"):  # its policy allows BatchGetItem on the table
            found = observed.read_many([(P, f"repo-{n}") for n in range(230)])
    finally:
        ddb.meta.events.unregister("before-parameter-build.dynamodb.BatchGetItem", count)
    assert pages == [100, 100, 30]  # DynamoDB's most keys a request, and no more requests than that
    assert sorted(found) == sorted((P, f"repo-{n}") for n in range(0, 230, 2))  # no ledger: left out
    one = observed.read(P, "repo-4")
    many = found[(P, "repo-4")]
    assert one is not None and many.version == one.version == 1
    assert {ref: e.head for ref, e in many.ledger.refs.items()} == {ref: e.head for ref, e in one.ledger.refs.items()}
    assert many.ledger.epoch == one.ledger.epoch


def test_comment_and_review_items_are_claimed_baselined_and_forgotten_with_their_pull_request(aws):
    """Issue 27 item 4: the items live beside the refs and pull requests, each its own attribute; the
    reconciler's baseline never overwrites a delivery's claim; forgetting a pull request takes its items."""
    from bitbridge.change_ids import ItemSeen, PrSeen, comment_key, review_key

    comment, review = comment_key(7, 2), review_key(7, "{bob}")

    def deliver(seen: observed.Observed) -> Any:
        ledger = seen.ledger
        ledger.apply_delivery("d-pr", [], PrSeen(7, "MERGED|x", "2026-03-01T10:00:00.000000Z"), "2026-03-01T12:00:00Z")
        return ledger.apply_delivery(
            "d-c", [], None, "2026-03-01T12:00:00Z", item=ItemSeen(comment, "v000000001", True)
        )

    with acting_as("EventPublisherFunction"):
        (claimed,) = observed.claim(P, R, deliver)
    with acting_as("ReconcilerFunction"):
        observed.record_reviews_baseline(P, R, {comment: "v000000000", review: "APPROVED"}, "2026-03-01T12:00:01Z")
        seen = observed.read(P, R)
        assert seen is not None
        assert seen.ledger.reviews_at == "2026-03-01T12:00:01Z"
        assert (seen.ledger.items[comment].value, seen.ledger.items[comment].number) == ("v000000001", claimed.number)
        assert (seen.ledger.items[review].value, seen.ledger.items[review].number) == ("APPROVED", 0)
        assert json.loads(_item(aws)["rv:" + review]["S"])[:2] == ["APPROVED", 0]
        observed.forget(P, R, seen, [], [7])
        gone = observed.read(P, R)
    assert gone is not None and gone.ledger.items == {} and 7 not in gone.ledger.prs
