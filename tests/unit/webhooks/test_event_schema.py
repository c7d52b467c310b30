"""The event v1 JSON Schema is strict enough to catch mistakes."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from bitbridge.webhooks.normalise import EVENT_TYPES, normalise
from tests import shared_data
from tests.unit.webhooks.support import RECEIVED_AT, REPO_ROOT, SCHEMA_PATH, payload, schema_errors, validator


def _event(flavor: str, file: str, key: str) -> dict[str, Any]:
    return normalise(
        flavor=flavor,
        provider_id="p",
        event_key=key,
        payload=payload(file),
        delivery_id="d-1",
        received_at=RECEIVED_AT,
    )


# Base events from real payloads; the tests that use them are skipped without the shared data.
PUSH: dict[str, Any] = {}
PR: dict[str, Any] = {}
COMMENT: dict[str, Any] = {}
ISSUE: dict[str, Any] = {}
if shared_data.available():
    PUSH = _event("cloud", "cloud/repo-push.json", "repo:push")
    PR = _event("datacenter", "datacenter/pr-opened.json", "pr:opened")
    COMMENT = _event("cloud", "cloud/pull-request-comment-created.json", "pullrequest:comment_created")
    ISSUE = _event("cloud", "cloud/issue-created.json", "issue:created")


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    validator()  # check_schema runs there


@shared_data.needs_shared
def test_the_base_events_are_valid() -> None:
    for event in (PUSH, PR, COMMENT, ISSUE):
        assert schema_errors(event) == []


@shared_data.needs_shared
def test_minor_0_events_still_validate() -> None:
    """Additive only: an event as minor 0 produced it (no 1.1 fields) is valid under minor 1."""
    old = copy.deepcopy(PUSH)
    del old["schema_minor"], old["repository"]["private"]
    for change in old["ref_changes"]:
        del change["forced"], change["truncated"]
    pr = copy.deepcopy(PR)
    del pr["schema_minor"]
    for end in ("source", "destination"):
        del pr["pull_request"][end]["tag"], pr["pull_request"][end]["ref"]
    assert schema_errors(old) == [] and schema_errors(pr) == []


def _mirror_event() -> dict[str, Any]:
    payload = {
        "eventKey": "mirror:repo_synchronized",
        "date": "2026-03-01T12:00:00+0000",
        "mirrorServer": {"id": "B1E2-4F5A", "name": "Mirror in Sydney"},
        "syncType": "snapshot",
        "refLimitExceeded": True,
        "repository": {"slug": "widgets", "id": 42, "name": "widgets", "project": {"key": "ENG"}},
        "changes": [],
    }
    return normalise(
        flavor="datacenter",
        provider_id="p",
        event_key="mirror:repo_synchronized",
        payload=payload,
        delivery_id="m-1",
        received_at=RECEIVED_AT,
    )


def test_minor_3_mirror_events_validate_and_earlier_ones_still_do() -> None:
    event = _mirror_event()
    assert event["schema_minor"] == 3 and event["mirror"]["ref_limit_exceeded"] is True
    assert schema_errors(event) == []
    earlier = copy.deepcopy(event)
    del earlier["mirror"]  # minor 2 and before: no mirror section
    earlier["schema_minor"] = 2
    assert schema_errors(earlier) == []
    other = copy.deepcopy(event)
    other["type"], other["event_key"] = "repository.push", "repo:refs_changed"
    assert schema_errors(other) != []  # a mirror section only on a mirror synchronisation
    bad = copy.deepcopy(event)
    bad["mirror"]["ref_limit_exceeded"] = "yes"
    assert schema_errors(bad) != []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return apply


_DELETE = object()


@pytest.mark.parametrize(
    ("base", "mutation"),
    [
        (PUSH, _set("extra", 1)),
        (PUSH, _set("schema_version", "2")),
        (PUSH, _set("schema_version", 1)),
        (PUSH, _set("id", "")),
        (PUSH, _set("id", _DELETE)),
        (PUSH, _set("type", "repository.pushed")),
        (PUSH, _set("provider.flavor", "server")),
        (PUSH, _set("provider.extra", "x")),
        (PUSH, _set("repository", None)),
        (PUSH, _set("repository.id", 4)),
        (PUSH, _set("repository.full_name", "no-slash")),
        (PUSH, _set("repository.links.html", "/relative/path")),
        (PUSH, _set("repository.extra", 1)),
        (PUSH, _set("actor.id", None)),
        (PUSH, _set("ref_changes.0.forced", "yes")),
        (PUSH, _set("repository.private", "no")),
        (PR, _set("pull_request.source.tag", 1)),
        (PR, _set("schema_minor", -1)),
        (ISSUE, _set("changes", {})),  # changes belong to repository.updated and pull_request.updated
        (PUSH, _set("ref_changes.0.kind", "commit")),
        (PUSH, _set("ref_changes.0.new", "main")),
        (PUSH, _set("ref_changes.0.old", "0" * 6)),
        (PUSH, _set("ref_changes.0.new", "ABCDEF0")),  # hashes are lowercase
        (PUSH, _set("ref_changes.0", {"name": "main", "kind": "branch", "old": None, "new": None})),
        (PUSH, _set("occurred_at", "2024-05-01T12:00:00+02:00")),  # occurred_at is UTC
        (PUSH, _set("occurred_at", "2024-13-01T12:00:00Z")),
        (PUSH, _set("received_at", "yesterday")),
        (PUSH, _set("pull_request", PR.get("pull_request"))),  # not a pull request event
        (PUSH, _set("event_key", "Repo Push")),
        (PR, _set("pull_request", None)),
        (PR, _set("pull_request.state", "open")),
        (PR, _set("pull_request.id", "5")),
        (PR, _set("pull_request.source.commit", "feature/wip")),
        (PR, _set("pull_request.extra", 1)),
        (PR, _set("ref_changes", PUSH.get("ref_changes"))),  # only pushes move refs
        (
            PR,
            _set(
                "review",
                {"reviewer": None, "status": None, "previous_status": None, "added": [], "removed": []},
            ),
        ),
        (COMMENT, _set("comment", None)),
        (COMMENT, _set("comment.id", "17")),
        (COMMENT, _set("comment.truncated", _DELETE)),
        (ISSUE, _set("provider.flavor", "datacenter")),  # issues exist on Cloud only
        (ISSUE, _set("issue.state", "wontfix-ish")),
    ],
)
@shared_data.needs_shared
def test_mistakes_are_rejected(base: dict[str, Any], mutation: Callable[[dict[str, Any]], None]) -> None:
    event = copy.deepcopy(base)
    mutation(event)
    assert schema_errors(event) != []


# ---------------------------------------------------------------------------------------------------------
# docs/events.md: one valid example per type, so the consumer documentation cannot drift from the schema.

DOCS = REPO_ROOT / "docs" / "events.md"


def _documented_examples() -> dict[str, dict[str, Any]]:
    examples: dict[str, dict[str, Any]] = {}
    examples_part = DOCS.read_text().split("\n## Examples\n", 1)[1]
    for heading, block in re.findall(r"^### `([a-z_.]+)`\n.*?```json\n(.*?)\n```", examples_part, re.S | re.M):
        assert heading not in examples, f"two examples for {heading}"
        examples[heading] = json.loads(block)
    return examples


def test_docs_have_one_valid_example_per_type() -> None:
    examples = _documented_examples()
    assert set(examples) == EVENT_TYPES
    for type_, event in examples.items():
        assert event["type"] == type_
        assert schema_errors(event) == [], type_


def test_docs_type_table_lists_every_type() -> None:
    text = DOCS.read_text()
    for type_ in EVENT_TYPES:
        assert f"| `{type_}` |" in text, type_


def test_the_changed_files_examples_are_valid_ref_changes_of_both_flavors() -> None:
    """docs/events.md "Changed files": each flavor's example ref changes, checked against the schema inside
    a push event (the Examples section's repository.push, carrying them)."""
    part = DOCS.read_text().split("\n## Changed files\n", 1)[1].split("\n## ", 1)[0]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", part, re.S)]
    assert len(blocks) == 2 and "Bitbucket Cloud" in part and "Bitbucket Data Center" in part
    cloud, datacenter = [blocks[0]], blocks[1]
    push = _documented_examples()["repository.push"]
    for flavor, changes in (("cloud", cloud), ("datacenter", datacenter)):
        event = {**push, "schema_minor": 3, "provider": {"id": "p", "flavor": flavor}, "ref_changes": changes}
        assert schema_errors(event) == [], flavor
    reasons = {c["changed_files_reason"] for c in datacenter} - {None}
    assert reasons and all(f"| `{r}` |" in part or f"`{r}`" in part for r in reasons)
    from bitbridge.webhooks import enrich

    for reason in enrich.REASONS:  # every reason the publisher may give is explained
        assert f"`{reason}`" in part, reason
