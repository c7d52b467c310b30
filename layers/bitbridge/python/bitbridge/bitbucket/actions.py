"""Acting on Bitbucket for a person, one shape for both flavors: commit statuses, pull-request comments (and
upserting one by a hidden marker), reviews, merge and decline.

This module holds the neutral vocabulary, the `Actions` protocol each flavor implements
(`cloud_actions.CLOUD_ACTIONS`, `datacenter_actions.DATACENTER_ACTIONS`; `api.actions_for`) and what is the same
for both: how a status key over a flavor's limit is mapped, how a long text is split into ordered parts, the
marker that finds a product's comment again, and the upsert itself. Every call goes through the `Send` the
caller gives (`calls.Caller.send`: the person's token, one refresh on a 401, retries of idempotent calls, the
rate-limit budget), naming its resource class.

Refusals become `ActionRefused` with a stable code (`edge.STATUS`): `not_found`, `missing_permission` (what is
missing, in Bitbucket's words), `merge_conflict`, `pull_request_not_open`, `comment_has_replies`, `invalid_request`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from bitbridge.bitbucket.http import raise_for_status
from bitbridge.errors import Problem

#: The rate-limit class of every call here: Cloud counts /2.0/repositories/* in its "repositories" class;
#: Data Center has one bucket per person, whatever the call.
RESOURCE = "repositories"

STATUS_STATES = ("in_progress", "successful", "failed", "stopped")
SIDES = ("new", "old")
LINE_TYPES = ("added", "removed", "context")
STRATEGIES = ("merge_commit", "squash", "fast_forward")
REVIEW_ACTIONS = ("approve", "unapprove", "request_changes")

#: A hidden marker: a markdown link reference definition, which both flavors' markdown renders as nothing.
MARKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_PART = re.compile(r"^\[//\]: # \(bitbridge:(?P<marker>[A-Za-z0-9._:-]+) (?P<i>\d+)/(?P<n>\d+)\)\n\n", re.S)
MAX_PARTS = 10  # an upsert's text is at most this many comments


class ActionRefused(Problem):
    """Bitbucket (or bitbridge, before asking it) refused the action; `code` says why."""


def refused(code: str, message: str, **details: Any) -> ActionRefused:
    return ActionRefused(message, code=code, **details)


class Send(Protocol):
    """`calls.Caller.send`: one call as the person, Bitbucket's final answer whatever its status."""

    def __call__(
        self, method: str, url: str, *, what: str, resource: str | None = None, **request: Any
    ) -> requests.Response: ...


@dataclass(frozen=True)
class Me:
    """Who acts: the person's Bitbucket account (Cloud uuid / Data Center numeric id) and user name."""

    external_id: str
    username: str | None


@dataclass(frozen=True)
class Inline:
    path: str
    line: int
    side: str = "new"  # new: the line in the source's version of the file; old: in the destination's
    line_type: str | None = None  # Data Center's kind of line; default added (new side) / removed (old side)


@dataclass(frozen=True)
class StatusIn:
    key: str
    state: str
    url: str
    name: str | None = None
    description: str | None = None
    refname: str | None = None


# ------------------------------------------------------------------------------------------- what is shared


def utf16_length(text: str) -> int:
    """Length as Data Center (Java) counts it: UTF-16 code units (an emoji is 2). Never less than `len`."""
    return len(text.encode("utf-16-le")) // 2


def mapped_key(key: str, limit: int) -> str:
    """The status key Bitbucket stores: `key` itself when it fits, else its first `limit - 13` characters, "-", and
    12 hex digits of SHA-256 of the whole key. Stable (the same key maps the same way every time), and two keys
    that share a long prefix still map apart."""
    if utf16_length(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    head = key[: limit - 13]
    while utf16_length(head) > limit - 13:  # a character outside the BMP counts twice
        head = head[:-1]
    return f"{head}-{digest}"


def check_marker(marker: Any) -> str:
    if not isinstance(marker, str) or not MARKER.match(marker):
        raise refused(
            "invalid_request",
            "`marker` is 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit.",
        )
    return marker


def part_header(marker: str, index: int, count: int) -> str:
    return f"[//]: # (bitbridge:{marker} {index}/{count})\n\n"


def part_of(text: str, marker: str) -> tuple[int, int] | None:
    """(index, count) of a comment that is part `index` of `count` of `marker`'s text, else None."""
    found = _PART.match(text or "")
    if found is None or found["marker"] != marker:
        return None
    index, count = int(found["i"]), int(found["n"])
    return (index, count) if 1 <= index <= count else None


def split_text(text: str, budget: int) -> list[str]:
    """`text` in order, in parts of at most `budget` UTF-16 code units each, cut after a newline when one lies in
    the second half of a part (so paragraphs and lines stay whole where they can), else at the budget."""
    parts: list[str] = []
    rest = text
    while utf16_length(rest) > budget:
        cut, used = 0, 0
        for ch in rest:
            width = 2 if ord(ch) > 0xFFFF else 1
            if used + width > budget:
                break
            used += width
            cut += 1
        newline = rest.rfind("\n", 0, cut)
        if newline >= cut // 2:
            cut = newline + 1
        parts.append(rest[:cut])
        rest = rest[cut:]
    parts.append(rest)
    return parts


def check(response: requests.Response, doing: str, refusal: Any) -> requests.Response:
    """`response` when Bitbucket did it; else the flavor's refusal (`refusal(response, doing)`, or None to let
    `raise_for_status` name it: 429 RateLimited, 401 Unauthorized, 5xx transient)."""
    if response.status_code < 400:
        return response
    problem = refusal(response, doing)
    if problem is not None:
        raise problem
    raise_for_status(response, doing)
    return response


def error_text(response: requests.Response) -> str:
    """Bitbucket's own message for a refusal (Cloud `error.message`, Data Center `errors[0].message`)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or "")[:300]
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or "")[:300]
    return ""


# ------------------------------------------------------------------------------------------- the interface


class Actions(Protocol):
    flavor: str
    status_key_limit: int  # characters (Cloud) / UTF-16 units (Data Center) a status key may have
    comment_limit: int  # UTF-16 units a comment's text may have

    def check_commit(self, commit: str) -> str:
        """The commit id as the flavor takes it (refusal `invalid_request` otherwise)."""
        ...

    def set_status(self, send: Send, api: str, repository: str, commit: str, status: StatusIn) -> dict[str, Any]: ...
    def list_statuses(self, send: Send, api: str, repository: str, commit: str) -> list[dict[str, Any]]: ...
    def create_comment(
        self,
        send: Send,
        api: str,
        repository: str,
        pull_request: int,
        text: str,
        inline: Inline | None = None,
        parent: int | None = None,
    ) -> dict[str, Any]: ...
    def update_comment(
        self, send: Send, api: str, repository: str, pull_request: int, comment: int, text: str, version: int | None
    ) -> dict[str, Any]: ...
    def delete_comment(
        self, send: Send, api: str, repository: str, pull_request: int, comment: int, version: int | None
    ) -> None: ...
    def marked_comments(
        self, send: Send, api: str, repository: str, pull_request: int, me: Me, marker: str
    ) -> list[dict[str, Any]]:
        """The person's live top-level comments that are parts of `marker`'s text: [{id, text, version}]."""
        ...

    def review(
        self, send: Send, api: str, repository: str, pull_request: int, me: Me, action: str
    ) -> dict[str, Any]: ...
    def merge(
        self, send: Send, api: str, repository: str, pull_request: int, strategy: str | None, message: str | None
    ) -> dict[str, Any]: ...
    def decline(
        self, send: Send, api: str, repository: str, pull_request: int, reason: str | None
    ) -> dict[str, Any]: ...


def upsert_comment(
    actions: Actions, send: Send, api: str, repository: str, pull_request: int, me: Me, marker: str, text: str
) -> dict[str, Any]:
    """The person's one comment (as many parts as the flavor's limit needs) carrying `marker`, made to say `text`:
    each part is created or updated in order, a part already saying the same is left alone (no write, no webhook),
    and parts a shorter text no longer needs are deleted (one with replies, which Data Center will not delete, is
    emptied instead and no longer counted)."""
    budget = actions.comment_limit - utf16_length(part_header(marker, MAX_PARTS, MAX_PARTS))
    pieces = split_text(text, budget)
    if len(pieces) > MAX_PARTS:
        raise refused(
            "invalid_request",
            f"The text is {utf16_length(text):,} characters: an upsert keeps at most {MAX_PARTS} comments of "
            f"{budget:,} characters. Shorten it, or link to the full report.",
        )
    bodies = [part_header(marker, i, len(pieces)) + piece for i, piece in enumerate(pieces, 1)]
    found: dict[int, dict[str, Any]] = {}
    surplus: list[dict[str, Any]] = []
    for comment in sorted(actions.marked_comments(send, api, repository, pull_request, me, marker), key=_by_id):
        position = part_of(comment["text"], marker)
        if position is None:
            continue
        if position[0] in found:
            surplus.append(comment)  # a second copy of a part (an earlier upsert that did not finish)
        else:
            found[position[0]] = comment
    outcome: dict[str, list[int]] = {"created": [], "updated": [], "unchanged": [], "deleted": []}
    parts = []
    for index, body in enumerate(bodies, 1):
        current = found.pop(index, None)
        if current is None:
            made = actions.create_comment(send, api, repository, pull_request, body)
            outcome["created"].append(made["id"])
        elif current["text"] == body:
            made = {"id": current["id"], "url": current.get("url")}
            outcome["unchanged"].append(current["id"])
        else:
            made = actions.update_comment(
                send, api, repository, pull_request, current["id"], body, current.get("version")
            )
            outcome["updated"].append(current["id"])
        parts.append({"part": index, "id": made["id"], "url": made.get("url")})
    for stale in [*found.values(), *surplus]:
        try:
            actions.delete_comment(send, api, repository, pull_request, stale["id"], stale.get("version"))
        except ActionRefused as exc:
            if exc.code != "comment_has_replies":
                raise
            retired = f"[//]: # (bitbridge:{marker} retired)\n\n_(No longer used: see the comment above.)_"
            actions.update_comment(send, api, repository, pull_request, stale["id"], retired, stale.get("version"))
        outcome["deleted"].append(stale["id"])
    return {"pull_request": pull_request, "marker": marker, "comments": parts, **outcome}


def _by_id(comment: dict[str, Any]) -> int:
    return int(comment["id"])
