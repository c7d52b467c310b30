"""Changed files on events (bitbridge.webhooks.enrich), without Bitbucket: what is settled without asking
(deleted refs, tags, an edit that moved nothing, forks, pushes of many refs), the bounds a list and an event
keep whatever Bitbucket answers, and that every shared payload's event gains fields and loses nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitbridge import deadlines
from bitbridge.bitbucket.cloud_code import CLOUD_CODE
from bitbridge.bitbucket.code import STATUSES, ChangedFile, Commit
from bitbridge.store.deliveries import Delivery
from bitbridge.webhooks import enrich, publish
from bitbridge.webhooks.normalise import normalise, set_change_ids
from tests.shared_data import manifest_entries, params
from tests.unit.webhooks.support import RECEIVED_AT, payload, schema_errors

C1, C2 = "1" * 40, "2" * 40
NEW_REF_FIELDS = {
    "changed_files",
    "changed_files_count",
    "changed_files_truncated",
    "changed_files_reason",
    "commits",
    "commits_truncated",
}
NEW_PR_FIELDS = NEW_REF_FIELDS - {"commits", "commits_truncated"}


def _repo() -> dict[str, Any]:
    return {
        "type": "repository",
        "uuid": "{00000000-0000-4000-8000-000000000001}",
        "full_name": "acme/widgets",
        "name": "widgets",
        "links": {},
    }


def _ref(name: str, commit: str, kind: str = "branch") -> dict[str, Any]:
    return {"type": kind, "name": name, "target": {"type": "commit", "hash": commit}}


def _push(*changes: dict[str, Any]) -> dict[str, Any]:
    body = {"actor": None, "repository": _repo(), "push": {"changes": list(changes)}}
    return normalise(
        flavor="cloud", provider_id="p", event_key="repo:push", payload=body, delivery_id="d", received_at=RECEIVED_AT
    )


def _source(event: dict[str, Any]) -> enrich.Source:
    return enrich.Source(event, None, "sub-that-does-not-matter")


def test_the_publisher_names_the_same_types_as_enrichment():
    assert publish.ENRICHED_TYPES == enrich.ENRICHED_TYPES


def test_deleted_refs_tags_and_pushes_of_many_refs_are_settled_without_asking_bitbucket():
    changes = [
        {"old": _ref("gone", C1), "new": None},
        {"old": None, "new": _ref("v1.0", C1, kind="tag")},
        *({"old": _ref(f"b{n}", C1), "new": _ref(f"b{n}", C2)} for n in range(enrich.REF_CHANGES_ENRICHED + 1)),
    ]
    event = _push(*changes)
    jobs = enrich._plan(_source(event))
    assert [j.reason for j in jobs[:2]] == [enrich.REF_DELETED, enrich.TAG]
    assert [j.reason for j in jobs[2:]] == [None] * enrich.REF_CHANGES_ENRICHED + [enrich.TOO_MANY_REFS]
    assert jobs[2].diff is not None and (jobs[2].diff.base, jobs[2].diff.head, jobs[2].diff.three_dot) == (
        C1,
        C2,
        False,
    )
    for job in jobs[2:-1]:
        job.reason = enrich.TIMEOUT  # as if the deadline passed: no network in a unit test
    enrich._write(jobs[0].source, jobs)
    assert schema_errors(event) == []
    for change, reason in zip(event["ref_changes"], [enrich.REF_DELETED, enrich.TAG], strict=False):
        assert change["changed_files"] is None and change["commits"] is None
        assert change["changed_files_reason"] == reason


class _Invocation:
    """Lambda's context object, as far as `deadlines.within` reads it."""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_reads_run_in_the_invocations_context_so_a_token_refresh_never_outlives_it(monkeypatch):
    """The pool's threads start without the publisher's `deadlines` context; each read gets a copy of it,
    so the caller it makes knows when the invocation ends (without it, a refresh could run past the end)."""
    seen: list[float | None] = []

    def run(job: Any, callers: Any) -> str:
        seen.append(deadlines.ends())
        return enrich.TIMEOUT

    monkeypatch.setattr(enrich, "_run", run)
    event = _push({"old": _ref("main", C1), "new": _ref("main", C2)}, {"old": _ref("dev", C1), "new": _ref("dev", C2)})
    with deadlines.within(_Invocation()):
        ends = deadlines.ends()
        enrich.enrich([_source(event)])
    assert ends is not None and seen == [ends, ends]
    assert [c["changed_files_reason"] for c in event["ref_changes"]] == [enrich.TIMEOUT] * 2


def _cloud_move(name: str, old: str, new: str, message: str) -> dict[str, Any]:
    commit = {"hash": new, "message": f"{message}\n", "author": {"raw": "Ann <ann@example.com>"}}
    return {"old": _ref(name, old), "new": _ref(name, new), "commits": [commit], "truncated": False}


def test_a_ref_changes_commits_are_its_own_when_a_change_told_before_is_left_out():
    """The ledger leaves out a ref change the reconciler told first (change id None): the next ref change's
    commits come from its own entry of the delivery, not from the entry at its new position."""
    body = {
        "actor": None,
        "repository": _repo(),
        "push": {"changes": [_cloud_move("told", C1, C2, "told before"), _cloud_move("main", C1, "3" * 40, "mine")]},
    }
    event = normalise(
        flavor="cloud", provider_id="p", event_key="repo:push", payload=body, delivery_id="d", received_at=RECEIVED_AT
    )
    event = set_change_ids(event, [None, "chg-main"])
    assert event is not None and [c["name"] for c in event["ref_changes"]] == ["main"]
    (job,) = enrich._plan(enrich.Source(event, body, "sub"))

    def no_read(*_: Any) -> Any:
        raise AssertionError("the delivery lists them all: nothing to read")

    commits, cut = enrich._commits(CLOUD_CODE, no_read, "https://api", "acme/widgets", job, "3" * 40, C1)
    assert ([c.message for c in commits], cut) == (["mine"], False)


def test_enrichment_keeps_the_claimed_change_ids_on_the_rebuilt_entry(monkeypatch):
    """The entry rebuilt with the files keeps the delivery's claimed ids (kept on the delivery when the bus
    refuses it, so a retry publishes the same ids)."""
    event = _push({"old": _ref("main", C1), "new": _ref("main", C2)})
    delivery = Delivery("pk", "d", "p", "sub", "repo:push", "received", RECEIVED_AT, json.dumps({}))
    prepared = publish._entry(delivery, event, ["chg-1"])
    monkeypatch.setattr(enrich, "enrich", lambda sources: None)
    (rebuilt,) = publish._with_changed_files([prepared])
    assert rebuilt is not prepared and rebuilt.change_ids == ["chg-1"]


def test_a_new_branch_is_compared_when_asked_and_a_pull_request_edit_that_moved_nothing_is_not():
    (job,) = enrich._plan(_source(_push({"old": None, "new": _ref("feature/x", C2)})))
    assert (job.reason, job.new_branch, job.diff) == (None, "feature/x", None)

    pr = _dc_pr_event("pr:modified", {"previousTitle": "old title"})
    (edit,) = enrich._plan(_source(pr))
    assert edit.reason == enrich.SOURCE_UNCHANGED
    moved = _dc_pr_event("pr:from_ref_updated", {"previousFromHash": C1})
    (push,) = enrich._plan(_source(moved))
    assert push.reason is None and push.diff is not None and push.diff.three_dot
    assert (push.diff.head, push.diff.base) == (C2, "3" * 40)


def test_a_pull_request_from_a_fork_is_named_as_such():
    event = _dc_pr_event("pr:opened", {}, fork=True)
    (job,) = enrich._plan(_source(event))
    assert job.reason == enrich.FORK
    enrich._write(job.source, [job])
    assert event["pull_request"]["changed_files_reason"] == enrich.FORK
    assert set(event["pull_request"]) >= NEW_PR_FIELDS and "commits" not in event["pull_request"]
    assert schema_errors(event) == []


def _dc_pr_event(key: str, extra: dict[str, Any], fork: bool = False) -> dict[str, Any]:
    def repo(rid: int, slug: str) -> dict[str, Any]:
        return {"id": rid, "slug": slug, "name": slug, "project": {"key": "PLAT"}, "links": {}}

    def ref(name: str, commit: str, r: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": commit, "repository": r}

    target = repo(1, "core")
    pr = {
        "id": 7,
        "title": "t",
        "state": "OPEN",
        "fromRef": ref("topic", C2, repo(2, "core-fork") if fork else target),
        "toRef": ref("main", "3" * 40, target),
    }
    body = {"eventKey": key, "date": "2024-05-01T12:00:00+0000", "actor": {"id": 1, "name": "ann"}, "pullRequest": pr}
    return normalise(
        flavor="datacenter",
        provider_id="p",
        event_key=key,
        payload={**body, **extra},
        delivery_id="d",
        received_at=RECEIVED_AT,
    )


paths = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=300)
changed = st.builds(
    lambda path, status, old: ChangedFile(path, status, old if status == "renamed" else None),
    paths,
    st.sampled_from(STATUSES),
    paths,
)


@settings(max_examples=40, deadline=None)
@given(
    lists=st.lists(
        st.tuples(st.lists(changed, max_size=700), st.booleans()), min_size=1, max_size=enrich.REF_CHANGES_ENRICHED
    ),
    commits=st.integers(0, enrich.COMMITS_PER_REF),
)
def test_whatever_bitbucket_answers_an_event_keeps_its_bounds_and_its_schema(lists, commits):
    event = _push(*({"old": _ref(f"b{n}", C1), "new": _ref(f"b{n}", C2)} for n in range(len(lists))))
    jobs = enrich._plan(_source(event))
    for job, (files, complete) in zip(jobs, lists, strict=True):
        job.files, job.complete = files, complete
        job.commits = ([Commit(C2, "m" * 200, {"id": None, "name": "n" * 300, "username": None})] * commits, False)
    enrich._write(jobs[0].source, jobs)
    assert schema_errors(event) == []
    listed = [c["changed_files"] for c in event["ref_changes"]]
    assert sum(len(x) for x in listed) <= enrich.FILES_PER_EVENT
    for change, (files, complete) in zip(event["ref_changes"], lists, strict=True):
        assert len(change["changed_files"]) <= enrich.FILES_PER_LIST
        assert change["changed_files"] == [f.public() for f in files[: len(change["changed_files"])]]  # in order
        assert change["changed_files_truncated"] == (len(change["changed_files"]) < len(files) or not complete)
        assert change["changed_files_count"] == (len(files) if complete else None)
    assert len(json.dumps(event, ensure_ascii=False).encode()) < publish.MAX_BYTES_PER_CALL


@pytest.mark.parametrize("entry", params(manifest_entries()))  # one skipped placeholder without the shared data
def test_every_shared_payload_still_normalises_as_before_the_new_fields_only_add(entry):
    """The event a consumer already reads is unchanged: enrichment (here with no one to ask as) only adds
    fields, where docs/events.md says, and every event still validates."""
    before = normalise(
        flavor=entry["flavor"],
        provider_id="p",
        event_key=entry["event_key"],
        payload=payload(entry["file"]),
        delivery_id="d",
        received_at=RECEIVED_AT,
    )
    after = json.loads(json.dumps(before))
    if enrich.needs_enrichment(after):
        jobs = enrich._plan(_source(after))
        for job in jobs:
            job.reason = job.reason or enrich.NO_CONNECTION
        enrich._write(jobs[0].source, jobs) if jobs else None
    assert schema_errors(after) == []
    _assert_only_added(before, after)


def _assert_only_added(before: Any, after: Any, where: str = "") -> None:
    if isinstance(before, dict):
        assert isinstance(after, dict), where
        for key, value in before.items():
            _assert_only_added(value, after[key], f"{where}.{key}")
        added = set(after) - set(before)
        allowed = (
            NEW_REF_FIELDS if ".ref_changes[" in where else NEW_PR_FIELDS if where.endswith(".pull_request") else set()
        )
        assert added <= allowed, (where, added)
    elif isinstance(before, list):
        assert isinstance(after, list) and len(after) == len(before), where
        for n, (b, a) in enumerate(zip(before, after, strict=True)):
            _assert_only_added(b, a, f"{where}[{n}]")
    else:
        assert after == before, where
