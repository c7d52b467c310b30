"""The service API's typed actions on Bitbucket, one shape for both flavors: commit statuses, pull-request
comments (create, update, delete, upsert by marker) and reviews (approve, unapprove, request changes, merge,
decline), as the end user, through `calls.Caller` (their token and budget) and `bitbucket.api.actions_for`.

Each operation checks its input first (a clear 400, nothing sent), then runs once per `Idempotency-Key`
(`service.idempotency`). Answers are plain values (ids, states, URLs: never a token, never the comment's text);
`audit_detail` says what an audit record keeps of a call: ids, states and at most AUDIT_TEXT_PREFIX characters of
a comment's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bitbridge import calls
from bitbridge.bitbucket.actions import (
    REVIEW_ACTIONS,
    SIDES,
    STATUS_STATES,
    STRATEGIES,
    Actions,
    Inline,
    Me,
    StatusIn,
    check_marker,
    refused,
    upsert_comment,
    utf16_length,
)
from bitbridge.bitbucket.api import actions_for
from bitbridge.bitbucket.http import Unauthorized
from bitbridge.service import api, links
from bitbridge.service.credentials import Caller
from bitbridge.service.errors import bad_request
from bitbridge.service.idempotency import Answer, fingerprint, once

#: What an audit record keeps of a comment's text: its first characters, never more.
AUDIT_TEXT_PREFIX = 40
MERGE_MESSAGE_LIMIT = 128 * 1024  # Cloud: "the size of the message is limited to 128 KiB"
_HASH = re.compile(r"^[0-9a-fA-F]{7,40}$")
_URL = re.compile(r"^https?://[^\s/]+\S*$")


@dataclass(frozen=True)
class Where:
    """The repository an action is about, and who acts there."""

    provider_id: str
    end_user_id: str
    repository: str  # "workspace/slug", "PROJECT/slug", "~USER/slug"
    base_url: str


# ------------------------------------------------------------------------------------------- input


def where(params: dict[str, str], base_url: str) -> Where:
    links.check_end_user_id(params.get("end_user_id"))
    owner, slug = params.get("workspace") or "", params.get("repo_slug") or ""
    if not owner or not slug:
        raise bad_request("Name the repository: /repos/{provider}/{end_user_id}/{workspace}/{repo_slug}/...")
    return Where(params["provider"], params["end_user_id"], f"{owner}/{slug}", base_url)


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True, limit: int = 100_000) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"`{name}` is required: a non-empty string.")
    if len(value) > limit:
        raise bad_request(f"`{name}` is {len(value):,} characters; at most {limit:,}.")
    return value


def _number(raw: Any, name: str) -> int:
    try:
        number = int(raw)
    except (TypeError, ValueError):
        number = 0
    if isinstance(raw, bool) or number < 1:
        raise bad_request(f"`{name}` must be a positive whole number.")
    return number


def _commit(raw: Any) -> str:
    if not isinstance(raw, str) or not _HASH.match(raw):
        raise bad_request("`commit` must be a commit id: 7 to 40 hexadecimal digits (the full id on Data Center).")
    return raw


def _inline(raw: Any) -> Inline | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("`inline` is {path, line, side?}: the file, the line, `new` (default) or `old`.")
    path = _text(raw, "path", limit=4096)
    side = raw.get("side", "new")
    if side not in SIDES:
        raise bad_request("`inline.side` is `new` (the source's version of the file) or `old` (the destination's).")
    line_type = raw.get("line_type")
    if line_type is not None and line_type not in ("added", "removed", "context"):
        raise bad_request("`inline.line_type` is `added`, `removed` or `context` (Data Center needs the line's kind).")
    return Inline(str(path).strip("/"), _number(raw.get("line"), "inline.line"), side, line_type)


def _status(body: dict[str, Any]) -> StatusIn:
    state = body.get("state")
    if state not in STATUS_STATES:
        raise bad_request(f"`state` is one of {', '.join(STATUS_STATES)}.")
    url = _text(body, "url", limit=2048)
    if not _URL.match(str(url)):
        raise bad_request("`url` must be an absolute http(s) URL: Bitbucket requires a link to the build.")
    return StatusIn(
        key=str(_text(body, "key", limit=1024)),
        state=state,
        url=str(url),
        name=_text(body, "name", required=False, limit=255),
        description=_text(body, "description", required=False, limit=2048),
        refname=_text(body, "refname", required=False, limit=1024),
    )


# ------------------------------------------------------------------------------------------- running


def _run(
    caller: Caller,
    at: Where,
    key: str | None,
    request: tuple[Any, ...],
    act: Callable[[Actions, calls.Caller], tuple[int, Any]],
) -> Answer:
    """Look the end user up (not connected: 409 with a connect URL), then act once per Idempotency-Key."""

    def attempt() -> Answer:
        as_user = api.end_user_caller(caller, at.provider_id, at.end_user_id, at.base_url)
        try:
            status, body = act(actions_for(as_user.provider.flavor), as_user)
        except Unauthorized:  # refused again after a refresh: the grant is gone
            raise api.refused_after_refresh(caller, at.provider_id, at.end_user_id, at.base_url) from None
        return Answer(status, body)

    request_id = fingerprint(at.provider_id, at.end_user_id, at.repository, *request)
    return once(caller.client_id, key, request_id, attempt)


def _me(caller: Caller, at: Where, as_user: calls.Caller) -> Me:
    conn = api.connection_of(str(as_user.user_id), at.provider_id)
    if conn is None:
        raise api.not_connected(caller, at.provider_id, at.end_user_id, at.base_url)
    return Me(conn.external_id, conn.username)


# ------------------------------------------------------------------------------------------- statuses


def set_status(caller: Caller, at: Where, commit: str, body: Any, key: str | None) -> Answer:
    status, commit = _status(_body(body)), _commit(commit)

    def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        done = actions.set_status(as_user.send, as_user.api, at.repository, actions.check_commit(commit), status)
        return 200, done

    return _run(caller, at, key, ("status", commit, status), act)


def list_statuses(caller: Caller, at: Where, commit: str) -> Answer:
    commit = _commit(commit)

    def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        found = actions.list_statuses(as_user.send, as_user.api, at.repository, actions.check_commit(commit))
        return 200, {"commit": commit, "statuses": found}

    return _run(caller, at, None, (), act)


# ------------------------------------------------------------------------------------------- comments


def _fits(actions: Actions, text: str) -> str:
    if utf16_length(text) > actions.comment_limit:
        raise refused(
            "invalid_request",
            f"The text is {utf16_length(text):,} characters; a comment here takes at most {actions.comment_limit:,}. "
            "Use the upsert, which splits a long text into ordered parts.",
        )
    return text


def create_comment(caller: Caller, at: Where, pull_request: str, body: Any, key: str | None) -> Answer:
    body, pr = _body(body), _number(pull_request, "pull_request")
    text, inline = str(_text(body, "text", limit=1_000_000)), _inline(body.get("inline"))
    parent = _number(body["parent"], "parent") if body.get("parent") is not None else None

    def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        made = actions.create_comment(
            as_user.send, as_user.api, at.repository, pr, _fits(actions, text), inline, parent
        )
        return 201, {"pull_request": pr, **made}

    return _run(caller, at, key, ("comment", pr, text, inline, parent), act)


def update_comment(caller: Caller, at: Where, pull_request: str, comment: str, body: Any, key: str | None) -> Answer:
    body, pr, comment_id = _body(body), _number(pull_request, "pull_request"), _number(comment, "comment_id")
    text = str(_text(body, "text", limit=1_000_000))

    def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        made = actions.update_comment(
            as_user.send, as_user.api, at.repository, pr, comment_id, _fits(actions, text), None
        )
        return 200, {"pull_request": pr, **made}

    return _run(caller, at, key, ("edit", pr, comment_id, text), act)


def delete_comment(caller: Caller, at: Where, pull_request: str, comment: str, key: str | None) -> Answer:
    pr, comment_id = _number(pull_request, "pull_request"), _number(comment, "comment_id")

    def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        actions.delete_comment(as_user.send, as_user.api, at.repository, pr, comment_id, None)
        return 200, {"pull_request": pr, "id": comment_id, "deleted": True}

    return _run(caller, at, key, ("delete", pr, comment_id), act)


def upsert_comment_by_marker(caller: Caller, at: Where, pull_request: str, body: Any, key: str | None) -> Answer:
    body, pr = _body(body), _number(pull_request, "pull_request")
    marker, text = check_marker(body.get("marker")), str(_text(body, "text", limit=1_000_000))

    def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        me = _me(caller, at, as_user)
        return 200, upsert_comment(actions, as_user.send, as_user.api, at.repository, pr, me, marker, text)

    return _run(caller, at, key, ("upsert", pr, marker, text), act)


# ------------------------------------------------------------------------------------------- reviews


def review(caller: Caller, at: Where, pull_request: str, action: str, body: Any, key: str | None) -> Answer:
    """approve | unapprove | request_changes (Data Center: needs work) | merge | decline."""
    pr = _number(pull_request, "pull_request")
    body = _body(body if body is not None else {})
    if action in REVIEW_ACTIONS:

        def act(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
            me = _me(caller, at, as_user)
            return 200, actions.review(as_user.send, as_user.api, at.repository, pr, me, action)

        return _run(caller, at, key, (action, pr), act)
    if action == "merge":
        strategy = body.get("strategy")
        if strategy is not None and strategy not in STRATEGIES:
            raise bad_request(
                f"`strategy` is one of {', '.join(STRATEGIES)} (or leave it out: the repository's default)."
            )
        message = _text(body, "message", required=False, limit=MERGE_MESSAGE_LIMIT)

        def merge(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
            return 200, actions.merge(as_user.send, as_user.api, at.repository, pr, strategy, message)

        return _run(caller, at, key, ("merge", pr, strategy, message), merge)
    reason = _text(body, "reason", required=False, limit=32_000)

    def decline(actions: Actions, as_user: calls.Caller) -> tuple[int, Any]:
        return 200, actions.decline(as_user.send, as_user.api, at.repository, pr, reason)

    return _run(caller, at, key, ("decline", pr, reason), decline)


# ------------------------------------------------------------------------------------------- audit


def audit_detail(params: dict[str, str], body: Any) -> dict[str, Any]:
    """What an action's audit record keeps: the repository, commit, pull request, comment, status key and state,
    review action, marker, and the first AUDIT_TEXT_PREFIX characters of a comment's text (and its length)."""
    detail: dict[str, Any] = {}
    if params.get("workspace") and params.get("repo_slug"):
        detail["repository"] = f"{params['workspace']}/{params['repo_slug']}"[:256]
    for name in ("commit", "pull_request", "comment_id"):
        if params.get(name):
            detail[name] = str(params[name])[:64]
    if isinstance(body, dict):
        for name in ("key", "state", "marker", "strategy"):
            if isinstance(body.get(name), str):
                detail[name] = body[name][:256]
        text = body.get("text")
        if isinstance(text, str):
            detail["text_prefix"] = text[:AUDIT_TEXT_PREFIX]
            detail["text_length"] = len(text)
    return detail
