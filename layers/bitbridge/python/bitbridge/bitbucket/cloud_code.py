"""Bitbucket Cloud behind `code.Code`: `diffstat`, `commits`, `src` (raw file reads count in their own
allowance, the `raw` class; everything else here is `repositories`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bitbridge.bitbucket import CLOUD
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
    author_name,
    first_line,
    json_of,
)
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.bitbucket.repos import q, split_full_name

REPOSITORIES, RAW = "repositories", "raw"  # Cloud's rate-limit classes of these calls
SRC_PAGELEN = 100  # the src listing's maximum
RECURSIVE_DEPTH = 64  # `max_depth` of a recursive listing: deeper trees are cut there
_COMMIT_FIELDS = ",".join(
    ["next", "values.hash", "values.message", "values.author.raw"]
    + [f"values.author.user.{f}" for f in ("uuid", "account_id", "display_name", "nickname")]
)
_DIFFSTAT_FIELDS = "next,values.status,values.old.path,values.new.path"


def _base(api: str, full_name: str) -> str:
    owner, slug = split_full_name(full_name)
    return f"{api}/repositories/{q(owner)}/{q(slug)}"


def _rev(revision: str) -> str:
    return quote(revision, safe="")


def _user(user: Any) -> dict[str, str | None] | None:
    if not isinstance(user, dict):
        return None
    user_id = user.get("uuid") or user.get("account_id")
    if not isinstance(user_id, str) or not user_id:
        return None
    name, nickname = user.get("display_name"), user.get("nickname")
    return {
        "id": user_id,
        "name": name if isinstance(name, str) and name else None,
        "username": nickname if isinstance(nickname, str) and nickname else None,
    }


def _author(author: Any) -> dict[str, str | None] | None:
    """REST commits: `{raw, user?}`; push payloads: the same, or (older) the account itself."""
    if not isinstance(author, dict):
        return None
    known = _user(author.get("user")) or _user(author)
    if known is not None:
        return known
    name = author_name(author.get("raw"))
    return {"id": None, "name": name, "username": None} if name else None


def _commit(raw: dict[str, Any]) -> Commit:
    return Commit(str(raw["hash"]).lower(), first_line(raw.get("message")), _author(raw.get("author")))


def _moved(change: Any, name: str, head: str) -> bool:
    """Whether a push payload's change moved ref `name` to commit `head`."""
    new = change.get("new") if isinstance(change, dict) else None
    if not isinstance(new, dict) or new.get("name") != name:
        return False
    target = new.get("target")
    moved_to = target.get("hash") if isinstance(target, dict) else None
    return isinstance(moved_to, str) and moved_to.lower() == head.lower()


def _changed(raw: dict[str, Any]) -> ChangedFile:
    status = raw.get("status")
    new_path = (raw.get("new") or {}).get("path")
    old_path = (raw.get("old") or {}).get("path")
    if status == RENAMED and new_path and old_path:
        return ChangedFile(str(new_path), RENAMED, str(old_path))
    if status in (ADDED, REMOVED):
        return ChangedFile(str(new_path or old_path), str(status))
    # modified, and Cloud's conflict states ("merge conflict", "local deleted", ...): the file changed.
    return ChangedFile(str(new_path or old_path), MODIFIED)


def _entry(raw: dict[str, Any]) -> Entry:
    path = str(raw.get("path") or "")
    if raw.get("type") == "commit_directory":
        return Entry(path, DIRECTORY, None)
    if "subrepository" in (raw.get("attributes") or []):
        return Entry(path, SUBMODULE, None)
    size = raw.get("size")
    return Entry(path, FILE, size if isinstance(size, int) else None)


class CloudCode:
    flavor = CLOUD
    lists_recursively = True

    def changes_page(self, read: Read, api: str, full_name: str, diff: Diff, cursor: str | None) -> Page:
        if cursor is not None:  # `next` is opaque and carries every parameter
            body = json_of(read(cursor, None, REPOSITORIES))
        else:
            # Cloud's spec order is the opposite of git's: the changes first, then what they are compared with.
            spec = _rev(diff.head) if diff.base is None else f"{_rev(diff.head)}..{_rev(diff.base)}"
            params: dict[str, Any] = {"pagelen": PAGE, "fields": _DIFFSTAT_FIELDS}
            if diff.base is not None:
                params["topic"] = "true" if diff.three_dot else "false"
            body = json_of(read(f"{_base(api, full_name)}/diffstat/{spec}", params, REPOSITORIES))
        return Page([_changed(v) for v in body.get("values") or []], body.get("next"))

    def commits_page(self, read: Read, api: str, full_name: str, head: str, exclude: str | None, limit: int) -> Page:
        params: dict[str, Any] = {"include": head, "pagelen": limit, "fields": _COMMIT_FIELDS}
        if exclude is not None:
            params["exclude"] = exclude
        body = json_of(read(f"{_base(api, full_name)}/commits", params, REPOSITORIES))
        return Page([_commit(v) for v in (body.get("values") or [])[:limit]], body.get("next"))

    def payload_commits(self, payload: dict[str, Any], name: str, head: str) -> tuple[list[Commit], bool] | None:
        # Found by ref and head, not by position: an event may leave out ref changes told before.
        changes = (payload.get("push") or {}).get("changes")
        change = next((c for c in changes if _moved(c, name, head)), None) if isinstance(changes, list) else None
        if change is None or not isinstance(change.get("commits"), list):
            return None
        commits = change["commits"]
        found = [_commit(c) for c in commits if isinstance(c, dict) and isinstance(c.get("hash"), str)]
        return found, bool(change.get("truncated"))

    def default_branch(self, read: Read, api: str, full_name: str) -> str | None:
        body = json_of(read(_base(api, full_name), {"fields": "mainbranch.name"}, REPOSITORIES))
        name = (body.get("mainbranch") or {}).get("name")
        return str(name) if name else None

    def file_request(self, api: str, full_name: str, path: str, ref: str) -> Request:
        return Request(f"{_base(api, full_name)}/src/{_rev(ref)}/{quote(path, safe='/')}", {}, RAW)

    def is_file_answer(self, headers: Any) -> bool:
        # A file's raw bytes always come as an attachment; a directory's listing is a JSON page.
        return str(headers.get("Content-Disposition") or "").lower().startswith("attachment")

    def entries_page(
        self, read: Read, api: str, full_name: str, path: str, ref: str, recursive: bool, cursor: str | None
    ) -> Page:
        if cursor is not None:
            response = read(cursor, None, RAW)
        else:
            params: dict[str, Any] = {"pagelen": SRC_PAGELEN}
            if recursive:
                params["max_depth"] = RECURSIVE_DEPTH
            where = quote(path.strip("/"), safe="/")
            response = read(f"{_base(api, full_name)}/src/{_rev(ref)}/{where + '/' if where else ''}", params, RAW)
        if self.is_file_answer(response.headers):
            raise NotAFile(path)
        body = json_of(response)
        return Page([_entry(v) for v in body.get("values") or []], body.get("next"))

    def needs_commit_for(self, ref: str) -> bool:
        return "/" in ref  # `src/{commit}/{path}` cannot tell a branch's slash from the path's

    def resolve(self, read: Read, api: str, full_name: str, ref: str) -> str:
        body = json_of(read(f"{_base(api, full_name)}/commits/{_rev(ref)}", {"fields": "values.hash"}, REPOSITORIES))
        values = body.get("values") or []
        if not values:
            raise BitbucketError(f"no commit for {ref}", status=404, permanent=True)
        return str(values[0]["hash"])


CLOUD_CODE = CloudCode()
