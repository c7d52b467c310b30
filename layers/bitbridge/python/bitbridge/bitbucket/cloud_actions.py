"""Bitbucket Cloud behind `actions.Actions`: `/2.0/repositories/{workspace}/{slug}/...`.

Statuses: `commit/{c}/statuses/build` (a key again updates it; key at most 40 characters, `url` required).
Comments: `pullrequests/{id}/comments` (`inline: {path, from | to}`, `parent: {id}`). Reviews: `approve`,
`request-changes` (POST to set, DELETE to withdraw; scope `pullrequest:write`). Merge: `merge`
(`merge_strategy`, `message`). Decline takes no reason: a reason is posted as a comment first.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from bitbridge.bitbucket import CLOUD
from bitbridge.bitbucket.actions import (
    RESOURCE,
    ActionRefused,
    Inline,
    Me,
    Send,
    StatusIn,
    check,
    error_text,
    mapped_key,
    refused,
)
from bitbridge.bitbucket.repos import q, split_full_name

_STATES = {"in_progress": "INPROGRESS", "successful": "SUCCESSFUL", "failed": "FAILED", "stopped": "STOPPED"}
_NEUTRAL = {v: k for k, v in _STATES.items()}
# How Cloud words "the pull request is no longer open" ("... is already merged", "... has already been declined").
_CLOSED = re.compile(r"already (?:been )?(?:merged|declined)|\bis (?:merged|declined|superseded)\b|closed|not open")


def _repo(api: str, repository: str) -> str:
    owner, slug = split_full_name(repository)
    return f"{api}/repositories/{q(owner)}/{q(slug)}"


def refusal(response: requests.Response, doing: str) -> ActionRefused | None:
    """Cloud's refusals in bitbridge's words (None: `raise_for_status` names the rest)."""
    status, text = response.status_code, error_text(response)
    if status == 403:
        try:
            detail = response.json().get("error", {}).get("detail")
        except (ValueError, AttributeError):
            detail = None
        required = detail.get("required") if isinstance(detail, dict) else None
        if required:
            return refused(
                "missing_permission",
                f"{doing}: the person's Bitbucket grant lacks the {', '.join(map(str, required))} scope; tick it on "
                "the OAuth consumer, then have them connect again.",
                required=required,
            )
        return refused("missing_permission", f"{doing}: Bitbucket refused: {text or 'not permitted'}.")
    if status == 404:
        return refused("not_found", f"{doing}: Bitbucket has no such repository, pull request, commit or comment.")
    lowered = text.lower()
    if "conflict" in lowered:
        return refused("merge_conflict", f"{doing}: the pull request has merge conflicts; resolve them in Bitbucket.")
    if status in (400, 409) and _CLOSED.search(lowered):
        return refused("pull_request_not_open", f"{doing}: the pull request is no longer open ({text}).")
    if status == 400:
        return refused("invalid_request", f"{doing}: Bitbucket refused it: {text or 'bad request'}.")
    return None


class CloudActions:
    flavor = CLOUD
    status_key_limit = 40
    # Cloud documents no limit and refuses very long comments with a bare 400: bitbridge keeps Data Center's.
    comment_limit = 32_767

    def check_commit(self, commit: str) -> str:
        return commit.lower()

    # -- statuses ----------------------------------------------------------------------------------
    def set_status(self, send: Send, api: str, repository: str, commit: str, status: StatusIn) -> dict[str, Any]:
        key = mapped_key(status.key, self.status_key_limit)
        body: dict[str, Any] = {"key": key, "state": _STATES[status.state], "url": status.url}
        for name in ("name", "description", "refname"):
            if getattr(status, name):
                body[name] = getattr(status, name)
        url = f"{_repo(api, repository)}/commit/{q(commit)}/statuses/build"
        doing = f"setting build status {key} on {commit[:12]}"
        answer = check(send("POST", url, what=doing, resource=RESOURCE, json=body), doing, refusal).json()
        return _status(answer, commit, given=status.key)

    def list_statuses(self, send: Send, api: str, repository: str, commit: str) -> list[dict[str, Any]]:
        url: str | None = f"{_repo(api, repository)}/commit/{q(commit)}/statuses"
        params: dict[str, Any] | None = {"pagelen": 100}
        out: list[dict[str, Any]] = []
        while url:
            doing = f"listing the build statuses of {commit[:12]}"
            page = check(send("GET", url, what=doing, resource=RESOURCE, params=params), doing, refusal).json()
            out += [_status(s, commit) for s in page.get("values", [])]
            url, params = page.get("next"), None
        return out

    # -- comments ----------------------------------------------------------------------------------
    def _comments(self, api: str, repository: str, pull_request: int) -> str:
        return f"{_repo(api, repository)}/pullrequests/{pull_request}/comments"

    def create_comment(
        self,
        send: Send,
        api: str,
        repository: str,
        pull_request: int,
        text: str,
        inline: Inline | None = None,
        parent: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"content": {"raw": text}}
        if inline is not None:
            body["inline"] = {"path": inline.path, "to" if inline.side == "new" else "from": inline.line}
        if parent is not None:
            body["parent"] = {"id": parent}
        doing = f"commenting on pull request #{pull_request}"
        url = self._comments(api, repository, pull_request)
        return _comment(check(send("POST", url, what=doing, resource=RESOURCE, json=body), doing, refusal).json())

    def update_comment(
        self, send: Send, api: str, repository: str, pull_request: int, comment: int, text: str, version: int | None
    ) -> dict[str, Any]:
        doing = f"editing comment {comment} on pull request #{pull_request}"
        url = f"{self._comments(api, repository, pull_request)}/{comment}"
        answer = send("PUT", url, what=doing, resource=RESOURCE, json={"content": {"raw": text}})
        return _comment(check(answer, doing, refusal).json())

    def delete_comment(
        self, send: Send, api: str, repository: str, pull_request: int, comment: int, version: int | None
    ) -> None:
        doing = f"deleting comment {comment} on pull request #{pull_request}"
        url = f"{self._comments(api, repository, pull_request)}/{comment}"
        check(send("DELETE", url, what=doing, resource=RESOURCE), doing, refusal)

    def marked_comments(
        self, send: Send, api: str, repository: str, pull_request: int, me: Me, marker: str
    ) -> list[dict[str, Any]]:
        url: str | None = self._comments(api, repository, pull_request)
        fields = "next,values.id,values.content.raw,values.user.uuid,values.deleted,values.parent.id,values.links"
        params: dict[str, Any] | None = {
            "pagelen": 100,
            "q": f'content.raw ~ "(bitbridge:{marker} " AND deleted = false',
            "fields": fields,
        }
        out: list[dict[str, Any]] = []
        while url:
            doing = f"finding the {marker} comments on pull request #{pull_request}"
            page = check(send("GET", url, what=doing, resource=RESOURCE, params=params), doing, refusal).json()
            for c in page.get("values", []):
                mine = (c.get("user") or {}).get("uuid") == me.external_id
                if mine and not c.get("deleted") and not c.get("parent"):
                    out.append({**_comment(c), "text": (c.get("content") or {}).get("raw") or ""})
            url, params = page.get("next"), None
        return out

    # -- reviews, merge, decline -------------------------------------------------------------------
    def review(self, send: Send, api: str, repository: str, pull_request: int, me: Me, action: str) -> dict[str, Any]:
        base = f"{_repo(api, repository)}/pullrequests/{pull_request}"
        doing = f"reviewing pull request #{pull_request} ({action})"
        if action == "unapprove":
            # One name for withdrawing either review: Cloud keeps approvals and change requests apart.
            state = self._my_state(send, base, me, doing)
            paths = {"approved": "approve", "changes_requested": "request-changes"}
            if state in paths:
                check(send("DELETE", f"{base}/{paths[state]}", what=doing, resource=RESOURCE), doing, refusal)
            return {"pull_request": pull_request, "action": action, "state": None}
        path = "approve" if action == "approve" else "request-changes"
        participant = check(send("POST", f"{base}/{path}", what=doing, resource=RESOURCE), doing, refusal).json()
        return {"pull_request": pull_request, "action": action, "state": participant.get("state")}

    def _my_state(self, send: Send, base: str, me: Me, doing: str) -> str | None:
        params = {"fields": "participants.user.uuid,participants.state"}
        pr = check(send("GET", base, what=doing, resource=RESOURCE, params=params), doing, refusal).json()
        mine = (p for p in pr.get("participants") or [] if (p.get("user") or {}).get("uuid") == me.external_id)
        return next((p.get("state") for p in mine), None)

    def merge(
        self, send: Send, api: str, repository: str, pull_request: int, strategy: str | None, message: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "pullrequest_merge_parameters"}
        if strategy:
            body["merge_strategy"] = strategy
        if message:
            body["message"] = message
        doing = f"merging pull request #{pull_request}"
        url = f"{_repo(api, repository)}/pullrequests/{pull_request}/merge"
        return _closed(check(send("POST", url, what=doing, resource=RESOURCE, json=body), doing, refusal).json())

    def decline(self, send: Send, api: str, repository: str, pull_request: int, reason: str | None) -> dict[str, Any]:
        if reason:  # Cloud's decline takes no reason: leave it as a comment first, as Data Center does
            self.create_comment(send, api, repository, pull_request, reason)
        doing = f"declining pull request #{pull_request}"
        url = f"{_repo(api, repository)}/pullrequests/{pull_request}/decline"
        return _closed(check(send("POST", url, what=doing, resource=RESOURCE), doing, refusal).json())


def _status(raw: dict[str, Any], commit: str, given: str | None = None) -> dict[str, Any]:
    return {
        "key": given if given is not None else raw.get("key"),
        "bitbucket_key": raw.get("key"),
        "state": _NEUTRAL.get(str(raw.get("state")), str(raw.get("state") or "").lower()),
        "url": raw.get("url"),
        "name": raw.get("name") or None,
        "description": raw.get("description") or None,
        "refname": raw.get("refname"),
        "commit": commit,
        "updated_on": raw.get("updated_on"),
    }


def _comment(raw: dict[str, Any]) -> dict[str, Any]:
    inline = raw.get("inline")
    out: dict[str, Any] = {
        "id": raw.get("id"),
        "parent_id": (raw.get("parent") or {}).get("id"),
        "inline": None,
        "url": ((raw.get("links") or {}).get("html") or {}).get("href"),
    }
    if isinstance(inline, dict) and inline.get("path"):
        side = "new" if inline.get("to") else "old"
        out["inline"] = {"path": inline["path"], "line": inline.get("to") or inline.get("from"), "side": side}
    return out


def _closed(pr: dict[str, Any]) -> dict[str, Any]:
    return {
        "pull_request": pr.get("id"),
        "state": pr.get("state"),
        "merge_commit": (pr.get("merge_commit") or {}).get("hash"),
    }


CLOUD_ACTIONS = CloudActions()
