"""Bitbucket Data Center behind `actions.Actions`: `/rest/api/1.0/projects/{key}/repos/{slug}/...`.

Statuses: `commits/{c}/builds` (7.14+; a key again updates it; 204, no body), listed by the older commit-wide
`/rest/build-status/1.0/commits/{c}` (the repository resource has no list). Comments: `pull-requests/{id}/comments`
(`anchor: {path, line, lineType, fileType}`, `parent: {id}`), edited and deleted with their `version`; a
pull request's comments are listed only through its `activities`. Reviews: `participants/{userSlug}` with
`status` APPROVED / NEEDS_WORK / UNAPPROVED. Merge and decline with the pull request's `version` (read first, read
again once when it moved on).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from bitbridge.bitbucket import DATACENTER
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

_STATES = {"in_progress": "INPROGRESS", "successful": "SUCCESSFUL", "failed": "FAILED", "stopped": "CANCELLED"}
_NEUTRAL = {v: k for k, v in _STATES.items()}
_REVIEW = {"approve": "APPROVED", "unapprove": "UNAPPROVED", "request_changes": "NEEDS_WORK"}
_STRATEGIES = {"merge_commit": "no-ff", "squash": "squash", "fast_forward": "ff-only"}
_LINE_TYPES = {"added": "ADDED", "removed": "REMOVED", "context": "CONTEXT"}
URL_LIMIT = 450  # a build status's url


def _repo(api: str, repository: str) -> str:
    key, slug = split_full_name(repository)
    return f"{api}/projects/{q(key)}/repos/{q(slug)}"


def refusal(response: requests.Response, doing: str) -> ActionRefused | None:
    status, text = response.status_code, error_text(response)
    try:
        first = (response.json().get("errors") or [{}])[0]
    except (ValueError, AttributeError, IndexError):
        first = {}
    exception = str(first.get("exceptionName") or "") if isinstance(first, dict) else ""
    if status == 401 and "Authorisation" in exception:  # Data Center says "not permitted" with a 401
        return refused("missing_permission", f"{doing}: Bitbucket refused: {text or 'not permitted'}.")
    if status == 404:
        return refused("not_found", f"{doing}: Bitbucket has no such repository, pull request, commit or comment.")
    if status == 409:
        if (isinstance(first, dict) and first.get("conflicted")) or "conflict" in text.lower():
            return refused(
                "merge_conflict", f"{doing}: the pull request has merge conflicts; resolve them in Bitbucket."
            )
        if "has replies" in text:
            return refused("comment_has_replies", f"{doing}: the comment has replies, which must be deleted first.")
        if any(words in text.lower() for words in ("not open", "already merged", "already declined")):
            return refused("pull_request_not_open", f"{doing}: the pull request is no longer open.")
        if "MergeVetoed" in exception:
            return refused("merge_vetoed", f"{doing}: Bitbucket vetoed the merge: {text}.")
    if status == 400:
        return refused("invalid_request", f"{doing}: Bitbucket refused it: {text or 'bad request'}.")
    return None


class DataCenterActions:
    flavor = DATACENTER
    status_key_limit = 255
    comment_limit = 32_767  # "Please enter a non-empty value less than 32768 characters" (Java length)

    def check_commit(self, commit: str) -> str:
        if len(commit) != 40:
            raise refused("invalid_request", "Data Center takes build statuses on full 40-digit commit ids.")
        return commit.lower()

    # -- statuses ----------------------------------------------------------------------------------
    def set_status(self, send: Send, api: str, repository: str, commit: str, status: StatusIn) -> dict[str, Any]:
        if len(status.url) > URL_LIMIT:
            raise refused("invalid_request", f"Data Center takes build status URLs of at most {URL_LIMIT} characters.")
        key = mapped_key(status.key, self.status_key_limit)
        body: dict[str, Any] = {"key": key, "state": _STATES[status.state], "url": status.url}
        if status.name:
            body["name"] = status.name[:255]
        if status.description:
            body["description"] = status.description
        if status.refname:
            body["ref"] = status.refname if status.refname.startswith("refs/") else f"refs/heads/{status.refname}"
        doing = f"setting build status {key} on {commit[:12]}"
        url = f"{_repo(api, repository)}/commits/{q(commit)}/builds"
        check(send("POST", url, what=doing, resource=RESOURCE, json=body), doing, refusal)  # 204: no body
        return {
            "key": status.key,
            "bitbucket_key": key,
            "state": status.state,
            "url": status.url,
            "name": status.name,
            "description": status.description,
            "refname": body.get("ref"),
            "commit": commit,
            "updated_on": None,
        }

    def list_statuses(self, send: Send, api: str, repository: str, commit: str) -> list[dict[str, Any]]:
        # The older resource is commit-wide (the repository one has no list): a fork with the same commit
        # shows there too. At most the 100 latest.
        url = f"{api.rsplit('/rest/api/', 1)[0]}/rest/build-status/1.0/commits/{q(commit)}"
        doing = f"listing the build statuses of {commit[:12]}"
        page = check(send("GET", url, what=doing, resource=RESOURCE, params={"limit": 100}), doing, refusal).json()
        return [
            {
                "key": s.get("key"),
                "bitbucket_key": s.get("key"),
                "state": _NEUTRAL.get(str(s.get("state")), str(s.get("state") or "").lower()),
                "url": s.get("url"),
                "name": s.get("name"),
                "description": s.get("description"),
                "refname": s.get("ref"),
                "commit": commit,
                "updated_on": s.get("updatedDate"),
            }
            for s in page.get("values", [])
        ]

    # -- comments ----------------------------------------------------------------------------------
    def _pr(self, api: str, repository: str, pull_request: int) -> str:
        return f"{_repo(api, repository)}/pull-requests/{pull_request}"

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
        body: dict[str, Any] = {"text": text}
        if inline is not None:
            kind = inline.line_type or ("added" if inline.side == "new" else "removed")
            body["anchor"] = {
                "path": inline.path,
                "line": inline.line,
                "lineType": _LINE_TYPES[kind],
                "fileType": "TO" if inline.side == "new" else "FROM",
                "diffType": "EFFECTIVE",
            }
        if parent is not None:
            body["parent"] = {"id": parent}
        doing = f"commenting on pull request #{pull_request}"
        url = f"{self._pr(api, repository, pull_request)}/comments"
        return _comment(check(send("POST", url, what=doing, resource=RESOURCE, json=body), doing, refusal).json())

    def _version(self, send: Send, url: str, doing: str) -> int:
        return int(check(send("GET", url, what=doing, resource=RESOURCE), doing, refusal).json()["version"])

    def update_comment(
        self, send: Send, api: str, repository: str, pull_request: int, comment: int, text: str, version: int | None
    ) -> dict[str, Any]:
        doing = f"editing comment {comment} on pull request #{pull_request}"
        url = f"{self._pr(api, repository, pull_request)}/comments/{comment}"
        for attempt in (1, 2):  # a version that moved on is read again once
            current = version if version is not None and attempt == 1 else self._version(send, url, doing)
            answer = send("PUT", url, what=doing, resource=RESOURCE, json={"text": text, "version": current})
            if answer.status_code != 409 or attempt == 2:
                return _comment(check(answer, doing, refusal).json())
        raise AssertionError("unreachable")

    def delete_comment(
        self, send: Send, api: str, repository: str, pull_request: int, comment: int, version: int | None
    ) -> None:
        doing = f"deleting comment {comment} on pull request #{pull_request}"
        url = f"{self._pr(api, repository, pull_request)}/comments/{comment}"
        for attempt in (1, 2):
            current = version if version is not None and attempt == 1 else self._version(send, url, doing)
            answer = send("DELETE", url, what=doing, resource=RESOURCE, params={"version": current})
            if answer.status_code != 409 or "has replies" in error_text(answer) or attempt == 2:
                check(answer, doing, refusal)
                return

    def marked_comments(
        self, send: Send, api: str, repository: str, pull_request: int, me: Me, marker: str
    ) -> list[dict[str, Any]]:
        # No list of a pull request's comments: each thread is one COMMENTED activity (its root comment).
        url = f"{self._pr(api, repository, pull_request)}/activities"
        start, out = 0, []
        needle = f"(bitbridge:{marker} "
        while True:
            doing = f"finding the {marker} comments on pull request #{pull_request}"
            params = {"start": start, "limit": 1000}
            page = check(send("GET", url, what=doing, resource=RESOURCE, params=params), doing, refusal).json()
            for activity in page.get("values", []):
                c = activity.get("comment") if activity.get("action") == "COMMENTED" else None
                if not isinstance(c, dict) or str((c.get("author") or {}).get("id")) != me.external_id:
                    continue
                if needle in str(c.get("text") or ""):
                    out.append({**_comment(c), "text": c.get("text") or "", "version": c.get("version")})
            if page.get("isLastPage", True) or not page.get("values"):
                return out
            start = int(page.get("nextPageStart") or start + len(page["values"]))

    # -- reviews, merge, decline -------------------------------------------------------------------
    def review(self, send: Send, api: str, repository: str, pull_request: int, me: Me, action: str) -> dict[str, Any]:
        doing = f"reviewing pull request #{pull_request} ({action})"
        slug = self._slug(send, api, me, doing)
        url = f"{self._pr(api, repository, pull_request)}/participants/{quote(slug, safe='')}"
        body = {"status": _REVIEW[action]}
        participant = check(send("PUT", url, what=doing, resource=RESOURCE, json=body), doing, refusal).json()
        state = {"APPROVED": "approved", "NEEDS_WORK": "changes_requested"}.get(str(participant.get("status")))
        return {"pull_request": pull_request, "action": action, "state": state}

    def _slug(self, send: Send, api: str, me: Me, doing: str) -> str:
        """The person's user slug (participants are addressed by it): their user, looked up by name."""
        cached = _SLUGS.get((api, me.external_id))
        if cached:
            return cached
        name = me.username or ""
        answer = send("GET", f"{api}/users/{quote(name, safe='')}", what=doing, resource=RESOURCE)
        if answer.status_code == 404:  # a name can differ from its slug: search, match exactly
            found = send("GET", f"{api}/users", what=doing, resource=RESOURCE, params={"filter": name})
            users = check(found, doing, refusal).json().get("values", [])
            user = next((u for u in users if str(u.get("id")) == me.external_id), None)
            if user is None:
                raise refused("not_found", f"{doing}: Data Center has no user {name!r} any more.")
        else:
            user = check(answer, doing, refusal).json()
        _SLUGS[(api, me.external_id)] = str(user.get("slug") or name)
        return _SLUGS[(api, me.external_id)]

    def _closing(
        self, send: Send, api: str, repository: str, pull_request: int, path: str, body: dict[str, Any], doing: str
    ) -> dict[str, Any]:
        base = self._pr(api, repository, pull_request)
        for attempt in (1, 2):  # the version read just before; read again once if it moved on meanwhile
            version = self._version(send, base, doing)
            answer = send(
                "POST", f"{base}/{path}", what=doing, resource=RESOURCE, params={"version": version}, json=body
            )
            if answer.status_code != 409 or "OutOfDate" not in answer.text or attempt == 2:
                return _closed(check(answer, doing, refusal).json())
        raise AssertionError("unreachable")

    def merge(
        self, send: Send, api: str, repository: str, pull_request: int, strategy: str | None, message: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if strategy:
            body["strategyId"] = _STRATEGIES[strategy]
        if message:
            body["message"] = message
        return self._closing(
            send, api, repository, pull_request, "merge", body, f"merging pull request #{pull_request}"
        )

    def decline(self, send: Send, api: str, repository: str, pull_request: int, reason: str | None) -> dict[str, Any]:
        body = {"comment": reason} if reason else {}
        return self._closing(
            send, api, repository, pull_request, "decline", body, f"declining pull request #{pull_request}"
        )


#: (api, user id) -> the user's slug, for this container's life (slugs change only when a user is renamed).
_SLUGS: dict[tuple[str, str], str] = {}


def _comment(raw: dict[str, Any]) -> dict[str, Any]:
    anchor = raw.get("anchor")
    out: dict[str, Any] = {
        "id": raw.get("id"),
        "parent_id": (raw.get("parent") or {}).get("id"),
        "inline": None,
        "url": None,
        "version": raw.get("version"),
    }
    if isinstance(anchor, dict) and anchor.get("path"):
        path = anchor["path"]
        if isinstance(path, dict):  # the 9.2 document types it as a path object
            path = path.get("toString") or "/".join(path.get("components") or [])
        side = "old" if anchor.get("fileType") == "FROM" else "new"
        out["inline"] = {"path": path, "line": anchor.get("line"), "side": side}
    return out


def _closed(pr: dict[str, Any]) -> dict[str, Any]:
    merge_commit = ((pr.get("properties") or {}).get("mergeCommit") or {}).get("id")
    return {"pull_request": pr.get("id"), "state": pr.get("state"), "merge_commit": merge_commit}


DATACENTER_ACTIONS = DataCenterActions()
