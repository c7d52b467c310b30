"""Reading a repository's code, the same for both flavors: what changed between two commits, a push's
commits, a file's bytes, a directory's entries.

Each flavor (`cloud_code`, `datacenter_code`) says how to ask (URL, parameters, the call's rate-limit class)
and how to read the answer; `api.code_for(flavor)` gives the one interface, `Code`. Nothing here calls
Bitbucket: reads go through the caller's `Read` (a `calls.Caller` underneath: token, retries, budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bitbridge.bitbucket.http import BitbucketError

#: GET: (url, params, resource class or None) -> Bitbucket's answer (a `requests.Response`), its errors
#: raised (`bitbucket.http.BitbucketError`, with the status).
Read = Callable[[str, dict[str, Any] | None, str | None], Any]

ADDED, MODIFIED, REMOVED, RENAMED = "added", "modified", "removed", "renamed"
STATUSES = (ADDED, MODIFIED, REMOVED, RENAMED)
FILE, DIRECTORY, SUBMODULE = "file", "directory", "submodule"

#: One page of changes or commits is read at this size where Bitbucket allows it (Data Center's cap).
PAGE = 1000
MESSAGE_LIMIT = 200  # characters of a commit message's first line


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: str  # added | modified | removed | renamed
    old_path: str | None = None  # renamed only

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "status": self.status}
        if self.old_path is not None:
            out["old_path"] = self.old_path
        return out


@dataclass(frozen=True)
class Diff:
    """What to compare. `base` None: `head` against its first parent. `three_dot`: what `head` has since
    its merge base with `base` (a pull request's changes); otherwise `base` and `head` as they stand."""

    head: str
    base: str | None = None
    three_dot: bool = False


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next: str | None  # the flavor's cursor for the following page; None on the last


@dataclass(frozen=True)
class Commit:
    id: str
    message: str  # the first line, at most MESSAGE_LIMIT characters
    author: dict[str, str | None] | None  # {"id", "name", "username"}: never an e-mail address

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "message": self.message, "author": self.author}


@dataclass(frozen=True)
class Entry:
    path: str  # from the repository's root
    type: str  # file | directory | submodule
    size: int | None  # bytes, files only

    def public(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.type, "size": self.size}


@dataclass(frozen=True)
class Request:
    """One GET: where, with what, in which rate-limit class (Cloud's; None where the flavor has one)."""

    url: str
    params: dict[str, Any]
    resource: str | None


class NotAFile(Exception):
    """The path names a directory (or nothing readable as bytes)."""


class Code(Protocol):
    flavor: str
    lists_recursively: bool  # `entries_page(recursive=True)` lists every level at once (else: a call per directory)

    def changes_page(self, read: Read, api: str, full_name: str, diff: Diff, cursor: str | None) -> Page:
        """One page of `ChangedFile`s."""
        ...

    def commits_page(self, read: Read, api: str, full_name: str, head: str, exclude: str | None, limit: int) -> Page:
        """`head`'s commits that `exclude` does not have, newest first (Page of `Commit`s; `next` set when
        there are more than `limit`)."""
        ...

    def payload_commits(self, payload: dict[str, Any], name: str, head: str) -> tuple[list[Commit], bool] | None:
        """The commits a push delivery names for its change that moved ref `name` to commit `head`, and whether
        the list was cut; None when the flavor's payload carries none (or names no such change)."""
        ...

    def default_branch(self, read: Read, api: str, full_name: str) -> str | None: ...

    def file_request(self, api: str, full_name: str, path: str, ref: str) -> Request:
        """The GET answering a file's bytes (streamed by the caller)."""
        ...

    def is_file_answer(self, headers: Any) -> bool:
        """Whether a 200 to `file_request` carries a file's bytes (Cloud answers a directory there too)."""
        ...

    def entries_page(
        self, read: Read, api: str, full_name: str, path: str, ref: str, recursive: bool, cursor: str | None
    ) -> Page:
        """One page of the `Entry`s in directory `path` (with `recursive`, where `lists_recursively`, of
        every level below it too, directories included). NotAFile when `path` is a file."""
        ...

    def needs_commit_for(self, ref: str) -> bool:
        """Whether `ref` must be turned into a commit id before `file_request` / `entries_page` can use it."""
        ...

    def resolve(self, read: Read, api: str, full_name: str, ref: str) -> str:
        """The commit `ref` (a branch, a tag or a commit) names."""
        ...


@dataclass(frozen=True)
class Changes:
    files: list[ChangedFile]
    complete: bool  # False: more changes than `max_pages` pages held


def read_changes(code: Code, read: Read, api: str, full_name: str, diff: Diff, *, max_pages: int) -> Changes:
    """Every changed file of `diff`, reading at most `max_pages` pages."""
    files: list[ChangedFile] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = code.changes_page(read, api, full_name, diff, cursor)
        files.extend(page.items)
        if page.next is None:
            return Changes(files, complete=True)
        cursor = page.next
    return Changes(files, complete=False)


def list_entries(
    code: Code, read: Read, api: str, full_name: str, path: str, ref: str, *, recursive: bool, limit: int
) -> tuple[list[Entry], bool]:
    """A directory's entries sorted by path (with `recursive`, every file and submodule below it, as
    `git ls-tree -r`), at most `limit` of them, and whether there were more."""
    found: list[Entry] = []
    pending: list[tuple[str, str | None]] = [(path, None)]  # directories (and page cursors) still to read
    while pending:
        directory, cursor = pending.pop()
        page = code.entries_page(read, api, full_name, directory, ref, recursive, cursor)
        if page.next is not None:
            pending.append((directory, page.next))
        for entry in page.items:
            if recursive and entry.type == DIRECTORY:
                if not code.lists_recursively:
                    pending.append((entry.path, None))
                continue
            found.append(entry)
            if len(found) > limit:
                return sorted(found, key=lambda e: e.path)[:limit], True
    return sorted(found, key=lambda e: e.path), False


def json_of(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BitbucketError("reading code from Bitbucket: the answer was not JSON") from None


def first_line(message: Any) -> str:
    text = message if isinstance(message, str) else ""
    return text.strip().split("\n", 1)[0].strip()[:MESSAGE_LIMIT]


def author_name(raw: Any) -> str | None:
    """The name in a git author line (`Name <email>`): the e-mail address is left out."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return raw.split("<", 1)[0].strip() or None
