"""Payload details the normaliser keeps (issue 14, point 8). The payloads are written here, shaped after the
real ones in ../shared/bitbucket/webhooks (same keys, made-up values), so these run without ../shared."""

from __future__ import annotations

from typing import Any

from bitbridge.webhooks.normalise import HANDLED_EVENT_KEYS, SCHEMA_MINOR, SUBSCRIBED_EVENTS, normalise
from tests.unit.webhooks.support import RECEIVED_AT, schema_errors

C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
TAG_OBJECT, TAGGED_COMMIT = "a" * 40, "c" * 40


def _event(flavor: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    event = normalise(
        flavor=flavor, provider_id="p", event_key=key, payload=body, delivery_id="d-1", received_at=RECEIVED_AT
    )
    assert schema_errors(event) == []
    assert event["schema_minor"] == SCHEMA_MINOR >= 1  # minor 1 added these fields
    return event


# ------------------------------------------------------------------------------------------------ Cloud


def _cloud_repo(full_name: str = "new-owner/widgets", workspace: str = "old-owner", private: bool = True) -> dict:
    return {
        "type": "repository",
        "uuid": "{00000000-0000-4000-8000-000000000001}",
        "full_name": full_name,
        "name": "widgets",
        "is_private": private,
        "workspace": {"type": "workspace", "slug": workspace, "uuid": "{00000000-0000-4000-8000-000000000002}"},
        "links": {"html": {"href": f"https://bitbucket.org/{full_name}"}},
    }


def _cloud_ref(name: str, commit: str, kind: str = "branch") -> dict:
    return {"type": kind, "name": name, "target": {"type": "commit", "hash": commit}}


def _cloud_push(*changes: dict, repo: dict | None = None) -> dict:
    return {
        "actor": {"type": "user", "uuid": "{00000000-0000-4000-8000-000000000003}", "nickname": "ann"},
        "repository": repo or _cloud_repo(),
        "push": {"changes": list(changes)},
    }


def test_cloud_owner_comes_from_full_name_when_the_workspace_slug_differs():
    event = _event("cloud", "repo:push", _cloud_push(_change(C1, C2)))
    repo = event["repository"]
    assert (repo["workspace"], repo["slug"], repo["full_name"]) == ("new-owner", "widgets", "new-owner/widgets")


def _change(old: str, new: str, *, forced: bool = False, truncated: bool = False) -> dict:
    return {
        "old": _cloud_ref("main", old),
        "new": _cloud_ref("main", new),
        "created": False,
        "closed": False,
        "forced": forced,
        "truncated": truncated,
        "commits": [],
    }


def test_cloud_push_keeps_forced_and_truncated():
    event = _event("cloud", "repo:push", _cloud_push(_change(C1, C2, forced=True), _change(C2, C3, truncated=True)))
    assert [(c["forced"], c["truncated"]) for c in event["ref_changes"]] == [(True, False), (False, True)]


def test_repository_privacy_is_kept_for_both_flavors():
    assert _event("cloud", "repo:push", _cloud_push(_change(C1, C2)))["repository"]["private"] is True
    public = _cloud_push(_change(C1, C2), repo=_cloud_repo(private=False))
    assert _event("cloud", "repo:push", public)["repository"]["private"] is False
    assert (
        _event("datacenter", "repo:refs_changed", _dc_push([_dc_change()], public=True))["repository"]["private"]
        is False
    )
    assert _event("datacenter", "repo:refs_changed", _dc_push([_dc_change()]))["repository"]["private"] is True
    no_word = _dc_push([_dc_change()])
    del no_word["repository"]["public"]
    assert _event("datacenter", "repo:refs_changed", no_word)["repository"]["private"] is None


# ------------------------------------------------------------------------------------------------ Data Center


def _dc_repo(public: bool = False) -> dict:
    return {
        "slug": "widgets",
        "id": 42,
        "name": "widgets",
        "scmId": "git",
        "state": "AVAILABLE",
        "project": {"key": "ENG", "id": 7, "name": "Engineering", "type": "NORMAL"},
        "public": public,
        "links": {"self": [{"href": "https://bitbucket.example/projects/ENG/repos/widgets/browse"}]},
    }


_DC_ACTOR = {"name": "ann", "id": 9, "displayName": "Ann", "slug": "ann", "type": "NORMAL"}


def _dc_push(changes: list, public: bool = False, **extra: Any) -> dict:
    return {
        "eventKey": "repo:refs_changed",
        "date": "2024-05-01T12:00:00+0000",
        "actor": _DC_ACTOR,
        "repository": _dc_repo(public),
        "changes": changes,
        **extra,
    }


def _dc_change(ref_id: str = "refs/heads/main", kind: str = "BRANCH", old: str = C1, new: str = C2, **ref: Any):
    display = ref_id.removeprefix("refs/heads/").removeprefix("refs/tags/")
    return {
        "ref": {"id": ref_id, "displayId": display, "type": kind, **ref},
        "refId": ref_id,
        "fromHash": old,
        "toHash": new,
        "type": "UPDATE" if old != "0" * 40 else "ADD",
    }


def test_an_empty_data_center_refs_changed_is_a_valid_push_event():
    event = _event("datacenter", "repo:refs_changed", _dc_push([]))
    assert event["type"] == "repository.push" and event["ref_changes"] == []


def test_annotated_tag_push_reports_the_commit_not_the_tag_object():
    tag = _dc_change("refs/tags/v1.0", "TAG", "0" * 40, TAG_OBJECT, latestCommit=TAGGED_COMMIT)
    event = _event("datacenter", "repo:refs_changed", _dc_push([tag]))
    change = {k: v for k, v in event["ref_changes"][0].items() if k != "change_id"}  # minor 2; own tests
    assert change == {
        "name": "v1.0",
        "kind": "tag",
        "old": None,
        "new": TAGGED_COMMIT,
        "forced": None,
        "truncated": None,
    }
    # Data Center 10 names the pushed commit at the top level (toCommit) instead.
    tag = _dc_change("refs/tags/v1.0", "TAG", "0" * 40, TAG_OBJECT)
    dc10 = _dc_push([tag], toCommit={"id": TAGGED_COMMIT, "displayId": TAGGED_COMMIT[:11]}, commits=[])
    assert _event("datacenter", "repo:refs_changed", dc10)["ref_changes"][0]["new"] == TAGGED_COMMIT
    # A lightweight tag (or a payload that names no commit) keeps toHash.
    plain = _dc_change("refs/tags/v1.1", "TAG", "0" * 40, TAGGED_COMMIT)
    assert _event("datacenter", "repo:refs_changed", _dc_push([plain]))["ref_changes"][0]["new"] == TAGGED_COMMIT


def _dc_pr(from_ref: str = "refs/heads/feature", to_ref: str = "refs/heads/main", **pr: Any) -> dict:
    def ref(ref_id: str, commit: str) -> dict:
        display = ref_id.removeprefix("refs/heads/").removeprefix("refs/tags/")
        return {"id": ref_id, "displayId": display, "latestCommit": commit, "repository": _dc_repo()}

    return {
        "id": 5,
        "version": 1,
        "title": "New title",
        "description": "New description",
        "state": "OPEN",
        "open": True,
        "closed": False,
        "fromRef": ref(from_ref, C2),
        "toRef": ref(to_ref, C3),
        "author": {"user": _DC_ACTOR, "role": "AUTHOR"},
        "reviewers": [],
        **pr,
    }


def _dc_pr_event(key: str, pr: dict, **extra: Any) -> dict:
    return _event(
        "datacenter",
        key,
        {"eventKey": key, "date": "2024-05-01T12:00:00+0000", "actor": _DC_ACTOR, "pullRequest": pr, **extra},
    )


def test_a_pull_request_from_a_tag_reports_a_tag_source():
    event = _dc_pr_event("pr:opened", _dc_pr(from_ref="refs/tags/v1.0"))
    source = event["pull_request"]["source"]
    assert (source["branch"], source["tag"], source["ref"]) == (None, "v1.0", "refs/tags/v1.0")
    target = event["pull_request"]["destination"]
    assert (target["branch"], target["tag"], target["ref"]) == ("main", None, "refs/heads/main")


def test_pr_modified_says_what_changed():
    previous_target = {"id": "refs/heads/develop", "displayId": "develop", "type": "BRANCH", "latestCommit": C1}
    retargeted = _dc_pr_event(
        "pr:modified",
        _dc_pr(),
        previousTitle="New title",  # unchanged: not reported
        previousDescription="Old description",
        previousTarget=previous_target,
    )
    assert retargeted["type"] == "pull_request.updated"
    assert retargeted["changes"] == {
        "description": {"old": "Old description", "new": "New description"},
        "target": {"old": "refs/heads/develop", "new": "refs/heads/main"},
    }
    renamed = _dc_pr_event("pr:modified", _dc_pr(), previousTitle="Old title", previousDescription="New description")
    assert renamed["changes"] == {"title": {"old": "Old title", "new": "New title"}}


def test_pr_from_ref_updated_says_the_source_commit_moved():
    event = _dc_pr_event("pr:from_ref_updated", _dc_pr(), previousFromHash=C1)
    assert event["changes"] == {"source_commit": {"old": C1, "new": C2}}


def test_cloud_pull_request_updated_has_no_changes_to_tell():
    body = {
        "actor": {"type": "user", "uuid": "{00000000-0000-4000-8000-000000000003}"},
        "repository": _cloud_repo(),
        "pullrequest": {
            "id": 1,
            "title": "t",
            "state": "OPEN",
            "source": {"branch": {"name": "feature"}, "commit": {"hash": "d3022fc0ca3d"}},
            "destination": {"branch": {"name": "main"}, "commit": {"hash": "ce5965ddd289"}},
        },
    }
    assert _event("cloud", "pullrequest:updated", body)["changes"] is None


def test_mirror_repo_synchronized_is_handled_as_its_own_event():
    assert "mirror:repo_synchronized" in HANDLED_EVENT_KEYS["datacenter"]
    assert "mirror:repo_synchronized" not in SUBSCRIBED_EVENTS["datacenter"]  # sent by mirrors, not installed
    body = _dc_push(
        [_dc_change()],
        eventKey="mirror:repo_synchronized",
        mirrorServer={"id": "B1E2-4F5A", "name": "Mirror in Sydney"},
        syncType="INCREMENTAL",
        refLimitExceeded=False,
    )
    event = _event("datacenter", "mirror:repo_synchronized", body)
    assert event["type"] == "repository.mirror_synchronized"
    assert event["repository"]["full_name"] == "ENG/widgets"
    assert [(c["name"], c["old"], c["new"]) for c in event["ref_changes"]] == [("main", C1, C2)]
    # A snapshot sync past the ref limit lists no changes: still an event.
    body.update(changes=[], syncType="SNAPSHOT", refLimitExceeded=True)
    assert _event("datacenter", "mirror:repo_synchronized", body)["ref_changes"] == []
