"""Bitbucket Cloud's review data as imports write it (`bitbucket.review` shapes).

Reads per pull request: `/comments` (every comment, replies and deleted ones included, oldest first),
`/activity` (newest first: comments, updates, the approvals and change requests that stand) and `/commits`
(empty once the source branch is gone, as Atlassian documents); per issue `/comments`. Review states come from
the pull request pages themselves (`participants`, asked for with `fields=+values.participants`).

Cloud does not say which commit a comment was written on, and its comment listing does not say whether an
inline comment is outdated (the activity's comment entries do: `detail.outdated`): both are null there. It does
not mark an edit either: `edited` is an `updated_on` more than a second after `created_on`.
"""

from __future__ import annotations

from typing import Any

from bitbridge.bitbucket import review
from bitbridge.bitbucket.repos import Fetch, q, split_full_name
from bitbridge.bitbucket.review import NestedPage, Read

PAGELEN = 100  # Cloud's global maximum
ACTIVITY_PAGELEN = 50  # the activity log pages at most 50 (its example pages 20)
USER_TYPES = frozenset({"user", "team", "app_user"})

COMMENTS = Read("comments", "pull_requests", (review.PULL_REQUEST_COMMENTS,))
ACTIVITY = Read("activity", "pull_requests", (review.PULL_REQUEST_ACTIVITY,))
COMMITS = Read("commits", "pull_requests", (review.PULL_REQUEST_COMMITS,))
ISSUE_COMMENTS = Read("issue_comments", "issues", (review.ISSUE_COMMENTS,))
_STATES = {"approved": review.APPROVED, "changes_requested": review.CHANGES_REQUESTED}
_CLOSED = {"MERGED": "merged", "DECLINED": "declined", "SUPERSEDED": "superseded"}


def reads(wanted: set[str], has_issues: bool) -> list[Read]:
    out = [read for read in (COMMENTS, ACTIVITY, COMMITS) if read.entities[0] in wanted]
    if has_issues and review.ISSUE_COMMENTS in wanted:
        out.append(ISSUE_COMMENTS)
    return out


def first(api: str, full_name: str, read: Read, parent: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    owner, slug = split_full_name(full_name)
    base = f"{api}/repositories/{q(owner)}/{q(slug)}"
    if read is ISSUE_COMMENTS:
        return f"{base}/issues/{int(parent['id'])}/comments", {"pagelen": PAGELEN}
    url = f"{base}/pullrequests/{int(parent['id'])}/{read.name}"
    return url, {"pagelen": ACTIVITY_PAGELEN if read is ACTIVITY else PAGELEN}


def page(fetch: Fetch, api: str, full_name: str, read: Read, parent: dict[str, Any], cursor: str | None) -> NestedPage:
    url, params = first(api, full_name, read, parent)
    body = fetch(url, params) if cursor is None else fetch(cursor, None)  # `next` carries every parameter
    values = list(body.get("values", []))
    number = int(parent["id"])
    if read is COMMENTS:
        lines = [_comment("pull_request_id", number, c) for c in values]
    elif read is ISSUE_COMMENTS:
        lines = [_comment("issue_id", number, c) for c in values]
    elif read is ACTIVITY:
        lines = [line for line in (_activity(number, a, parent) for a in values) if line is not None]
    else:
        lines = [_commit(number, c) for c in values]
    return NestedPage({read.entities[0]: lines}, people_in(values), body.get("next"))


def reviews(pull_requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pull request's review states: its reviewers, and whoever else approved or requested changes."""
    out: list[dict[str, Any]] = []
    for pr in pull_requests:
        number, seen = int(pr["id"]), set()
        for part in pr.get("participants") or []:
            person, state = person_id(part.get("user")), part.get("state")
            role = str(part.get("role") or "PARTICIPANT").lower()
            if person is None or (role != "reviewer" and state not in _STATES):
                continue  # someone who only commented
            seen.add(person)
            status = _STATES.get(str(state), review.UNAPPROVED)
            at = review.from_iso(part.get("participated_on")) if state in _STATES else None
            out.append(review.review(number, person=person, role=role, status=status, at=at, commit=None))
        for account in pr.get("reviewers") or []:
            person = person_id(account)
            if person is not None and person not in seen:
                seen.add(person)
                out.append(
                    review.review(
                        number, person=person, role="reviewer", status=review.UNAPPROVED, at=None, commit=None
                    )
                )
    return out


# ------------------------------------------------------------------------------------------- people


def person_id(account: Any) -> str | None:
    if not isinstance(account, dict):
        return None
    found = account.get("uuid") or account.get("account_id")
    return str(found) if found else None


def person(account: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": person_id(account),
        "uuid": account.get("uuid"),
        "account_id": account.get("account_id"),
        "nickname": account.get("nickname"),
        "display_name": account.get("display_name"),
    }


def people_in(value: Any) -> list[dict[str, Any]]:
    """Every account object anywhere in `value` (Bitbucket's JSON), as people records, in document order."""
    out: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") in USER_TYPES and person_id(item):
                out.append(person(item))
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


# ------------------------------------------------------------------------------------------- records


def _comment(parent_key: str, number: int, c: dict[str, Any]) -> dict[str, Any]:
    at = c.get("inline")
    anchor = None
    if isinstance(at, dict):
        new_side = at.get("to") is not None
        anchor = review.inline(
            at.get("path"), at.get("to") if new_side else at.get("from"), "new" if new_side else "old", None, None
        )
    return review.comment(
        parent_key,
        number,
        id=int(c["id"]),
        reply_to=int(c["parent"]["id"]) if isinstance(c.get("parent"), dict) else None,
        author=person_id(c.get("user")),
        text=str((c.get("content") or {}).get("raw") or ""),
        anchor=anchor,
        created_at=review.from_iso(c.get("created_on")),
        updated_at=review.from_iso(c.get("updated_on")),
        edited=review.edited_after(c.get("created_on"), c.get("updated_on")),
        deleted=bool(c.get("deleted")),
        version=None,
    )


def _activity(number: int, entry: dict[str, Any], pr: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(entry.get("comment"), dict):
        c = entry["comment"]
        at = c.get("inline")
        detail = {"outdated": at.get("outdated")} if isinstance(at, dict) and "outdated" in at else {}
        return review.activity(
            number,
            id=None,
            kind="commented",
            actor=person_id(c.get("user")),
            at=review.from_iso(c.get("created_on")),
            comment_id=int(c["id"]),
            detail=detail,
        )
    for key, kind in (("approval", "approved"), ("changes_request", "changes_requested")):
        if isinstance(entry.get(key), dict):
            given = entry[key]
            return review.activity(
                number, id=None, kind=kind, actor=person_id(given.get("user")), at=review.from_iso(given.get("date"))
            )
    update = entry.get("update")
    if not isinstance(update, dict):
        return None  # an entry of a kind the v2.0 log does not document (tasks, attachments)
    state = str(update.get("state") or "OPEN")
    at = review.from_iso(update.get("date"))
    opened = state == "OPEN" and at is not None and at == review.from_iso(pr.get("created_on"))
    kind = _CLOSED.get(state, "opened" if opened else "updated")
    source = ((update.get("source") or {}).get("commit") or {}).get("hash")
    detail = {"state": state, "title": update.get("title"), "source_commit": source}
    actor = person_id(update.get("author")) if kind == "opened" else None  # Cloud names the author, not the actor
    return review.activity(number, id=None, kind=kind, actor=actor, at=at, detail=detail)


def _commit(number: int, c: dict[str, Any]) -> dict[str, Any]:
    author = c.get("author") or {}
    raw = str(author.get("raw") or "")
    name, _, email = raw.partition(" <")
    return review.commit(
        number,
        id=str(c["hash"]),
        message=str(c.get("message") or ""),
        person=person_id(author.get("user")),
        name=name or None,
        email=email.rstrip(">") or None,
        date=review.from_iso(c.get("date")),
    )
