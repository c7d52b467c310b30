"""Turn a Bitbucket Cloud or Data Center webhook payload into a bitbridge event (schema v1).

One function, :func:`normalise`, driven by one table per flavor (``_RULES``): each event key bitbridge
handles maps to an event type, the sections that type carries, where the repository sits in the payload,
and — for pull request lifecycle and review keys — the state the key itself implies. Extraction is done
by one small adapter per flavor (:class:`_Cloud`, :class:`_DataCenter`) with the same methods.

The event's shape is fixed: every top-level key is always present, ``null`` (or ``[]`` for
``ref_changes``) when it does not apply. The JSON Schema is ``bitbridge/schemas/event-v1.json``; the consumer
documentation is ``docs/events.md``.

Standard library only, and no ``typing``/``dataclasses`` at run time: the receiver may import this module
for :data:`HANDLED_EVENT_KEYS` on its cold path. Nothing from the request's headers (signature, secret,
credentials) is an input here, and error messages name the missing field, never a payload value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bitbridge.bitbucket.event_keys import SUBSCRIBED_EVENTS
from bitbridge.change_ids import (
    PR_LIFECYCLE,
    ItemSeen,
    PrSeen,
    RefMove,
    combined,
    comment_key,
    comment_value,
    mirror_change_id,
    ref_key,
    review_key,
    section_value,
    stamp,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - annotations only
    from typing import Any

__all__ = [
    "EVENT_TYPES",
    "HANDLED_EVENT_KEYS",
    "ITEM_TYPES",
    "RETIRED_EVENT_TYPES",
    "REVIEW_TYPES",
    "SCHEMA_MINOR",
    "SCHEMA_VERSION",
    "SUBSCRIBED_EVENTS",
    "TEXT_LIMIT",
    "MalformedPayload",
    "UnhandledEvent",
    "comment_section",
    "comment_state",
    "event_type",
    "ledger_reports",
    "normalise",
    "review_section",
    "set_change_ids",
    "tracked",
]

SCHEMA_VERSION = "1"
#: Additions within version 1 (new optional fields and types; docs/events.md "Versioning").
#: Minor 1: push ``forced``/``truncated``, repository ``private``, PR source tags, ``pull_request.updated``
#: ``changes``, ``repository.mirror_synchronized``. Minor 2: ``origin``, ``change_id`` (event and ref
#: change), ``subscription.unhealthy``. Minor 3 (every addition of this round shares it): ``mirror``; a change
#: id names one recorded transition; ``changed_files`` & co. and a push's ``commits``, added by the publisher
#: (``bitbridge.webhooks.enrich``); write-back: ``commit_status.created`` / ``updated`` and
#: ``pull_request.review.approved`` / ``unapproved`` / ``changes_requested``, one shape for both flavors (retiring
#: ``repository.commit_status``, ``pull_request.approved`` / ``unapproved`` / ``changes_requested``), comment
#: ``inline.side``.
SCHEMA_MINOR = 3
#: Where an event came from: a webhook delivery, or the reconciler backfilling a missed change.
ORIGIN_WEBHOOK = "webhook"
ORIGIN_RECONCILIATION = "reconciliation"
#: Comment text longer than this (in characters) is cut and flagged ``truncated``: an EventBridge entry is
#: limited to 256 KB and the raw delivery stays available for replay.
TEXT_LIMIT = 16_000


class UnhandledEvent(Exception):
    """The event key is not one bitbridge turns into an event (the receiver records it as ignored)."""

    def __init__(self, flavor: str, event_key: str) -> None:
        self.flavor = flavor
        self.event_key = event_key
        super().__init__(f"{flavor} event key {str(event_key)[:80]!r} is not handled")


class MalformedPayload(ValueError):
    """The payload lacks (or mistypes) a field its event key requires. The message names the field only."""

    def __init__(self, field: str, problem: str = "is missing") -> None:
        self.field = field
        super().__init__(f"payload field {field} {problem}")


# --------------------------------------------------------------------------------------------------------
# The mapping table.

# Sections an event type carries besides repository and actor (always present).
PUSH = "ref_changes"
FORK = "fork"
CHANGES = "changes"
COMMENT = "comment"
COMMIT_STATUS = "commit_status"
PULL_REQUEST = "pull_request"
REVIEW = "review"
ISSUE = "issue"
MIRROR = "mirror"

PR_STATES = frozenset({"OPEN", "MERGED", "DECLINED", "SUPERSEDED", "DELETED"})
REVIEW_STATUSES = frozenset({"APPROVED", "UNAPPROVED", "CHANGES_REQUESTED"})
ISSUE_STATES = frozenset({"new", "open", "on hold", "resolved", "duplicate", "invalid", "wontfix", "closed"})
ISSUE_KINDS = frozenset({"bug", "enhancement", "proposal", "task"})


class _Rule:
    """How one event key becomes an event."""

    __slots__ = (
        "fork_at",
        "occurred_at",
        "pr_state",
        "repository_at",
        "review_status",
        "reviewer_at",
        "sections",
        "type",
    )

    def __init__(
        self,
        type: str,
        *sections: str,
        repository_at: tuple[str, ...] = ("repository",),
        fork_at: tuple[str, ...] = ("fork",),
        pr_state: str | None = None,
        review_status: str | None = None,
        reviewer_at: tuple[str, ...] = (),
        occurred_at: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        self.type = type
        self.sections = frozenset(sections)
        self.repository_at = repository_at  # where the event's repository sits in the payload
        self.fork_at = fork_at  # where the new fork sits (repository.forked)
        self.pr_state = pr_state  # state implied by the key, wins over the payload's
        self.review_status = review_status  # verdict implied by the key (review events)
        self.reviewer_at = reviewer_at  # Cloud: who reviewed (falls back to the actor)
        self.occurred_at = occurred_at  # Cloud: timestamp paths, first present wins (DC: top-level "date")


_PR_TIMES = (("pullrequest", "updated_on"), ("pullrequest", "created_on"))
_COMMENT_TIMES = (("comment", "updated_on"), ("comment", "created_on"))
_PR_COMMENT = (PULL_REQUEST, COMMENT)
_DC_PR_REPO = ("pullRequest", "toRef", "repository")

_RULES: dict[str, dict[str, _Rule]] = {
    "cloud": {
        "repo:push": _Rule("repository.push", PUSH),
        "repo:updated": _Rule("repository.updated", CHANGES),
        "repo:fork": _Rule("repository.forked", FORK),
        "repo:commit_comment_created": _Rule(
            "repository.comment.created", COMMENT, occurred_at=(("comment", "created_on"),)
        ),
        # Write-back (issue 26): statuses and reviews under their own names.
        "repo:commit_status_created": _Rule(
            "commit_status.created", COMMIT_STATUS, occurred_at=(("commit_status", "updated_on"),)
        ),
        "repo:commit_status_updated": _Rule(
            "commit_status.updated", COMMIT_STATUS, occurred_at=(("commit_status", "updated_on"),)
        ),
        "pullrequest:created": _Rule(
            "pull_request.opened", PULL_REQUEST, pr_state="OPEN", occurred_at=(("pullrequest", "created_on"),)
        ),
        "pullrequest:updated": _Rule("pull_request.updated", PULL_REQUEST, occurred_at=_PR_TIMES),
        "pullrequest:fulfilled": _Rule("pull_request.merged", PULL_REQUEST, pr_state="MERGED", occurred_at=_PR_TIMES),
        "pullrequest:rejected": _Rule(
            "pull_request.declined", PULL_REQUEST, pr_state="DECLINED", occurred_at=_PR_TIMES
        ),
        "pullrequest:approved": _Rule(
            "pull_request.review.approved",
            PULL_REQUEST,
            REVIEW,
            review_status="APPROVED",
            reviewer_at=("approval", "user"),
            occurred_at=(("approval", "date"),),
        ),
        "pullrequest:unapproved": _Rule(
            "pull_request.review.unapproved",
            PULL_REQUEST,
            REVIEW,
            review_status="UNAPPROVED",
            reviewer_at=("approval", "user"),
            occurred_at=(("approval", "date"),),
        ),
        "pullrequest:changes_request_created": _Rule(
            "pull_request.review.changes_requested",
            PULL_REQUEST,
            REVIEW,
            review_status="CHANGES_REQUESTED",
            reviewer_at=("changes_request", "user"),
            occurred_at=(("changes_request", "date"),),
        ),
        "pullrequest:changes_request_removed": _Rule(
            "pull_request.review.unapproved",
            PULL_REQUEST,
            REVIEW,
            review_status="UNAPPROVED",
            reviewer_at=("changes_request", "user"),
            occurred_at=(("changes_request", "date"),),
        ),
        "pullrequest:comment_created": _Rule(
            "pull_request.comment.created", *_PR_COMMENT, occurred_at=(("comment", "created_on"),)
        ),
        "pullrequest:comment_updated": _Rule("pull_request.comment.updated", *_PR_COMMENT, occurred_at=_COMMENT_TIMES),
        "pullrequest:comment_deleted": _Rule("pull_request.comment.deleted", *_PR_COMMENT, occurred_at=_COMMENT_TIMES),
        "issue:created": _Rule("issue.created", ISSUE, occurred_at=(("issue", "created_on"),)),
        "issue:updated": _Rule("issue.updated", ISSUE, occurred_at=(("issue", "updated_on"), ("issue", "created_on"))),
        "issue:comment_created": _Rule(
            "issue.comment.created", ISSUE, COMMENT, occurred_at=(("comment", "created_on"),)
        ),
    },
    "datacenter": {
        "repo:refs_changed": _Rule("repository.push", PUSH),
        # A mirror finished syncing: its ref changes, as for a push (not subscribed by default).
        "mirror:repo_synchronized": _Rule("repository.mirror_synchronized", PUSH, MIRROR),
        "repo:modified": _Rule("repository.updated", CHANGES, repository_at=("new",)),
        # The payload's repository is the new fork; the hook sits on its origin.
        "repo:forked": _Rule(
            "repository.forked", FORK, repository_at=("repository", "origin"), fork_at=("repository",)
        ),
        "repo:comment:added": _Rule("repository.comment.created", COMMENT),
        "repo:comment:edited": _Rule("repository.comment.updated", COMMENT),
        "repo:comment:deleted": _Rule("repository.comment.deleted", COMMENT),
        "pr:opened": _Rule("pull_request.opened", PULL_REQUEST, repository_at=_DC_PR_REPO, pr_state="OPEN"),
        "pr:from_ref_updated": _Rule("pull_request.updated", PULL_REQUEST, CHANGES, repository_at=_DC_PR_REPO),
        "pr:modified": _Rule("pull_request.updated", PULL_REQUEST, CHANGES, repository_at=_DC_PR_REPO),
        "pr:merged": _Rule("pull_request.merged", PULL_REQUEST, repository_at=_DC_PR_REPO, pr_state="MERGED"),
        "pr:declined": _Rule("pull_request.declined", PULL_REQUEST, repository_at=_DC_PR_REPO, pr_state="DECLINED"),
        "pr:deleted": _Rule("pull_request.deleted", PULL_REQUEST, repository_at=_DC_PR_REPO, pr_state="DELETED"),
        "pr:reviewer:approved": _Rule(
            "pull_request.review.approved", PULL_REQUEST, REVIEW, repository_at=_DC_PR_REPO, review_status="APPROVED"
        ),
        "pr:reviewer:unapproved": _Rule(
            "pull_request.review.unapproved",
            PULL_REQUEST,
            REVIEW,
            repository_at=_DC_PR_REPO,
            review_status="UNAPPROVED",
        ),
        "pr:reviewer:needs_work": _Rule(
            "pull_request.review.changes_requested",
            PULL_REQUEST,
            REVIEW,
            repository_at=_DC_PR_REPO,
            review_status="CHANGES_REQUESTED",
        ),
        "pr:reviewer:changes_requested": _Rule(
            "pull_request.review.changes_requested",
            PULL_REQUEST,
            REVIEW,
            repository_at=_DC_PR_REPO,
            review_status="CHANGES_REQUESTED",
        ),
        "pr:reviewer:updated": _Rule("pull_request.reviewers_updated", PULL_REQUEST, REVIEW, repository_at=_DC_PR_REPO),
        "pr:comment:added": _Rule("pull_request.comment.created", *_PR_COMMENT, repository_at=_DC_PR_REPO),
        "pr:comment:edited": _Rule("pull_request.comment.updated", *_PR_COMMENT, repository_at=_DC_PR_REPO),
        "pr:comment:deleted": _Rule("pull_request.comment.deleted", *_PR_COMMENT, repository_at=_DC_PR_REPO),
    },
}

#: The X-Event-Key values bitbridge turns into events, per flavor. Anything else is recorded as ignored.
HANDLED_EVENT_KEYS: dict[str, frozenset[str]] = {flavor: frozenset(rules) for flavor, rules in _RULES.items()}

#: Every event type bitbridge emits (the schema's enum).
EVENT_TYPES: frozenset[str] = frozenset(rule.type for rules in _RULES.values() for rule in rules.values())
#: Types minor 3 no longer emits (their deliveries are `commit_status.*` and `pull_request.review.*` now); the
#: schema keeps them so events of earlier minors still validate.
RETIRED_EVENT_TYPES = frozenset(
    {"repository.commit_status", "pull_request.approved", "pull_request.unapproved", "pull_request.changes_requested"}
)


# --------------------------------------------------------------------------------------------------------
# Small, strict accessors. ``where`` is the dotted path of ``obj`` in the payload, for error messages.

_HASH = re.compile(r"[0-9a-f]{7,64}")
_URL = re.compile(r"(https?|ssh)://\S+")
_STATE = re.compile(r"[A-Z_]{1,64}")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
)


def _path(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _opt(obj: Any, *keys: str) -> Any:
    """The value at ``keys`` below ``obj``, or None when any step is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _req(obj: Any, key: str, where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None or value == "":
        raise MalformedPayload(_path(where, key))
    return value


def _req_dict(obj: Any, key: str, where: str) -> dict[str, Any]:
    value = _req(obj, key, where)
    if not isinstance(value, dict):
        raise MalformedPayload(_path(where, key), "is not an object")
    return value


def _req_list(obj: Any, key: str, where: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise MalformedPayload(_path(where, key), "is missing" if value is None else "is not a list")
    return value


def _req_str(obj: Any, key: str, where: str) -> str:
    value = _req(obj, key, where)
    if not isinstance(value, str):
        raise MalformedPayload(_path(where, key), "is not a string")
    return value


def _req_int(obj: Any, key: str, where: str) -> int:
    value = _req(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedPayload(_path(where, key), "is not a non-negative integer")
    return value


def _req_id(obj: Any, key: str, where: str) -> str:
    value = _req(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedPayload(_path(where, key), "is not an identifier")
    return str(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _url(value: Any) -> str | None:
    """An absolute http(s) or ssh URL, else None (the schema promises nothing looser)."""
    return value if isinstance(value, str) and _URL.fullmatch(value) else None


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hash(value: Any, where: str) -> str | None:
    """A commit hash, lowercased; None for null, empty or all-zero (Data Center's "no commit")."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HASH.fullmatch(value.lower()):
        raise MalformedPayload(where, "is not a commit hash")
    value = value.lower()
    return None if value.strip("0") == "" else value


def _timestamp(value: Any) -> str | None:
    """An ISO-8601 timestamp as UTC ``...Z``; None when absent or unparseable (the caller falls back)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError):
        return None


def _text(value: Any) -> tuple[str | None, bool]:
    if not isinstance(value, str):
        return None, False
    if len(value) > TEXT_LIMIT:
        return value[:TEXT_LIMIT], True
    return value, False


def _clone_links(links: Any) -> list[dict[str, str]]:
    clone = links.get("clone") if isinstance(links, dict) else None
    result = []
    for link in clone if isinstance(clone, list) else ():
        href, name = _opt(link, "href"), _opt(link, "name")
        if _url(href):
            result.append({"name": name if isinstance(name, str) and name else "unknown", "href": href})
    return result


def _first_href(value: Any) -> str | None:
    """Data Center links are lists of ``{"href"}``: the first one."""
    if isinstance(value, list) and value:
        return _url(_opt(value[0], "href"))
    return None


def _commit_state(value: str) -> str:
    state = value.upper()
    if not _STATE.fullmatch(state):
        raise MalformedPayload("commit_status.state", "is not a build state")
    return state


def _ref_change(
    name: str,
    kind: str,
    old: str | None,
    new: str | None,
    where: str,
    *,
    forced: bool | None = None,
    truncated: bool | None = None,
) -> dict[str, Any]:
    if old is None and new is None:
        raise MalformedPayload(where, "moves no commit")
    # forced / truncated: Cloud says whether history was rewritten and whether its commit list was cut;
    # Data Center does not (null).
    return {"name": name, "kind": kind, "old": old, "new": new, "forced": forced, "truncated": truncated}


def _kind(value: Any, where: str) -> str:
    kind = value.lower() if isinstance(value, str) else None
    if kind in ("branch", "named_branch", "bookmark"):
        return "branch"
    if kind in ("tag", "annotated_tag"):
        return "tag"
    raise MalformedPayload(where, "is missing" if value is None else "is not branch or tag")


# --------------------------------------------------------------------------------------------------------
# Per-flavor adapters. Same method names; each returns event v1 fragments.


class _Cloud:
    flavor = "cloud"

    @staticmethod
    def repository(repo: Any, where: str) -> dict[str, Any]:
        if not isinstance(repo, dict):
            raise MalformedPayload(where, "is missing" if repo is None else "is not an object")
        repo_id = _req_str(repo, "uuid", where)
        full_name = _str_or_none(repo.get("full_name"))
        workspace = _str_or_none(_opt(repo, "workspace", "slug"))
        slug = _str_or_none(repo.get("slug"))
        if full_name and "/" in full_name:
            # full_name is the repository's current owner/slug; workspace.slug can lag behind a transfer
            # or rename, so full_name wins when they differ.
            owner, _, name_part = full_name.partition("/")
            workspace = owner or workspace
            slug = slug or name_part
        if not workspace or not slug:
            raise MalformedPayload(_path(where, "full_name"))
        links = repo.get("links")
        return {
            "id": repo_id,
            "workspace": workspace,
            "slug": slug,
            "full_name": f"{workspace}/{slug}",
            "name": _str_or_none(repo.get("name")) or slug,
            "links": {"html": _url(_opt(links, "html", "href")), "clone": _clone_links(links)},
            "private": _bool_or_none(repo.get("is_private")),
        }

    @staticmethod
    def actor(user: Any) -> dict[str, Any] | None:
        if not isinstance(user, dict):
            return None
        user_id = _str_or_none(user.get("uuid")) or _str_or_none(user.get("account_id"))
        username = _str_or_none(user.get("nickname")) or _str_or_none(user.get("username"))
        if not user_id:
            return None
        return {
            "id": user_id,
            "name": _str_or_none(user.get("display_name")) or username,
            "username": username,
        }

    @staticmethod
    def ref_changes(payload: dict[str, Any]) -> list[dict[str, Any]]:
        changes = _req_list(_req_dict(payload, "push", ""), "changes", "push")
        result = []
        for index, change in enumerate(changes):
            where = _path("push.changes", index)
            new, old = _opt(change, "new"), _opt(change, "old")
            ref = new if isinstance(new, dict) else old
            if not isinstance(ref, dict):
                raise MalformedPayload(_path(where, "new"))
            side = "new" if ref is new else "old"
            result.append(
                _ref_change(
                    _req_str(ref, "name", _path(where, side)),
                    _kind(ref.get("type"), _path(where, f"{side}.type")),
                    _Cloud._target(old, _path(where, "old")),
                    _Cloud._target(new, _path(where, "new")),
                    where,
                    forced=_bool_or_none(change.get("forced")),
                    truncated=_bool_or_none(change.get("truncated")),
                )
            )
        if not result:
            raise MalformedPayload("push.changes", "is empty")
        return result

    @staticmethod
    def _target(ref: Any, where: str) -> str | None:
        if not isinstance(ref, dict):
            return None
        target = _req_dict(ref, "target", where)
        return _hash(_req(target, "hash", f"{where}.target"), f"{where}.target.hash")

    @staticmethod
    def ref_idents(payload: dict[str, Any], changes: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
        """What the ledger records of each ref change: Cloud names the commit on both paths."""
        return [(c["old"], c["new"]) for c in changes]

    @staticmethod
    def pr_stamp(payload: dict[str, Any]) -> str | None:
        return stamp(_opt(payload, "pullrequest", "updated_on"))

    @staticmethod
    def mirror(payload: dict[str, Any]) -> None:
        return None  # Cloud has no mirror events

    @staticmethod
    def _endpoint(end: Any, where: str) -> dict[str, Any]:
        repo = _opt(end, "repository")
        branch = _str_or_none(_opt(end, "branch", "name"))
        return {
            "branch": branch,
            "tag": None,
            "ref": f"refs/heads/{branch}" if branch else None,
            "commit": _hash(_opt(end, "commit", "hash"), f"{where}.commit.hash"),
            "repository": _Cloud.repository(repo, f"{where}.repository") if repo is not None else None,
        }

    @staticmethod
    def pull_request(payload: dict[str, Any], rule: _Rule) -> dict[str, Any]:
        pr = _req_dict(payload, "pullrequest", "")
        title = pr.get("title")
        if not isinstance(title, str):
            raise MalformedPayload("pullrequest.title")
        state = str(pr.get("state") or "").upper()
        return {
            "id": _req_int(pr, "id", "pullrequest"),
            "title": title,
            "state": rule.pr_state or (state if state in PR_STATES else None),
            "source": _Cloud._endpoint(_req_dict(pr, "source", "pullrequest"), "pullrequest.source"),
            "destination": _Cloud._endpoint(_req_dict(pr, "destination", "pullrequest"), "pullrequest.destination"),
            "author": _Cloud.actor(pr.get("author")),
            "reviewers": [a for a in map(_Cloud.actor, _list(pr.get("reviewers"))) if a is not None],
            "merge_commit": _hash(_opt(pr, "merge_commit", "hash"), "pullrequest.merge_commit.hash"),
            "url": _url(_opt(pr, "links", "html", "href")),
        }

    @staticmethod
    def comment(payload: dict[str, Any]) -> dict[str, Any]:
        comment = _req_dict(payload, "comment", "")
        text, truncated = _text(_opt(comment, "content", "raw"))
        inline = comment.get("inline")
        path = _str_or_none(_opt(inline, "path"))
        new_line = _int_or_none(_opt(inline, "to"))
        line = new_line or _int_or_none(_opt(inline, "from"))
        return {
            "id": _req_int(comment, "id", "comment"),
            "text": text,
            "truncated": truncated,
            "author": _Cloud.actor(comment.get("user")),
            "parent_id": _int_or_none(_opt(comment, "parent", "id")),
            "inline": {"path": path, "line": line, "side": "new" if new_line else "old"} if path else None,
            "commit": _hash(_opt(payload, "commit", "hash"), "commit.hash"),
            "url": _url(_opt(comment, "links", "html", "href")),
        }

    @staticmethod
    def comment_state(comment: dict[str, Any], deleted: bool) -> str:
        """What the ledger records of a comment (payload or REST: the same object): its update time."""
        return comment_value(None, stamp(comment.get("updated_on")), deleted or comment.get("deleted") is True)

    @staticmethod
    def review(payload: dict[str, Any], rule: _Rule, actor: dict[str, Any] | None) -> dict[str, Any]:
        reviewer = _Cloud.actor(_opt(payload, *rule.reviewer_at)) if rule.reviewer_at else None
        return {
            "reviewer": reviewer or actor,
            "status": rule.review_status,
            "previous_status": None,
            "added": [],
            "removed": [],
        }

    @staticmethod
    def issue(payload: dict[str, Any]) -> dict[str, Any]:
        issue = _req_dict(payload, "issue", "")
        state, kind = issue.get("state"), issue.get("kind") or issue.get("type")
        return {
            "id": _req_int(issue, "id", "issue"),
            "title": _req_str(issue, "title", "issue"),
            "state": state if isinstance(state, str) and state in ISSUE_STATES else None,
            "kind": kind if isinstance(kind, str) and kind in ISSUE_KINDS else None,
            "url": _url(_opt(issue, "links", "html", "href")),
        }

    @staticmethod
    def commit_status(payload: dict[str, Any]) -> dict[str, Any]:
        status = _req_dict(payload, "commit_status", "")
        commit = _opt(status, "commit", "hash")
        if commit is None:  # older payloads only link the commit: .../commit/<hash>
            href = _str_or_none(_opt(status, "links", "commit", "href")) or ""
            tail = href.rstrip("/").rpartition("/")[2].lower()
            commit = tail if _HASH.fullmatch(tail) else None
        return {
            "key": _req_str(status, "key", "commit_status"),
            "name": _str_or_none(status.get("name")),
            "state": _commit_state(_req_str(status, "state", "commit_status")),
            "description": _str_or_none(status.get("description")),
            "commit": _hash(commit, "commit_status.commit.hash"),
            "refname": _str_or_none(status.get("refname")),
            "url": _url(status.get("url")),
        }

    @staticmethod
    def changes(payload: dict[str, Any], repository: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        changes = payload.get("changes")
        for field, change in (changes if isinstance(changes, dict) else {}).items():
            old, new = _opt(change, "old"), _opt(change, "new")
            if isinstance(change, dict) and all(v is None or isinstance(v, str) for v in (old, new)):
                result[str(field)] = {"old": old, "new": new}
        return result

    @staticmethod
    def occurred_at(payload: dict[str, Any], rule: _Rule) -> str | None:
        for path in rule.occurred_at:
            moment = _timestamp(_opt(payload, *path))
            if moment is not None:
                return moment
        return None


class _DataCenter:
    flavor = "datacenter"

    @staticmethod
    def repository(repo: Any, where: str) -> dict[str, Any]:
        if not isinstance(repo, dict):
            raise MalformedPayload(where, "is missing" if repo is None else "is not an object")
        slug = _req_str(repo, "slug", where)
        project_key = _req_str(_req_dict(repo, "project", where), "key", f"{where}.project")
        links = repo.get("links")
        return {
            "id": _req_id(repo, "id", where),
            "workspace": project_key,
            "slug": slug,
            "full_name": f"{project_key}/{slug}",
            "name": _str_or_none(repo.get("name")) or slug,
            "links": {"html": _first_href(_opt(links, "self")), "clone": _clone_links(links)},
            "private": None if (public := _bool_or_none(repo.get("public"))) is None else not public,
        }

    @staticmethod
    def actor(user: Any) -> dict[str, Any] | None:
        user_id = user.get("id") if isinstance(user, dict) else None
        if isinstance(user_id, bool) or not isinstance(user_id, int | str) or user_id == "":
            return None
        username = _str_or_none(user.get("name")) or _str_or_none(user.get("slug"))
        return {
            "id": str(user_id),
            "name": _str_or_none(user.get("displayName")) or username,
            "username": username,
        }

    @staticmethod
    def ref_changes(payload: dict[str, Any]) -> list[dict[str, Any]]:
        result = []
        for index, change in enumerate(_req_list(payload, "changes", "")):
            where = _path("changes", index)
            ref = _opt(change, "ref")
            ref_id = _str_or_none(_opt(ref, "id")) or _str_or_none(_opt(change, "refId")) or ""
            name = _str_or_none(_opt(ref, "displayId"))
            ref_type = _opt(ref, "type")
            if ref_type is None:  # derive from the full ref name when the ref object is missing
                ref_type = "tag" if ref_id.startswith("refs/tags/") else "branch" if ref_id else None
            if name is None and ref_id:
                name = ref_id.removeprefix("refs/heads/").removeprefix("refs/tags/")
            if name is None:
                raise MalformedPayload(_path(where, "ref.displayId"))
            kind = _kind(ref_type, _path(where, "ref.type"))
            new = _hash(_opt(change, "toHash"), _path(where, "toHash"))
            if kind == "tag" and new is not None:
                new = _DataCenter._tagged_commit(payload, change, where) or new
            result.append(
                _ref_change(name, kind, _hash(_opt(change, "fromHash"), _path(where, "fromHash")), new, where)
            )
        # An empty list is a real delivery (e.g. a push Bitbucket filtered down to nothing): a valid event.
        return result

    @staticmethod
    def ref_idents(payload: dict[str, Any], changes: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
        """What the ledger records of each ref change: the commit, but for a tag the ref's own hash
        (``fromHash`` / ``toHash``: an annotated tag's object), which the REST API's tag ``hash`` names too,
        with or without ``latestCommit`` / ``toCommit`` in the payload. One entry per payload change."""
        idents = []
        for index, (raw, change) in enumerate(zip(payload["changes"], changes, strict=True)):
            if change["kind"] != "tag":
                idents.append((change["old"], change["new"]))
                continue
            where = _path("changes", index)
            idents.append(
                (_hash(_opt(raw, "fromHash"), f"{where}.fromHash"), _hash(_opt(raw, "toHash"), f"{where}.toHash"))
            )
        return idents

    @staticmethod
    def pr_stamp(payload: dict[str, Any]) -> str | None:
        return stamp(_opt(payload, "pullRequest", "updatedDate"))

    @staticmethod
    def mirror(payload: dict[str, Any]) -> dict[str, Any]:
        """``mirror:repo_synchronized``: which mirror, how it synchronised, and whether it listed the refs."""
        server = payload.get("mirrorServer")
        return {
            "id": _str_or_none(_opt(server, "id")),
            "name": _str_or_none(_opt(server, "name")),
            "sync_type": _str_or_none(payload.get("syncType")),
            "ref_limit_exceeded": _bool_or_none(payload.get("refLimitExceeded")),
        }

    @staticmethod
    def _tagged_commit(payload: dict[str, Any], change: Any, where: str) -> str | None:
        """The commit an annotated tag points at. ``toHash`` is the tag object's hash; the commit is the
        ref's ``latestCommit`` when sent, or (Data Center 10) ``toCommit`` for a push of that one ref."""
        latest = _hash(_opt(change, "ref", "latestCommit"), _path(where, "ref.latestCommit"))
        if latest is not None:
            return latest
        changes = payload.get("changes")
        to_commit = _opt(payload, "toCommit", "id")
        if to_commit is not None and isinstance(changes, list) and len(changes) == 1:
            return _hash(to_commit, "toCommit.id")
        return None

    @staticmethod
    def _endpoint(ref: Any, where: str) -> dict[str, Any]:
        repo = _opt(ref, "repository")
        ref_id = _str_or_none(_opt(ref, "id"))
        display = _str_or_none(_opt(ref, "displayId"))
        is_tag = (ref_id or "").startswith("refs/tags/") or str(_opt(ref, "type") or "").upper() == "TAG"
        return {
            "branch": None if is_tag else display,
            "tag": (display or (ref_id or "").removeprefix("refs/tags/") or None) if is_tag else None,
            "ref": ref_id,
            "commit": _hash(_opt(ref, "latestCommit"), f"{where}.latestCommit"),
            "repository": _DataCenter.repository(repo, f"{where}.repository") if repo is not None else None,
        }

    @staticmethod
    def pull_request(payload: dict[str, Any], rule: _Rule) -> dict[str, Any]:
        pr = _req_dict(payload, "pullRequest", "")
        title = pr.get("title")
        if not isinstance(title, str):
            raise MalformedPayload("pullRequest.title")
        state = str(pr.get("state") or "").upper()
        return {
            "id": _req_int(pr, "id", "pullRequest"),
            "title": title,
            "state": rule.pr_state or (state if state in PR_STATES else None),
            "source": _DataCenter._endpoint(_req_dict(pr, "fromRef", "pullRequest"), "pullRequest.fromRef"),
            "destination": _DataCenter._endpoint(_req_dict(pr, "toRef", "pullRequest"), "pullRequest.toRef"),
            "author": _DataCenter.actor(_opt(pr, "author", "user")),
            "reviewers": [a for a in (_DataCenter.actor(_opt(r, "user")) for r in _list(pr.get("reviewers"))) if a],
            "merge_commit": _hash(_opt(pr, "properties", "mergeCommit", "id"), "pullRequest.properties.mergeCommit.id"),
            "url": _first_href(_opt(pr, "links", "self")),
        }

    @staticmethod
    def comment(payload: dict[str, Any]) -> dict[str, Any]:
        comment = _req_dict(payload, "comment", "")
        text, truncated = _text(comment.get("text"))
        anchor = comment.get("anchor")
        path = _opt(anchor, "path")
        if isinstance(path, dict):  # the 9.2 document's path object
            path = path.get("toString") or "/".join(str(c) for c in _list(path.get("components")))
        path = _str_or_none(path)
        side = "old" if _opt(anchor, "fileType") == "FROM" else "new"
        commit = payload.get("commit")
        return {
            "id": _req_int(comment, "id", "comment"),
            "text": text,
            "truncated": truncated,
            "author": _DataCenter.actor(comment.get("author")),
            "parent_id": _int_or_none(payload.get("commentParentId")),
            "inline": {"path": path, "line": _int_or_none(_opt(anchor, "line")), "side": side} if path else None,
            "commit": _hash(commit if isinstance(commit, str) else _opt(commit, "id"), "commit"),
            "url": None,
        }

    @staticmethod
    def comment_state(comment: dict[str, Any], deleted: bool) -> str:
        """What the ledger records of a comment (payload or REST: the same object): its version."""
        version = comment.get("version")
        counted = version if isinstance(version, int) and not isinstance(version, bool) else 0
        return comment_value(counted, None, deleted)

    @staticmethod
    def review(payload: dict[str, Any], rule: _Rule, actor: dict[str, Any] | None) -> dict[str, Any]:
        def users(key: str) -> list[dict[str, Any]]:
            found = (_DataCenter.actor(_opt(u, "user") or u) for u in _list(payload.get(key)))
            return [a for a in found if a is not None]

        previous = str(payload.get("previousStatus") or "").upper().replace("NEEDS_WORK", "CHANGES_REQUESTED")
        reviewer = _DataCenter.actor(_opt(payload, "participant", "user")) if rule.review_status else None
        return {
            "reviewer": reviewer or (actor if rule.review_status else None),
            "status": rule.review_status,
            "previous_status": previous if previous in REVIEW_STATUSES else None,
            "added": users("addedReviewers"),
            "removed": users("removedReviewers"),
        }

    @staticmethod
    def changes(payload: dict[str, Any], repository: dict[str, Any]) -> dict[str, Any]:
        if "pullRequest" in payload:
            return _DataCenter._pr_changes(payload)
        old_repo = payload.get("old")
        if not isinstance(old_repo, dict):
            return {}
        old = _DataCenter.repository(old_repo, "old")
        return {
            field: {"old": old[field], "new": repository[field]}
            for field in ("name", "slug", "workspace", "full_name")
            if old[field] != repository[field]
        }

    @staticmethod
    def _pr_changes(payload: dict[str, Any]) -> dict[str, Any]:
        """pull_request.updated: what ``pr:modified`` (previousTitle/Description/Target) or
        ``pr:from_ref_updated`` (previousFromHash) says changed, each ``{old, new}``; {} when it says nothing."""
        pr = payload["pullRequest"]
        candidates: list[tuple[str, Any, Any]] = []
        if "previousTitle" in payload:
            candidates.append(("title", payload.get("previousTitle"), pr.get("title")))
        if "previousDescription" in payload:
            candidates.append(("description", payload.get("previousDescription"), pr.get("description")))
        if "previousTarget" in payload:
            target = payload.get("previousTarget")
            candidates.append(("target", _opt(target, "id") or _opt(target, "displayId"), _opt(pr, "toRef", "id")))
        if "previousFromHash" in payload:
            old_hash = _hash(payload.get("previousFromHash"), "previousFromHash")
            new_hash = _hash(_opt(pr, "fromRef", "latestCommit"), "pullRequest.fromRef.latestCommit")
            candidates.append(("source_commit", old_hash, new_hash))
        return {
            field: {"old": _str_or_none(old), "new": _str_or_none(new)}
            for field, old, new in candidates
            if _str_or_none(old) != _str_or_none(new)
        }

    @staticmethod
    def occurred_at(payload: dict[str, Any], rule: _Rule) -> str | None:
        return _timestamp(payload.get("date"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# The one flavor switch outside bitbridge.bitbucket, on purpose: the receiver and the publisher import
# this module on their cold path, and bitbucket.cloud / bitbucket.datacenter bring requests and the
# HTTP client with them. These adapters read payloads only, with the standard library.
_ADAPTERS: dict[str, type[_Cloud] | type[_DataCenter]] = {"cloud": _Cloud, "datacenter": _DataCenter}


# --------------------------------------------------------------------------------------------------------


def repository_section(flavor: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The event's repository section from a REST repository (same shape as in payloads)."""
    return _ADAPTERS[flavor].repository(raw, "repository")


def pull_request_section(flavor: str, raw: dict[str, Any], event_type: str) -> dict[str, Any]:
    """The event's pull_request section from a REST pull request (same shape as in payloads), with the
    state ``event_type`` implies, exactly as a delivery of that type would give it."""
    rule = next(r for r in _RULES[flavor].values() if r.type == event_type and PULL_REQUEST in r.sections)
    return _ADAPTERS[flavor].pull_request({"pullrequest" if flavor == "cloud" else "pullRequest": raw}, rule)


def comment_section(flavor: str, raw: dict[str, Any], parent_id: int | None) -> dict[str, Any]:
    """The event's comment section from a REST pull request comment (the payloads' comment object), exactly
    as a delivery would give it (``parent_id``: Data Center nests replies, its payloads name the parent)."""
    if flavor == "cloud":
        return _Cloud.comment({"comment": raw})
    return _DataCenter.comment({"comment": raw, "commentParentId": parent_id})


def comment_state(flavor: str, raw: dict[str, Any], deleted: bool = False) -> str:
    """What a comment's ledger item records (bitbridge.change_ids.comment_value), from a REST comment."""
    return _ADAPTERS[flavor].comment_state(raw, deleted)


def review_section(
    flavor: str, user: dict[str, Any], status: str, previous: str | None = None
) -> dict[str, Any] | None:
    """The event's review section for a person's review status (a REST user object), as a delivery gives it."""
    reviewer = _ADAPTERS[flavor].actor(user)
    if reviewer is None:
        return None
    kept = previous if previous in REVIEW_STATUSES and flavor == "datacenter" else None  # Cloud's payloads omit it
    return {"reviewer": reviewer, "status": status, "previous_status": kept, "added": [], "removed": []}


#: The event type of a review status change (what a delivery of it becomes).
REVIEW_TYPES = {
    "APPROVED": "pull_request.review.approved",
    "UNAPPROVED": "pull_request.review.unapproved",
    "CHANGES_REQUESTED": "pull_request.review.changes_requested",
}
#: Comment and review events: changes of a ledger's items (bitbridge.change_ids).
COMMENT_TYPES = frozenset(f"pull_request.comment.{kind}" for kind in ("created", "updated", "deleted"))
ITEM_TYPES = COMMENT_TYPES | frozenset(REVIEW_TYPES.values())


def event_key_for(flavor: str, event_type: str) -> str:
    """The X-Event-Key a delivery of ``event_type`` would carry on ``flavor`` (the first one listed)."""
    return next(key for key, rule in _RULES[flavor].items() if rule.type == event_type)


def event_type(flavor: str, event_key: str) -> str | None:
    """The event type ``event_key`` becomes for ``flavor``, or None when bitbridge does not handle it."""
    rule = _RULES.get(flavor, {}).get(event_key)
    return rule.type if rule is not None else None


def normalise(
    *,
    flavor: str,
    provider_id: str,
    event_key: str,
    payload: dict[str, Any],
    delivery_id: str,
    received_at: str,
) -> dict[str, Any]:
    """Return the bitbridge event v1 for one delivery.

    ``received_at`` must be an RFC 3339 timestamp with an offset; it is copied unchanged. ``occurred_at``
    comes from the payload (Data Center ``date``; Cloud ``updated_on``/``created_on``/``date`` of the object
    concerned), as UTC ``...Z``, and falls back to ``received_at``.

    Raises :class:`UnhandledEvent` for a key not in :data:`HANDLED_EVENT_KEYS`, :class:`MalformedPayload`
    when the payload lacks what the key requires, and :class:`ValueError` for bad arguments (unknown
    flavor, empty ids, a bad ``received_at``).
    """
    if flavor not in _RULES:
        raise ValueError("flavor must be 'cloud' or 'datacenter'")
    if not isinstance(provider_id, str) or not provider_id:
        raise ValueError("provider_id must be a non-empty string")
    if not isinstance(delivery_id, str) or not 0 < len(delivery_id) <= 256:
        raise ValueError("delivery_id must be a string of 1 to 256 characters")
    if not isinstance(received_at, str) or not _RFC3339.fullmatch(received_at) or not _timestamp(received_at):
        raise ValueError("received_at must be an RFC 3339 timestamp with an offset")
    rule = _RULES[flavor].get(event_key) if isinstance(event_key, str) else None
    if rule is None:
        raise UnhandledEvent(flavor, str(event_key))
    if not isinstance(payload, dict):
        raise MalformedPayload("(root)", "is not a JSON object")

    adapter = _ADAPTERS[flavor]
    sections = rule.sections
    repository = adapter.repository(_opt(payload, *rule.repository_at), ".".join(rule.repository_at))
    actor = adapter.actor(payload.get("actor"))

    fork = None
    if FORK in sections:
        fork = adapter.repository(_opt(payload, *rule.fork_at), ".".join(rule.fork_at))

    event = {
        "schema_version": SCHEMA_VERSION,
        "schema_minor": SCHEMA_MINOR,
        "id": delivery_id,
        "origin": ORIGIN_WEBHOOK,
        "type": rule.type,
        "event_key": event_key,
        "provider": {"id": provider_id, "flavor": flavor},
        "repository": repository,
        "actor": actor,
        "ref_changes": adapter.ref_changes(payload) if PUSH in sections else [],
        "pull_request": adapter.pull_request(payload, rule) if PULL_REQUEST in sections else None,
        "comment": adapter.comment(payload) if COMMENT in sections else None,
        "review": adapter.review(payload, rule, actor) if REVIEW in sections else None,
        # Issues and commit statuses exist on Cloud only: only Cloud rules carry these sections.
        "issue": _Cloud.issue(payload) if ISSUE in sections else None,
        "commit_status": _Cloud.commit_status(payload) if COMMIT_STATUS in sections else None,
        "fork": fork,
        "changes": adapter.changes(payload, repository) if CHANGES in sections else None,
        "occurred_at": adapter.occurred_at(payload, rule) or _timestamp(received_at),
        "received_at": received_at,
        "subscription": None,
        "mirror": adapter.mirror(payload) if MIRROR in sections else None,
    }
    return _own_change_ids(event)


def tracked(event: dict[str, Any]) -> bool:
    """Whether the event's changes are transitions of a ledger (their ids come from the publisher's claim)."""
    if event["type"] == "repository.push":
        return bool(event["ref_changes"])
    if event["type"] in ITEM_TYPES:
        return _item_key(event) is not None
    return event["type"] in PR_LIFECYCLE


def _item_key(event: dict[str, Any]) -> str | None:
    """A comment or review event's ledger item, or None when the event does not name one."""
    pr = event.get("pull_request")
    if pr is None:
        return None
    if event["type"] in COMMENT_TYPES:
        return comment_key(int(pr["id"]), int(event["comment"]["id"]))
    reviewer = (event.get("review") or {}).get("reviewer")
    return review_key(int(pr["id"]), str(reviewer["id"])) if reviewer else None


def _own_change_ids(event: dict[str, Any]) -> dict[str, Any]:
    """Change ids of the changes no ledger tracks: a mirror synchronisation's ref changes are its own
    (never the upstream push's), and any other event not in a ledger is its own change (its id)."""
    if tracked(event):
        return event  # the publisher sets them when it claims the transitions
    if event["type"] == "repository.mirror_synchronized":
        for change in event["ref_changes"]:
            change["change_id"] = mirror_change_id(event["id"], change["kind"], change["name"])
    event["change_id"] = event["id"]
    return event


def ledger_reports(
    flavor: str, payload: dict[str, Any], event: dict[str, Any]
) -> tuple[list[RefMove], PrSeen | None, ItemSeen | None] | None:
    """What a delivery's event tells a repository's ledger (bitbridge.change_ids): its ref moves in the
    order of ``ref_changes``, its pull request's state and Bitbucket's update time, or a comment's or a
    person's review state; None when the event is not a ledger's (mirrors, issues...)."""
    if not tracked(event):
        return None
    adapter = _ADAPTERS[flavor]
    key = _item_key(event) if event["type"] in ITEM_TYPES else None
    if key is not None:
        if event["type"] in COMMENT_TYPES:
            deleted = event["type"] == "pull_request.comment.deleted"
            return [], None, ItemSeen(key, adapter.comment_state(payload["comment"], deleted), True)
        return [], None, ItemSeen(key, str(event["review"]["status"]), False)
    if event["type"] == "repository.push":
        changes = event["ref_changes"]
        moves = [
            RefMove(ref_key(c["kind"], c["name"]), old, new, c["new"])
            for c, (old, new) in zip(changes, adapter.ref_idents(payload, changes), strict=True)
        ]
        return moves, None, None
    pr = event["pull_request"]
    return [], PrSeen(int(pr["id"]), section_value(pr), adapter.pr_stamp(payload)), None


def set_change_ids(event: dict[str, Any], ids: list[str | None]) -> dict[str, Any] | None:
    """Put claimed ids on a tracked event: one per ref change (in order) or the pull request's. A ref
    change whose id is None was told already and is left out; None when nothing is left to publish."""
    if event["type"] == "repository.push":
        kept = []
        for change, change_id in zip(event["ref_changes"], ids, strict=True):
            if change_id is not None:
                change["change_id"] = change_id
                kept.append(change)
        if not kept:
            return None
        event["ref_changes"] = kept
        event["change_id"] = combined([c["change_id"] for c in kept])
        return event
    if ids[0] is None:
        return None
    event["change_id"] = ids[0]
    return event
