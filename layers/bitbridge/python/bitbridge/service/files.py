"""Files for products: a file's bytes, a directory's entries, what changed between two refs - as the end
user, through their connection, the same answer from both flavors (`bitbridge.bitbucket.code`).

Plain values in and out; refusals as `service.errors.refuse`. Cloud's file reads and listings (`src`) spend
the end user's `raw` allowance (5,000 an hour), the rest their `repositories` one.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bitbridge import tokens
from bitbridge.bitbucket.api import code_for
from bitbridge.bitbucket.code import Code, Diff, NotAFile, list_entries, read_changes
from bitbridge.bitbucket.http import BitbucketError, RateLimited, raise_for_status
from bitbridge.bitbucket.repos import split_full_name
from bitbridge.calls import Caller as BitbucketCaller
from bitbridge.service import api, proxy
from bitbridge.service.credentials import Caller
from bitbridge.service.errors import ServiceRefused, bad_request, refuse
from bitbridge.webhooks.enrich import reader

#: Largest file served: API Gateway carries bytes as base64, and 4 MiB of it stays under Lambda's 6 MB answer.
FILE_LIMIT = 4 * 1024 * 1024
LIST_LIMIT = 2_000  # entries in one listing
CHANGES_PAGES = 5  # changed files: up to 5,000
MAX_PATH = 1024
MAX_REF = 255
_CHUNK = 64 * 1024
_BINARY_SNIFF = 8000  # git's own heuristic: a NUL byte in the first 8,000 bytes means binary
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|^[-/]|/$|\.lock$|^\.|/\.")
_BAD_PATH_CHAR = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class FileAnswer:
    content: bytes
    type: str  # media type, from the name (as git hosts guess it); binary content without one: octet-stream
    size: int


@dataclass(frozen=True)
class _Where:
    caller: BitbucketCaller
    code: Code
    api: str
    full_name: str


# ------------------------------------------------------------------------------------------- input


def check_repository(value: Any) -> str:
    try:
        owner, slug = split_full_name(value if isinstance(value, str) else "")
    except ValueError:
        raise bad_request(
            "`repository` must be owner/slug: a Cloud workspace or Data Center project key, a slash, the slug."
        ) from None
    if _BAD_PATH_CHAR.search(owner + slug) or " " in owner + slug:
        raise bad_request("`repository` must be owner/slug, without spaces or control characters.")
    return f"{owner}/{slug}"


def check_path(value: Any, *, required: bool) -> str:
    """A path inside the repository: relative, `/`-separated, no `.` or `..` segments (a trailing `/` is
    allowed and dropped)."""
    raw = value if isinstance(value, str) else ""
    path = raw.rstrip("/")
    if required and not path:
        raise refuse("path_not_allowed", "`path` is required: a file's path from the repository's root.")
    segments = path.split("/") if path else []
    if (
        raw.startswith("/")
        or len(path) > MAX_PATH
        or _BAD_PATH_CHAR.search(path)
        or any(s in ("", ".", "..") for s in segments)
    ):
        raise refuse(
            "path_not_allowed",
            f"`path` must be relative to the repository's root (`src/app.py`), at most {MAX_PATH} characters, "
            "without `.` or `..` segments, empty segments, backslashes or control characters.",
        )
    return path


def check_ref(value: Any, name: str = "ref") -> str:
    """A branch, a tag or a commit id, as git allows ref names."""
    if not isinstance(value, str) or not value or len(value) > MAX_REF or _BAD_REF.search(value):
        raise bad_request(f"`{name}` must be a branch, a tag or a commit id (git's ref name rules).")
    return value


# ------------------------------------------------------------------------------------------- operations


def get_file(
    caller: Caller, provider_id: str, end_user_id: str, *, repository: Any, path: Any, ref: Any, base_url: str
) -> FileAnswer:
    full_name, file_path, at = check_repository(repository), check_path(path, required=True), check_ref(ref)
    where = _as_end_user(caller, provider_id, end_user_id, base_url, full_name)
    with _answers(caller, provider_id, end_user_id, base_url, f"{file_path} at {at} in {full_name}"):
        request = where.code.file_request(where.api, full_name, file_path, _usable(where, at))
        response = where.caller.send(
            "GET", request.url, what="reading a file", resource=request.resource, params=request.params, stream=True
        )
        try:
            if response.status_code == 401:
                raise tokens.ReauthRequired(provider_id)
            raise_for_status(response, "reading a file")
            if not where.code.is_file_answer(response.headers):
                raise NotAFile(file_path)
            content = _read_limited(response, file_path)
        finally:
            response.close()
    binary = b"\0" in content[:_BINARY_SNIFF]
    media = mimetypes.guess_type(file_path)[0] or ("application/octet-stream" if binary else "text/plain")
    return FileAnswer(content, media, len(content))


def list_files(
    caller: Caller,
    provider_id: str,
    end_user_id: str,
    *,
    repository: Any,
    path: Any,
    ref: Any,
    recursive: Any,
    base_url: str,
) -> dict[str, Any]:
    full_name, directory, at = check_repository(repository), check_path(path, required=False), check_ref(ref)
    deep = _flag(recursive, "recursive")
    where = _as_end_user(caller, provider_id, end_user_id, base_url, full_name)
    with _answers(caller, provider_id, end_user_id, base_url, f"directory {directory or '/'} at {at} in {full_name}"):
        entries, truncated = list_entries(
            where.code,
            reader(where.caller, "listing files"),
            where.api,
            full_name,
            directory,
            _usable(where, at),
            recursive=deep,
            limit=LIST_LIMIT,
        )
    return {
        "repository": full_name,
        "ref": at,
        "path": directory,
        "recursive": deep,
        "entries": [e.public() for e in entries],
        "truncated": truncated,
    }


def changes(
    caller: Caller, provider_id: str, end_user_id: str, *, repository: Any, base: Any, head: Any, base_url: str
) -> dict[str, Any]:
    """What `head` has that `base` does not, from their merge base: a pull request's view of head into base."""
    full_name, since, until = check_repository(repository), check_ref(base, "base"), check_ref(head, "head")
    where = _as_end_user(caller, provider_id, end_user_id, base_url, full_name)
    with _answers(caller, provider_id, end_user_id, base_url, f"{since} or {until} in {full_name}"):
        found = read_changes(
            where.code,
            reader(where.caller, "reading changes"),
            where.api,
            full_name,
            Diff(until, since, three_dot=True),
            max_pages=CHANGES_PAGES,
        )
    return {
        "repository": full_name,
        "base": since,
        "head": until,
        "changed_files": [f.public() for f in found.files],
        "changed_files_count": len(found.files) if found.complete else None,
        "changed_files_truncated": not found.complete,
    }


# ------------------------------------------------------------------------------------------- plumbing


def _as_end_user(caller: Caller, provider_id: str, end_user_id: str, base_url: str, full_name: str) -> _Where:
    as_user = api.end_user_caller(caller, provider_id, end_user_id, base_url, patience=proxy.PATIENCE)
    return _Where(as_user, code_for(str(as_user.provider.flavor)), as_user.api, full_name)


def _usable(where: _Where, ref: str) -> str:
    """`ref` as the flavor's file and listing reads take it (Cloud: a commit, when the ref has a slash)."""
    if where.code.needs_commit_for(ref):
        return where.code.resolve(reader(where.caller, "resolving a ref"), where.api, where.full_name, ref)
    return ref


@contextmanager
def _answers(caller: Caller, provider_id: str, end_user_id: str, base_url: str, what: str) -> Iterator[None]:
    """Bitbucket's refusals as the service's: 404/403 `not_found` naming `what`, a token refused after a
    refresh `reauth_required` (409 with a connect URL)."""
    try:
        yield
    except tokens.ReauthRequired as why:
        raise api.reauth_required(caller, provider_id, end_user_id, base_url, why) from None
    except NotAFile:
        raise refuse("not_found", f"No file {what}: a directory? List it with files.list.") from None
    except BitbucketError as exc:  # a 429 (RateLimited) goes on: the edge answers it with Retry-After
        if exc.status in (403, 404) and not isinstance(exc, RateLimited):
            raise refuse(
                "not_found", f"Bitbucket has no {what} that end user {end_user_id} can read ({provider_id})."
            ) from None
        raise


def _read_limited(response: Any, path: str) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > FILE_LIMIT:
        raise _too_large(path, int(length))
    body = bytearray()
    for chunk in response.iter_content(_CHUNK):
        body += chunk
        if len(body) > FILE_LIMIT:
            raise _too_large(path, None)
    return bytes(body)


def _too_large(path: str, size: int | None) -> ServiceRefused:
    told = f" is {size:,} bytes" if size is not None else ""
    return refuse(
        "file_too_large",
        f"{path}{told}: files over {FILE_LIMIT:,} bytes are not served here; clone the repository "
        "(git over HTTPS with a token from POST .../token) to read it.",
        limit=FILE_LIMIT,
        size=size,
    )


def _flag(value: Any, name: str) -> bool:
    if value is None or value in ("", "false", "0", False):
        return False
    if value in ("true", "1", True):
        return True
    raise bad_request(f"`{name}` must be true or false.")
