"""Normalising the real Bitbucket payloads into event v1, validated against the schema."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from bitbridge.webhooks.normalise import (
    EVENT_TYPES,
    HANDLED_EVENT_KEYS,
    RETIRED_EVENT_TYPES,
    SUBSCRIBED_EVENTS,
    TEXT_LIMIT,
    MalformedPayload,
    UnhandledEvent,
    event_type,
    ledger_reports,
    normalise,
)
from tests.shared_data import manifest_entries, needs_shared, params, require
from tests.unit.webhooks.support import (
    RECEIVED_AT,
    SCHEMA_PATH,
    WEBHOOKS_DIR,
    payload,
    schema_errors,
)

MANIFEST = manifest_entries()  # [] without the shared data: those tests are skipped

# Written out independently of the module's table, so a wrong mapping fails here.
EXPECTED_TYPES = {
    ("cloud", "repo:push"): "repository.push",
    ("cloud", "repo:updated"): "repository.updated",
    ("cloud", "repo:fork"): "repository.forked",
    ("cloud", "repo:commit_comment_created"): "repository.comment.created",
    ("cloud", "repo:commit_status_created"): "commit_status.created",
    ("cloud", "repo:commit_status_updated"): "commit_status.updated",
    ("cloud", "pullrequest:created"): "pull_request.opened",
    ("cloud", "pullrequest:updated"): "pull_request.updated",
    ("cloud", "pullrequest:fulfilled"): "pull_request.merged",
    ("cloud", "pullrequest:rejected"): "pull_request.declined",
    ("cloud", "pullrequest:approved"): "pull_request.review.approved",
    ("cloud", "pullrequest:unapproved"): "pull_request.review.unapproved",
    ("cloud", "pullrequest:comment_created"): "pull_request.comment.created",
    ("cloud", "pullrequest:comment_updated"): "pull_request.comment.updated",
    ("cloud", "pullrequest:comment_deleted"): "pull_request.comment.deleted",
    ("cloud", "issue:created"): "issue.created",
    ("cloud", "issue:updated"): "issue.updated",
    ("cloud", "issue:comment_created"): "issue.comment.created",
    ("datacenter", "repo:refs_changed"): "repository.push",
    ("datacenter", "repo:modified"): "repository.updated",
    ("datacenter", "repo:forked"): "repository.forked",
    ("datacenter", "repo:comment:added"): "repository.comment.created",
    ("datacenter", "repo:comment:edited"): "repository.comment.updated",
    ("datacenter", "repo:comment:deleted"): "repository.comment.deleted",
    ("datacenter", "pr:opened"): "pull_request.opened",
    ("datacenter", "pr:modified"): "pull_request.updated",
    ("datacenter", "pr:merged"): "pull_request.merged",
    ("datacenter", "pr:declined"): "pull_request.declined",
    ("datacenter", "pr:deleted"): "pull_request.deleted",
    ("datacenter", "pr:reviewer:approved"): "pull_request.review.approved",
    ("datacenter", "pr:reviewer:unapproved"): "pull_request.review.unapproved",
    ("datacenter", "pr:reviewer:needs_work"): "pull_request.review.changes_requested",
    ("datacenter", "pr:reviewer:updated"): "pull_request.reviewers_updated",
    ("datacenter", "pr:comment:added"): "pull_request.comment.created",
    ("datacenter", "pr:comment:edited"): "pull_request.comment.updated",
    ("datacenter", "pr:comment:deleted"): "pull_request.comment.deleted",
}


def _without_change_ids(changes: list[dict]) -> list[dict]:
    """Ref changes minus their change ids (tests/unit/webhooks/test_change_ids.py checks those)."""
    return [{k: v for k, v in c.items() if k != "change_id"} for c in changes]


def event_for(file: str, **overrides: Any) -> dict[str, Any]:
    require()
    entry = next(e for e in MANIFEST if e["file"] == file)
    arguments: dict[str, Any] = {
        "flavor": entry["flavor"],
        "provider_id": f"{entry['flavor']}-main",
        "event_key": entry["event_key"],
        "payload": payload(file),
        "delivery_id": "delivery-0001",
        "received_at": RECEIVED_AT,
    }
    arguments.update(overrides)
    return normalise(**arguments)


# ---------------------------------------------------------------------------------------------------------
# Every shared payload


@pytest.mark.parametrize("entry", params(MANIFEST))
def test_every_shared_payload_normalises_to_a_valid_event(entry: dict[str, str]) -> None:
    event = event_for(entry["file"])
    assert schema_errors(event) == []
    assert event["type"] == EXPECTED_TYPES[(entry["flavor"], entry["event_key"])]
    assert event["schema_version"] == "1"
    assert event["id"] == "delivery-0001"
    assert event["event_key"] == entry["event_key"]
    assert event["provider"] == {"id": f"{entry['flavor']}-main", "flavor": entry["flavor"]}
    assert event["received_at"] == RECEIVED_AT
    # serialisable as is, and stable: the same delivery always gives the same event
    assert json.loads(json.dumps(event)) == event
    assert event_for(entry["file"]) == event


@needs_shared
def test_the_manifest_covers_every_file_and_every_key_is_handled() -> None:
    files = {p.relative_to(WEBHOOKS_DIR).as_posix() for p in WEBHOOKS_DIR.glob("*/*.json")}
    assert files == {e["file"] for e in MANIFEST}
    for entry in MANIFEST:
        assert entry["event_key"] in HANDLED_EVENT_KEYS[entry["flavor"]]


@pytest.mark.parametrize("entry", params(MANIFEST))
def test_events_carry_no_personal_contact_data_or_credentials(entry: dict[str, str]) -> None:
    text = json.dumps(event_for(entry["file"]))
    assert "@" not in text.replace("ssh://git@", "ssh://git")  # e-mail addresses stay in the raw delivery
    assert "emailAddress" not in text and "secret" not in text.lower()


# ---------------------------------------------------------------------------------------------------------
# Field values, per flavor

CLOUD_REPO = {
    "id": "{673a6070-3421-46c9-9d48-90745f7bfe8e}",
    "workspace": "team_name",
    "slug": "repo_name",
    "full_name": "team_name/repo_name",
    "name": "repo_name",
    "links": {"html": "https://api.bitbucket.org/bitbucket/bitbucket", "clone": []},
    "private": True,
}
EMMA = {"id": "{a54f16da-24e9-4d7f-a3a7-b1ba2cd98aa3}", "name": "Emma", "username": "emmap1"}
NO_FLAGS = {"forced": None, "truncated": None}  # Data Center does not say
GOPHER = {"id": "3231", "name": "Foo Bar", "username": "gopher"}
TUX = {"id": "2125", "name": "Cain Piper", "username": "tux"}


def test_cloud_push() -> None:
    event = event_for("cloud/repo-push.json")
    assert event["type"] == "repository.push"
    assert event["repository"] == CLOUD_REPO
    assert event["actor"] == EMMA
    assert _without_change_ids(event["ref_changes"]) == [
        {
            "name": "name-of-branch",
            "kind": "branch",
            "old": "1e65c05c1d5171631d92438a13901ca7dae9618c",
            "new": "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
            "forced": False,
            "truncated": False,
        }
    ]
    assert event["pull_request"] is None and event["comment"] is None
    assert event["occurred_at"] == RECEIVED_AT  # a Cloud push payload has no date of its own


def test_cloud_push_created_branch_and_deleted_tag() -> None:
    body = payload("cloud/repo-push.json")
    change = body["push"]["changes"][0]
    created = {**copy.deepcopy(change), "old": None, "created": True}
    deleted_tag = {**copy.deepcopy(change), "new": None, "closed": True}
    deleted_tag["old"]["type"] = "tag"
    deleted_tag["old"]["name"] = "v1.0"
    body["push"]["changes"] = [created, deleted_tag]
    event = normalise(
        flavor="cloud",
        provider_id="p",
        event_key="repo:push",
        payload=body,
        delivery_id="d",
        received_at=RECEIVED_AT,
    )
    assert _without_change_ids(event["ref_changes"]) == [
        {
            "name": "name-of-branch",
            "kind": "branch",
            "old": None,
            "new": "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
            "forced": False,
            "truncated": False,
        },
        {
            "name": "v1.0",
            "kind": "tag",
            "old": "1e65c05c1d5171631d92438a13901ca7dae9618c",
            "new": None,
            "forced": False,
            "truncated": False,
        },
    ]
    assert schema_errors(event) == []


def test_data_center_refs_changed() -> None:
    event = event_for("datacenter/repo-refs-changed.json")
    assert event["type"] == "repository.push"
    assert _without_change_ids(event["ref_changes"]) == [
        {
            "name": "feature/wip",
            "kind": "branch",
            "old": "32a0b8a740c2963c6f56bd8baf3dc05683d299e0",
            "new": None,
            "forced": None,
            "truncated": None,
        }
    ]
    assert event["repository"] == {
        "id": "4",
        "workspace": "~gopher",
        "slug": "webhook-test",
        "full_name": "~gopher/webhook-test",
        "name": "webhook-test",
        "links": {
            "html": "https://server.bitbucket.local/users/gopher/repos/webhook-test/browse",
            "clone": [
                {"name": "ssh", "href": "ssh://git@server.bitbucket.local:7999/~gopher/webhook-test.git"},
                {"name": "http", "href": "https://server.bitbucket.local/scm/~gopher/webhook-test.git"},
            ],
        },
        "private": True,  # "public": false
    }
    assert event["actor"] == GOPHER
    # "2019-03-01T10:37:14+0100" in the payload, as UTC
    assert event["occurred_at"] == "2019-03-01T09:37:14Z"


def test_data_center_push_of_a_new_tag() -> None:
    body = payload("datacenter/repo-refs-changed.json")
    body["changes"] = [
        {
            "ref": {"id": "refs/tags/v2.0", "displayId": "v2.0", "type": "TAG"},
            "refId": "refs/tags/v2.0",
            "fromHash": "0" * 40,
            "toHash": "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
            "type": "ADD",
        },
        # no ref object: derived from refId
        {"refId": "refs/heads/main", "fromHash": "1" * 40, "toHash": "2" * 40, "type": "UPDATE"},
    ]
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="repo:refs_changed",
        payload=body,
        delivery_id="d",
        received_at=RECEIVED_AT,
    )
    assert _without_change_ids(event["ref_changes"]) == [
        {"name": "v2.0", "kind": "tag", "old": None, "new": "abcdef0123456789abcdef0123456789abcdef01", **NO_FLAGS},
        {"name": "main", "kind": "branch", "old": "1" * 40, "new": "2" * 40, **NO_FLAGS},
    ]


def test_cloud_pull_request_opened() -> None:
    event = event_for("cloud/pull-request-created.json")
    pr = event["pull_request"]
    assert event["type"] == "pull_request.opened"
    assert pr["id"] == 1
    assert pr["title"] == "Title of pull request"
    assert pr["state"] == "OPEN"
    assert pr["source"] == {
        "branch": "branch2",
        "tag": None,
        "ref": "refs/heads/branch2",
        "commit": "d3022fc0ca3d",
        "repository": CLOUD_REPO,
    }
    assert pr["destination"] == {
        "branch": "master",
        "tag": None,
        "ref": "refs/heads/master",
        "commit": "ce5965ddd289",
        "repository": CLOUD_REPO,
    }
    assert pr["author"] == EMMA
    assert pr["reviewers"] == [EMMA]
    assert pr["url"] == "https://api.bitbucket.org/pullrequest_id"
    assert event["occurred_at"] == "2015-04-06T15:23:38.179678Z"


@pytest.mark.parametrize(
    ("file", "state"),
    [
        ("cloud/pull-request-merged.json", "MERGED"),
        ("cloud/pull-request-declined.json", "DECLINED"),
        # the fixture's state is the placeholder "OPEN|MERGED|DECLINED": unknown, so null
        ("cloud/pull-request-updated.json", None),
        ("datacenter/pr-opened.json", "OPEN"),
        ("datacenter/pr-merged.json", "MERGED"),
        ("datacenter/pr-declined.json", "DECLINED"),
        ("datacenter/pr-deleted.json", "DELETED"),  # the payload still says OPEN
        ("datacenter/pr-modified.json", "OPEN"),
    ],
)
def test_pull_request_state(file: str, state: str | None) -> None:
    assert event_for(file)["pull_request"]["state"] == state


def test_cloud_merged_pull_request_username_only_author() -> None:
    # this fixture's author has "username" instead of "nickname"
    assert event_for("cloud/pull-request-merged.json")["pull_request"]["author"] == EMMA
    assert event_for("cloud/pull-request-merged.json")["pull_request"]["merge_commit"] == "764413d85e29"


def test_data_center_pull_request_opened() -> None:
    event = event_for("datacenter/pr-opened.json")
    pr = event["pull_request"]
    assert pr["id"] == 5
    assert pr["title"] == "Update README"
    assert pr["source"]["branch"] == "feature/wip"
    assert pr["source"]["commit"] == "32a0b8a740c2963c6f56bd8baf3dc05683d299e0"
    assert pr["destination"]["branch"] == "master"
    assert pr["destination"]["commit"] == "cde6c45a4210afe81638aa1f3aa960d633c66a90"
    assert pr["destination"]["repository"]["full_name"] == "~gopher/webhook-test"
    assert pr["author"] == GOPHER
    assert pr["reviewers"] == [TUX]
    assert pr["url"] == "https://server.bitbucket.local/users/gopher/repos/webhook-test/pull-requests/5"
    assert pr["merge_commit"] is None
    # Data Center pull request payloads have no top-level repository: it is the target's
    assert event["repository"]["id"] == "4"
    assert event["occurred_at"] == "2019-03-01T09:31:15Z"


def test_data_center_merge_commit() -> None:
    pr = event_for("datacenter/pr-merged.json")["pull_request"]
    assert pr["merge_commit"] == "cbf26be7bfc8394906abbd571498fb8d28888b58"


def test_cloud_review_events() -> None:
    approved = event_for("cloud/pull-request-approved.json")
    assert approved["review"] == {
        "reviewer": EMMA,
        "status": "APPROVED",
        "previous_status": None,
        "added": [],
        "removed": [],
    }
    assert approved["occurred_at"] == "2015-04-06T16:34:59.195330Z"
    assert event_for("cloud/pull-request-approval-removed.json")["review"]["status"] == "UNAPPROVED"


def test_data_center_review_events() -> None:
    approved = event_for("datacenter/pr-reviewer-approved.json")
    assert approved["review"]["reviewer"] == TUX
    assert approved["review"]["status"] == "APPROVED"
    assert approved["review"]["previous_status"] == "CHANGES_REQUESTED"  # NEEDS_WORK in the payload
    needs_work = event_for("datacenter/pr-reviewer-needs-work.json")
    assert needs_work["type"] == "pull_request.review.changes_requested"
    assert needs_work["review"]["status"] == "CHANGES_REQUESTED"
    assert needs_work["review"]["previous_status"] == "UNAPPROVED"
    updated = event_for("datacenter/pr-reviewer-updated.json")
    assert updated["review"] == {
        "reviewer": None,
        "status": None,
        "previous_status": None,
        "added": [TUX],
        "removed": [],
    }


def test_data_center_changes_requested_key_of_newer_versions() -> None:
    body = payload("datacenter/pr-reviewer-needs-work.json")
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="pr:reviewer:changes_requested",
        payload=body,
        delivery_id="d",
        received_at=RECEIVED_AT,
    )
    assert event["type"] == "pull_request.review.changes_requested"
    assert schema_errors(event) == []


def test_data_center_from_ref_updated() -> None:
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="pr:from_ref_updated",
        payload=payload("datacenter/pr-modified.json"),
        delivery_id="d",
        received_at=RECEIVED_AT,
    )
    assert event["type"] == "pull_request.updated"
    assert event["pull_request"]["source"]["commit"] == "591f702354b3abf1faaca4d23811620d1b2ac984"


def test_pull_request_comments() -> None:
    cloud = event_for("cloud/pull-request-comment-created.json")
    assert cloud["pull_request"]["id"] == 1
    assert cloud["comment"] == {
        "id": 17,
        "text": "Comment text",
        "truncated": False,
        "author": None,
        "parent_id": 16,
        "inline": {"path": "path/to/file", "line": 10, "side": "new"},
        "commit": None,
        "url": "https://api.bitbucket.org/comment_id",
    }
    assert cloud["occurred_at"] == "2015-04-06T16:52:29.982346Z"
    dc = event_for("datacenter/pr-comment-added.json")
    assert dc["pull_request"]["id"] == 2
    assert dc["comment"]["id"] == 167
    assert dc["comment"]["text"] == "test"
    assert dc["comment"]["author"] == GOPHER
    assert dc["comment"]["parent_id"] == 164
    assert event_for("datacenter/pr-comment-edited.json")["comment"]["text"] == "yada edit comment"


def test_commit_comments() -> None:
    cloud = event_for("cloud/commit-comment-created.json")
    assert cloud["comment"]["commit"] == "d3022fc0ca3d65c7f6654eea129d6bf0cf0ee08e"
    assert cloud["pull_request"] is None
    dc = event_for("datacenter/repo-comment-added.json")
    assert dc["comment"]["id"] == 146
    assert dc["comment"]["commit"] == "038e7b67735e54f6de8f1c5d533c6751df524f6c"


def test_forks_name_the_origin_as_repository_and_the_new_fork_apart() -> None:
    dc = event_for("datacenter/repo-forked.json")
    assert dc["repository"]["id"] == "4" and dc["repository"]["full_name"] == "~gopher/webhook-test"
    assert dc["fork"]["id"] == "124" and dc["fork"]["full_name"] == "~tux/webhook-test"
    assert dc["actor"] == TUX
    cloud = event_for("cloud/repo-fork.json")
    assert cloud["repository"] == CLOUD_REPO and cloud["fork"]["id"] == CLOUD_REPO["id"]


def test_repository_updated() -> None:
    dc = event_for("datacenter/repo-modified.json")
    assert dc["repository"]["slug"] == "webhook-test"  # the new state
    assert dc["changes"] == {
        "name": {"old": "webhook-test-2", "new": "webhook-test"},
        "slug": {"old": "webhook-test-2", "new": "webhook-test"},
        "full_name": {"old": "gopher/webhook-test-2", "new": "gopher/webhook-test"},
    }
    cloud = event_for("cloud/repo-updated.json")
    assert cloud["changes"]["full_name"] == {
        "old": "teamawesome/repository_name",
        "new": "teamawesome/repository",
    }
    assert "links" not in cloud["changes"]  # only scalar fields


def test_issue_and_commit_status() -> None:
    issue = event_for("cloud/issue-comment-created.json")
    assert issue["issue"]["id"] == 1 and issue["issue"]["title"] == "Issue title"
    assert issue["issue"]["state"] is None  # the fixture's placeholder is not a state
    assert issue["comment"]["id"] == 17
    status = event_for("cloud/repo-commit-status-updated.json")["commit_status"]
    assert status == {
        "key": "mybuildtool",
        "name": "Unit Tests (Python)",
        "state": "SUCCESSFUL",
        "description": "All tests passed",
        "commit": "9fec847784abb10b2fa567ee63b85bd238955d0e",
        "refname": None,
        "url": "https://my-build-tool.com/builds/MY-PROJECT/BUILD-792",
    }


def test_long_comment_text_is_cut_and_flagged() -> None:
    body = payload("datacenter/pr-comment-added.json")
    body["comment"]["text"] = "x" * (TEXT_LIMIT + 5000)
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="pr:comment:added",
        payload=body,
        delivery_id="d",
        received_at=RECEIVED_AT,
    )
    assert len(event["comment"]["text"]) == TEXT_LIMIT and event["comment"]["truncated"] is True
    assert schema_errors(event) == []


def test_occurred_at_falls_back_to_received_at_when_the_date_is_unusable() -> None:
    body = payload("datacenter/pr-opened.json")
    body["date"] = "yesterday"
    event = normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="pr:opened",
        payload=body,
        delivery_id="d",
        received_at="2024-05-01T14:00:00+02:00",
    )
    assert event["occurred_at"] == "2024-05-01T12:00:00Z"
    assert event["received_at"] == "2024-05-01T14:00:00+02:00"


# ---------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("flavor", "key"),
    [
        ("cloud", "repo:transfer"),
        ("cloud", "pullrequest:comment_resolved"),
        ("cloud", "pr:opened"),  # a Data Center key on Cloud
        ("datacenter", "diagnostics:ping"),
        ("datacenter", "repo:push"),  # a Cloud key on Data Center
        ("datacenter", "project:modified"),
        ("datacenter", ""),
    ],
)
def test_unhandled_keys_raise_unhandled_event(flavor: str, key: str) -> None:
    with pytest.raises(UnhandledEvent) as caught:
        normalise(
            flavor=flavor,
            provider_id="p",
            event_key=key,
            payload={},
            delivery_id="d",
            received_at=RECEIVED_AT,
        )
    assert caught.value.event_key == key


def _malformed(file: str, mutate: Any) -> MalformedPayload:
    require()
    entry = next(e for e in MANIFEST if e["file"] == file)
    body = payload(file)
    mutate(body)
    with pytest.raises(MalformedPayload) as caught:
        normalise(
            flavor=entry["flavor"],
            provider_id="p",
            event_key=entry["event_key"],
            payload=body,
            delivery_id="d",
            received_at=RECEIVED_AT,
        )
    return caught.value


@pytest.mark.parametrize(
    ("file", "mutate", "field"),
    [
        ("cloud/repo-push.json", lambda b: b.pop("repository"), "repository"),
        ("cloud/repo-push.json", lambda b: b["repository"].pop("uuid"), "repository.uuid"),
        ("cloud/repo-push.json", lambda b: b.pop("push"), "push"),
        ("cloud/repo-push.json", lambda b: b["push"].update(changes="all"), "push.changes"),
        (
            "cloud/repo-push.json",
            lambda b: b["push"]["changes"][0].update(new=None, old=None),
            "push.changes[0]",
        ),
        (
            "cloud/repo-push.json",
            lambda b: b["push"]["changes"][0]["new"]["target"].update(hash="not-a-hash"),
            "push.changes[0].new.target.hash",
        ),
        ("cloud/repo-push.json", lambda b: b["push"]["changes"][0]["new"].update(type="commit"), "type"),
        ("cloud/pull-request-created.json", lambda b: b["pullrequest"].pop("id"), "pullrequest.id"),
        ("cloud/pull-request-created.json", lambda b: b["pullrequest"].update(id="1"), "pullrequest.id"),
        ("cloud/pull-request-created.json", lambda b: b.pop("pullrequest"), "pullrequest"),
        ("cloud/pull-request-comment-created.json", lambda b: b.pop("comment"), "comment"),
        ("datacenter/repo-refs-changed.json", lambda b: b.pop("repository"), "repository"),
        ("datacenter/repo-refs-changed.json", lambda b: b["repository"].pop("project"), "repository.project"),
        ("datacenter/repo-refs-changed.json", lambda b: b.pop("changes"), "changes"),
        (
            "datacenter/repo-refs-changed.json",
            lambda b: b["changes"][0].update(toHash="xyz"),
            "changes[0].toHash",
        ),
        ("datacenter/pr-opened.json", lambda b: b["pullRequest"].pop("toRef"), "pullRequest.toRef"),
        ("datacenter/pr-opened.json", lambda b: b["pullRequest"].pop("title"), "pullRequest.title"),
        ("datacenter/repo-modified.json", lambda b: b.pop("new"), "new"),
        ("datacenter/repo-forked.json", lambda b: b["repository"].pop("origin"), "repository.origin"),
        (
            "cloud/repo-commit-status-created.json",
            lambda b: b["commit_status"].pop("key"),
            "commit_status.key",
        ),
        ("cloud/issue-created.json", lambda b: b["issue"].pop("id"), "issue.id"),
    ],
)
def test_malformed_payloads_name_the_field(file: str, mutate: Any, field: str) -> None:
    error = _malformed(file, mutate)
    assert field in str(error)
    assert isinstance(error, ValueError)


def test_malformed_messages_never_echo_payload_values() -> None:
    token = "ghp_SECRETVALUE_0123456789"

    def mutate(body: dict[str, Any]) -> None:
        body["changes"][0]["toHash"] = token
        body["repository"]["name"] = token

    error = _malformed("datacenter/repo-refs-changed.json", mutate)
    assert token not in str(error) and token not in repr(error)

    def mutate_type(body: dict[str, Any]) -> None:
        body["pullrequest"]["id"] = token

    error = _malformed("cloud/pull-request-created.json", mutate_type)
    assert token not in str(error)


def test_a_payload_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedPayload):
        normalise(
            flavor="cloud",
            provider_id="p",
            event_key="repo:push",
            payload=[1, 2],  # type: ignore[arg-type]
            delivery_id="d",
            received_at=RECEIVED_AT,
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"flavor": "server"},
        {"provider_id": ""},
        {"delivery_id": ""},
        {"delivery_id": "x" * 257},
        {"received_at": "2024-05-01 12:00:00"},
        {"received_at": "2024-05-01T12:00:00"},  # no offset
        {"received_at": "yesterday"},
    ],
)
def test_bad_arguments_raise_value_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        event_for("cloud/repo-push.json", **overrides)
    assert not isinstance(caught.value, MalformedPayload)


# ---------------------------------------------------------------------------------------------------------
# The tables


@needs_shared
def test_subscribed_events_are_handled_and_valid_keys() -> None:
    cloud_spec = (WEBHOOKS_DIR.parent / "openapi" / "cloud.swagger.v3.json").read_text()
    for flavor, keys in SUBSCRIBED_EVENTS.items():
        assert len(set(keys)) == len(keys)
        assert set(keys) <= HANDLED_EVENT_KEYS[flavor]
    for key in SUBSCRIBED_EVENTS["cloud"]:
        assert f'"{key}"' in cloud_spec, key  # Cloud's hook_event enum lists it
    documented_dc = {e["event_key"] for e in MANIFEST if e["flavor"] == "datacenter"} | {
        "pr:from_ref_updated",
        "pr:reviewer:changes_requested",
    }
    assert set(SUBSCRIBED_EVENTS["datacenter"]) <= documented_dc
    for flavor in ("cloud", "datacenter"):
        for key in HANDLED_EVENT_KEYS[flavor]:
            assert re.fullmatch(r"[a-z_]+(:[a-z_]+)+", key)


def test_event_type_lookup() -> None:
    for (flavor, key), type_ in EXPECTED_TYPES.items():
        assert event_type(flavor, key) == type_
    assert event_type("datacenter", "diagnostics:ping") is None
    assert event_type("server", "repo:push") is None


def test_schema_type_enum_is_exactly_the_emitted_types() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    # subscription.unhealthy is bitbridge's own (the reconciler), never normalised from a delivery.
    # Types retired in 1.3 stay in the enum, so events of an earlier minor version still validate.
    assert set(schema["properties"]["type"]["enum"]) == EVENT_TYPES | RETIRED_EVENT_TYPES | {"subscription.unhealthy"}
    assert not RETIRED_EVENT_TYPES & EVENT_TYPES
    assert set(EXPECTED_TYPES.values()) <= EVENT_TYPES


# ---------------------------------------------------------------------------------------------------------
# Robustness: whatever a payload's fields hold, normalise either returns a valid event or raises
# MalformedPayload — never a KeyError, TypeError or an event the schema rejects.

_REMOVE = object()
_REPLACEMENTS: tuple[Any, ...] = (_REMOVE, None, 0, "x", [], {}, True, "0" * 40, -1, "2019-13-45T99:00:00Z")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found.extend(_paths(child, (*prefix, key)))
    return found


@pytest.mark.parametrize("entry", params(MANIFEST))
def test_mutated_payloads_give_a_valid_event_or_malformed_payload(entry: dict[str, str]) -> None:
    base = payload(entry["file"])
    for index, path in enumerate(_paths(base)):
        # one replacement per field, rotating, so each file sees every kind of damage
        replacement = _REPLACEMENTS[(index + len(path)) % len(_REPLACEMENTS)]
        body = copy.deepcopy(base)
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if replacement is _REMOVE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(replacement)
        try:
            event = normalise(
                flavor=entry["flavor"],
                provider_id="p",
                event_key=entry["event_key"],
                payload=body,
                delivery_id="d",
                received_at=RECEIVED_AT,
            )
        except MalformedPayload:
            continue
        assert schema_errors(event) == [], (path, replacement)
        # What the publisher claims in the ledger: one move per ref change, or the pull request's state, or a
        # comment's or review's.
        reports = ledger_reports(entry["flavor"], body, event)
        if reports is not None:
            moves, pr, item = reports
            one = [bool(moves), pr is not None, item is not None].count(True) == 1
            assert len(moves) == len(event["ref_changes"]) and one, (path, replacement)
