"""Bitbucket Data Center behind `code.Code`: `commits/{id}/changes`, `compare/changes`, `commits`, `raw`,
`browse`, paged by `start` (`datacenter.page_at`'s guard against a missing `nextPageStart`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bitbridge.bitbucket import DATACENTER
from bitbridge.bitbucket.code import (
    ADDED,
    DIRECTORY,
    FILE,
    MODIFIED,
    PAGE,
    REMOVED,
    RENAMED,
    SUBMODULE,
    ChangedFile,
    Commit,
    Diff,
    Entry,
    NotAFile,
    Page,
    Read,
    Request,
    first_line,
    json_of,
)
from bitbridge.bitbucket.datacenter import next_start
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.bitbucket.repos import q, split_full_name

#: RestChange `type` -> bitbridge's status (a copy is a new file; UNKNOWN: it changed).
_STATUS = {"ADD": ADDED, "COPY": ADDED, "MODIFY": MODIFIED, "DELETE": REMOVED, "MOVE": RENAMED}
_KIND = {"DIRECTORY": DIRECTORY, "SUBMODULE": SUBMODULE}


def _base(api: str, full_name: str) -> str:
    key, slug = split_full_name(full_name)
    return f"{api}/projects/{q(key)}/repos/{q(slug)}"


def _path(raw: Any) -> str | None:
    text = raw.get("toString") if isinstance(raw, dict) else None
    return str(text) if text else None


def _changed(raw: dict[str, Any]) -> ChangedFile:
    status = _STATUS.get(str(raw.get("type")), MODIFIED)
    path = _path(raw.get("path")) or ""
    if status == RENAMED:
        old_path = _path(raw.get("srcPath"))
        return ChangedFile(path, RENAMED, old_path) if old_path else ChangedFile(path, MODIFIED)
    return ChangedFile(path, status)


def _author(author: Any) -> dict[str, str | None] | None:
    """A known user is rendered as the user (`id`, `name` = user name, `displayName`); an unknown author
    as the git name and e-mail address (left out)."""
    if not isinstance(author, dict):
        return None
    name = author.get("name") if isinstance(author.get("name"), str) else None
    if author.get("id") is not None and not isinstance(author.get("id"), bool):
        display = author.get("displayName")
        return {"id": str(author["id"]), "name": display if isinstance(display, str) else name, "username": name}
    return {"id": None, "name": name, "username": None} if name else None


def _commit(raw: dict[str, Any]) -> Commit:
    return Commit(str(raw["id"]).lower(), first_line(raw.get("message")), _author(raw.get("author")))


class DataCenterCode:
    flavor = DATACENTER
    lists_recursively = False  # `browse` lists one directory (`/files` lists paths only, without sizes)

    def changes_page(self, read: Read, api: str, full_name: str, diff: Diff, cursor: str | None) -> Page:
        start = int(cursor or 0)
        params: dict[str, Any] = {"start": start, "limit": PAGE}
        if diff.three_dot and diff.base is not None:
            url = f"{_base(api, full_name)}/compare/changes"
            params.update({"from": diff.head, "to": diff.base})
        else:
            url = f"{_base(api, full_name)}/commits/{quote(diff.head, safe='')}/changes"
            params["withComments"] = "false"
            if diff.base is not None:
                params["since"] = diff.base
        body = json_of(read(url, params, None))
        return Page([_changed(v) for v in body.get("values") or []], next_start(body, start))

    def commits_page(self, read: Read, api: str, full_name: str, head: str, exclude: str | None, limit: int) -> Page:
        params: dict[str, Any] = {"until": head, "limit": limit}
        if exclude is not None:
            params["since"] = exclude
        body = json_of(read(f"{_base(api, full_name)}/commits", params, None))
        return Page([_commit(v) for v in (body.get("values") or [])[:limit]], next_start(body, 0))

    def payload_commits(self, payload: dict[str, Any], name: str, head: str) -> tuple[list[Commit], bool] | None:
        return None  # `repo:refs_changed` names no commits (Data Center 9)

    def default_branch(self, read: Read, api: str, full_name: str) -> str | None:
        body = json_of(read(f"{_base(api, full_name)}/default-branch", None, None))
        name = body.get("displayId") if isinstance(body, dict) else None
        return str(name) if name else None

    def file_request(self, api: str, full_name: str, path: str, ref: str) -> Request:
        return Request(f"{_base(api, full_name)}/raw/{quote(path, safe='/')}", {"at": ref}, None)

    def is_file_answer(self, headers: Any) -> bool:
        return True  # `raw` answers a directory with 404

    def entries_page(
        self, read: Read, api: str, full_name: str, path: str, ref: str, recursive: bool, cursor: str | None
    ) -> Page:
        start = int(cursor or 0)
        where = path.strip("/")
        url = f"{_base(api, full_name)}/browse" + (f"/{quote(where, safe='/')}" if where else "")
        body = json_of(read(url, {"at": ref, "start": start, "limit": PAGE}, None))
        children = body.get("children") if isinstance(body, dict) else None
        if not isinstance(children, dict):
            raise NotAFile(path)  # a file's lines
        prefix = f"{where}/" if where else ""
        entries = []
        for child in children.get("values") or []:
            name = _path(child.get("path")) or ""
            kind = _KIND.get(str(child.get("type")), FILE)
            size = child.get("size") if kind == FILE and isinstance(child.get("size"), int) else None
            entries.append(Entry(prefix + name, kind, size))
        return Page(entries, next_start(children, start))

    def needs_commit_for(self, ref: str) -> bool:
        return False  # refs go in the `at` parameter

    def resolve(self, read: Read, api: str, full_name: str, ref: str) -> str:
        body = json_of(read(f"{_base(api, full_name)}/commits", {"until": ref, "limit": 1}, None))
        values = body.get("values") or []
        if not values:
            raise BitbucketError(f"no commit for {ref}", status=404, permanent=True)
        return str(values[0]["id"])


DATACENTER_CODE = DataCenterCode()
