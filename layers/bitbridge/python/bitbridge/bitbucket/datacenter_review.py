"""Bitbucket Data Center's review data as imports write it (`bitbucket.review` shapes).

Data Center has no listing of a pull request's comments (its `/comments` needs a file `path`): every comment is in
`/activities`, one `COMMENTED` entry per thread with the replies nested under `comment.comments`. So one read of
`/activities` gives both the comments and the activity timeline; `/commits` gives the commits (kept after the
source branch is deleted). Review states come from the pull request pages (`reviewers`, `participants`).

A deleted comment is gone from Data Center (its activity with it): nothing marks it. A comment's `version` counts
its edits (`edited` when above 0). Its anchor names the commit it was written on (`toHash`); it is outdated when
Data Center says the line is gone (`orphaned`), or when that commit is no longer the pull request's source head.
"""

from __future__ import annotations

from typing import Any

from bitbridge.bitbucket import review
from bitbridge.bitbucket.review import Read

ACTIVITIES = "activities"
COMMITS = Read("commits", "pull_requests", (review.PULL_REQUEST_COMMITS,))
_ACTIONS = {"REVIEWED": "changes_requested"}  # the rest: the action in lower case (OPENED -> opened, ...)
_STATUSES = {"APPROVED": review.APPROVED, "NEEDS_WORK": review.CHANGES_REQUESTED}


def reads(wanted: set[str]) -> list[Read]:
    out: list[Read] = []
    from_activities = tuple(e for e in (review.PULL_REQUEST_COMMENTS, review.PULL_REQUEST_ACTIVITY) if e in wanted)
    if from_activities:
        out.append(Read(ACTIVITIES, "pull_requests", from_activities))
    if review.PULL_REQUEST_COMMITS in wanted:
        out.append(COMMITS)
    return out


def path(base: str, read: Read, parent: dict[str, Any]) -> str:
    return f"{base}/pull-requests/{int(parent['id'])}/{read.name}"


def lines(read: Read, values: list[dict[str, Any]], pr: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    number = int(pr["id"])
    if read.name == COMMITS.name:
        return {review.PULL_REQUEST_COMMITS: [_commit(number, c) for c in values]}
    out: dict[str, list[dict[str, Any]]] = {entity: [] for entity in read.entities}
    head = ((pr.get("fromRef") or {}).get("latestCommit")) or None
    for entry in values:
        if review.PULL_REQUEST_ACTIVITY in out:
            out[review.PULL_REQUEST_ACTIVITY].append(_activity(number, entry))
        if review.PULL_REQUEST_COMMENTS in out and is_thread_root(entry):
            out[review.PULL_REQUEST_COMMENTS] += _thread(number, entry["comment"], None, head)
    return out


def reviews(pull_requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pull request's review states: its reviewers, and participants who approved or marked it needs work."""
    out: list[dict[str, Any]] = []
    for pr in pull_requests:
        number = int(pr["id"])
        for role, people in (("reviewer", pr.get("reviewers") or []), ("participant", pr.get("participants") or [])):
            for part in people:
                person, status = person_id(part.get("user")), str(part.get("status") or "UNAPPROVED")
                if person is None or (role == "participant" and status not in _STATUSES):
                    continue  # someone who only commented
                out.append(
                    review.review(
                        number,
                        person=person,
                        role=role,
                        status=_STATUSES.get(status, review.UNAPPROVED),
                        at=None,  # Data Center's participant does not say when
                        commit=part.get("lastReviewedCommit"),
                    )
                )
    return out


# ------------------------------------------------------------------------------------------- people


def is_user(value: dict[str, Any]) -> bool:
    """A Data Center user object (RestApplicationUser): an id, a slug and a display name."""
    return "id" in value and "slug" in value and "displayName" in value


def person_id(user: Any) -> str | None:
    if not isinstance(user, dict) or user.get("id") is None:
        return None
    return str(user["id"])


def person(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": person_id(user),
        "slug": user.get("slug"),
        "name": user.get("name"),
        "display_name": user.get("displayName"),
        "email": user.get("emailAddress"),  # where Data Center shows it
    }


def people_in(value: Any) -> list[dict[str, Any]]:
    """Every user object anywhere in `value` (Bitbucket's JSON), as people records, in document order."""
    out: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if is_user(item):
                out.append(person(item))
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


# ------------------------------------------------------------------------------------------- records


def _path(value: Any) -> str | None:
    """An anchor's path: a string, or a RestPath (`toString`, else its components)."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, dict):
        return str(value.get("toString") or "/".join(value.get("components") or [])) or None
    return None


def is_thread_root(entry: dict[str, Any]) -> bool:
    """A COMMENTED entry that starts a thread (its replies are nested in it, not entries of their own here)."""
    return (
        entry.get("action") == "COMMENTED"
        and entry.get("commentAction", "ADDED") == "ADDED"
        and isinstance(entry.get("comment"), dict)
    )


def _thread(number: int, c: dict[str, Any], reply_to: int | None, head: str | None) -> list[dict[str, Any]]:
    """A comment and its replies (nested under `comments`), depth first: each line names its parent."""
    anchor = None
    at = c.get("anchor")
    if isinstance(at, dict) and at.get("line") is not None:
        written_on = at.get("toHash")
        outdated = bool(at["orphaned"]) if "orphaned" in at else (bool(head and written_on) and written_on != head)
        side = "old" if at.get("fileType") == "FROM" else "new"
        anchor = review.inline(_path(at.get("path")), int(at["line"]), side, written_on, outdated)
    version = int(c.get("version") or 0)
    line = review.comment(
        "pull_request_id",
        number,
        id=int(c["id"]),
        reply_to=reply_to,
        author=person_id(c.get("author")),
        text=str(c.get("text") or ""),
        anchor=anchor,
        created_at=review.from_millis(c.get("createdDate")),
        updated_at=review.from_millis(c.get("updatedDate")),
        edited=version > 0,
        deleted=False,  # Data Center removes a deleted comment
        version=version,
    )
    out = [line]
    for reply in c.get("comments") or []:
        if isinstance(reply, dict):
            out += _thread(number, reply, int(c["id"]), head)
    return out


def _activity(number: int, entry: dict[str, Any]) -> dict[str, Any]:
    action = str(entry.get("action") or "")
    detail: dict[str, Any] = {}
    comment_id = None
    if action == "COMMENTED" and isinstance(entry.get("comment"), dict):
        comment_id = int(entry["comment"]["id"])
        detail["comment_action"] = entry.get("commentAction")
    elif action == "UPDATED":
        detail = {k: entry.get(k) for k in ("previousTitle", "previousDescription") if k in entry}
    elif action == "RESCOPED":
        detail = {"source_commit": entry.get("fromHash"), "previous_source_commit": entry.get("previousFromHash")}
    return review.activity(
        number,
        id=int(entry["id"]) if entry.get("id") is not None else None,
        kind=_ACTIONS.get(action, action.lower()),
        actor=person_id(entry.get("user")),
        at=review.from_millis(entry.get("createdDate")),
        comment_id=comment_id,
        detail=detail,
    )


def _commit(number: int, c: dict[str, Any]) -> dict[str, Any]:
    author = c.get("author") or {}
    return review.commit(
        number,
        id=str(c["id"]),
        message=str(c.get("message") or ""),
        person=person_id(author) if is_user(author) else None,
        name=author.get("name"),
        email=author.get("emailAddress"),
        date=review.from_millis(c.get("authorTimestamp")),
    )
