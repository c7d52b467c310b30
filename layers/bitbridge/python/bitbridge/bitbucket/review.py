"""The review of a repository as an import writes it, the same for both flavors: what is nested under each pull
request (comments, activity, review states, commits) and Cloud issue (comments), and the people every entity
names. The flavors read Bitbucket (`cloud_review`, `datacenter_review`); the shapes are here, so a product
reads one format whichever Bitbucket it came from (docs/imports.md, "Review data").

Each record names people by their `people.jsonl` id: Bitbucket's own stable id, the one events carry in
`actor.id` (Cloud: the account's `uuid` with braces, else its `account_id`; Data Center: the numeric user id
as a string). Timestamps are RFC 3339 UTC with microseconds (`repos.iso_utc`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bitbridge.bitbucket.repos import iso_utc

#: Nested entities (their snapshot folders), each under its parent entity and turned on by an import option.
PULL_REQUEST_COMMENTS = "pull_request_comments"
PULL_REQUEST_ACTIVITY = "pull_request_activity"
PULL_REQUEST_REVIEWS = "pull_request_reviews"  # from the pull request pages themselves: no call of its own
PULL_REQUEST_COMMITS = "pull_request_commits"
ISSUE_COMMENTS = "issue_comments"
OPTION_OF = {
    PULL_REQUEST_COMMENTS: "comments",
    ISSUE_COMMENTS: "comments",
    PULL_REQUEST_ACTIVITY: "activity",
    PULL_REQUEST_REVIEWS: "activity",
    PULL_REQUEST_COMMITS: "commits",
}
#: The import steps that read nested entities, by the entity whose pages hold their parents.
NESTED_STEPS = {"pull_request_details": "pull_requests", "issue_details": "issues"}

APPROVED, CHANGES_REQUESTED, UNAPPROVED = "APPROVED", "CHANGES_REQUESTED", "UNAPPROVED"
#: A Cloud comment is stamped `updated_on` a few milliseconds after `created_on` when it is made (Atlassian's
#: own example in the /activity operation: .039 then .055): later than this counts as an edit.
EDIT_AFTER_SECONDS = 1.0


def wanted_entities(options: dict[str, Any]) -> set[str]:
    """The nested entities a job's options turn on."""
    return {entity for entity, option in OPTION_OF.items() if options.get(option)}


@dataclass(frozen=True)
class Read:
    """One Bitbucket listing an import makes per parent (a pull request or an issue), and the entities its
    pages give (Data Center's /activities gives comments and activity at once)."""

    name: str
    parent: str  # the entity whose pages hold the parents: pull_requests | issues
    entities: tuple[str, ...]


@dataclass(frozen=True)
class NestedPage:
    """One page of a nested read: lines by entity (in Bitbucket's order), the people they name, the next cursor."""

    lines: dict[str, list[dict[str, Any]]]
    people: list[dict[str, Any]]
    next: str | None


@dataclass(frozen=True)
class Discussed:
    """A pull request comment as the reconciler compares it: Bitbucket's REST object (the payloads' comment
    object), the comment it replies to, when it was made (RFC 3339 UTC) and whether it is deleted (Cloud keeps
    deleted comments, marked; Data Center removes them)."""

    raw: dict[str, Any]
    parent_id: int | None
    created_at: str | None
    deleted: bool


@dataclass(frozen=True)
class Standing:
    """A person's review status on a pull request, as the pull request listing shows it: APPROVED,
    CHANGES_REQUESTED or UNAPPROVED, and the person (Bitbucket's REST user object)."""

    user: dict[str, Any]
    status: str


# ------------------------------------------------------------------------------------------- records


def inline(path: str | None, line: int | None, side: str, commit: str | None, outdated: bool | None) -> dict[str, Any]:
    """Where a comment sits: `side` "new" (the line in the source's version of the file) or "old"."""
    return {"path": path, "line": line, "side": side, "commit": commit, "outdated": outdated}


def comment(
    parent_key: str,
    parent_id: int,
    *,
    id: int,
    reply_to: int | None,
    author: str | None,
    text: str,
    anchor: dict[str, Any] | None,
    created_at: str | None,
    updated_at: str | None,
    edited: bool,
    deleted: bool,
    version: int | None,
) -> dict[str, Any]:
    return {
        parent_key: parent_id,
        "id": id,
        "parent_id": reply_to,
        "author": author,
        "text": text,
        "inline": anchor,
        "created_at": created_at,
        "updated_at": updated_at,
        "edited": edited,
        "deleted": deleted,
        "version": version,
    }


def activity(
    pull_request_id: int,
    *,
    id: int | None,
    kind: str,
    actor: str | None,
    at: str | None,
    comment_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "pull_request_id": pull_request_id,
        "id": id,
        "kind": kind,
        "actor": actor,
        "at": at,
        "comment_id": comment_id,
        "detail": detail or {},
    }


def review(
    pull_request_id: int, *, person: str, role: str, status: str, at: str | None, commit: str | None
) -> dict[str, Any]:
    return {
        "pull_request_id": pull_request_id,
        "person": person,
        "role": role,
        "status": status,
        "at": at,
        "commit": commit,
    }


def commit(
    pull_request_id: int,
    *,
    id: str,
    message: str,
    person: str | None,
    name: str | None,
    email: str | None,
    date: str | None,
) -> dict[str, Any]:
    return {
        "pull_request_id": pull_request_id,
        "id": id,
        "message": message,
        "author": {"person": person, "name": name, "email": email},
        "date": date,
    }


# ------------------------------------------------------------------------------------------- time


def from_iso(value: Any) -> str | None:
    """Cloud's ISO 8601 timestamps (any offset) as RFC 3339 UTC."""
    if not value:
        return None
    return iso_utc(datetime.fromisoformat(str(value)))


def from_millis(value: Any) -> str | None:
    """Data Center's epoch milliseconds as RFC 3339 UTC."""
    if value is None:
        return None
    return iso_utc(datetime.fromtimestamp(int(value) / 1000, UTC))


def edited_after(created: Any, updated: Any) -> bool:
    """Whether Cloud's `updated_on` is later than its `created_on` by more than it stamps a new comment."""
    if not created or not updated:
        return False
    delta = datetime.fromisoformat(str(updated)) - datetime.fromisoformat(str(created))
    return delta.total_seconds() > EDIT_AFTER_SECONDS


# ------------------------------------------------------------------------------------------- people


def merge_people(known: dict[str, dict[str, Any]], found: list[dict[str, Any]]) -> bool:
    """Add the people `found` to `known` (by id); a field a later sighting knows and an earlier one did not is
    filled in (a trimmed listing names fewer fields). True when anything changed."""
    changed = False
    for person in found:
        held = known.get(person["id"])
        if held is None:
            known[person["id"]] = dict(person)
            changed = True
            continue
        for key, value in person.items():
            if value is not None and held.get(key) is None:
                held[key] = value
                changed = True
    return changed
