"""Python SDK for bitbridge's service API (`/service/v1/...`): a thin, typed layer over HTTP.

    from bitbridge.client import Client

    bb = Client("https://bitbridge.example.com", "bbk_0123456789abcdef.<secret>")
    session = bb.connect_session("user-42", return_to="https://app.example.com/done", provider="bitbucket-cloud")
    token = bb.token("bitbucket-cloud", "user-42")                    # always valid >= 5 more minutes
    prs = bb.proxy.get("bitbucket-cloud", "user-42", "repositories/acme/web-app/pullrequests").json()
    job = bb.imports.start("bitbucket-cloud", "user-42", ["acme/web-app"])[0]
    readme = bb.files.get("bitbucket-cloud", "user-42", "acme/web-app", "README.md", ref="main").content
    diff = bb.changes("bitbucket-cloud", "user-42", "acme/web-app", base="v1.0", head="main").changed_files
    bb.statuses.set("bitbucket-cloud", "user-42", "acme/web-app", commit, "ci", "successful", "https://ci/1")
    bb.comments.upsert("bitbucket-cloud", "user-42", "acme/web-app", 7, "ci-summary", "All green.")
    bb.pull_requests.approve("bitbucket-cloud", "user-42", "acme/web-app", 7)

Every refusal is a ServiceAPIError subclass carrying the API's stable `code` (see docs/service-api.md). Every
write carries an `Idempotency-Key` (yours, or one made per call) and is retried with it after a network error,
a 5xx from bitbridge or `idempotency_in_progress`: bitbridge answers a retry with the first answer, so a write
happens once. Depends only on `requests`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

__all__ = [
    "ChangedFile",
    "Changes",
    "Client",
    "Conflict",
    "ConnectSession",
    "File",
    "FileEntry",
    "Forbidden",
    "Listing",
    "NotConnected",
    "NotFound",
    "ProxyResponse",
    "RateLimited",
    "ReauthRequired",
    "ServiceAPIError",
    "Token",
    "Unauthenticated",
]

DEFAULT_TIMEOUT = 35.0  # the proxy may wait out a short rate-limit window server-side
WRITE_ATTEMPTS = 3  # a write is sent again (same Idempotency-Key) after a network error or a 5xx
RETRY_DELAYS = (0.5, 2.0)


class ServiceAPIError(Exception):
    """bitbridge refused the call: HTTP `status`, a stable `code` and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class Unauthenticated(ServiceAPIError):
    """401: no key, a malformed key, or an unknown key / wrong secret."""


class Forbidden(ServiceAPIError):
    """403: revoked or expired key, or a scope the client lacks (`code` says which)."""


class NotFound(ServiceAPIError):
    """404: unknown provider, import or connection."""


class NotConnected(ServiceAPIError):
    """409 `not_connected`: the end user has not connected this provider; send them to `connect_url`."""

    @property
    def connect_url(self) -> str | None:
        value = self.details.get("connect_url")
        return str(value) if value else None


class ReauthRequired(NotConnected):
    """409 `reauth_required`: the connection must be re-authorised; send the end user to `connect_url`.
    `reason` says why when bitbridge knows (e.g. `refresh_token_refused`), `detail` in words to show them."""

    @property
    def reason(self) -> str | None:
        value = self.details.get("reason")
        return str(value) if value else None

    @property
    def detail(self) -> str | None:
        value = self.details.get("detail")
        return str(value) if value else None


class Conflict(ServiceAPIError):
    """409 other than a connection to make: Bitbucket's state refuses it (`merge_conflict`, `pull_request_not_open`,
    `comment_has_replies`, `merge_vetoed`) or a call with the same Idempotency-Key is still running."""


class RateLimited(ServiceAPIError):
    """429 from bitbridge itself (not a proxied Bitbucket answer): the end user's Bitbucket allowance has no
    room for this call now; try again after `retry_after` seconds."""

    @property
    def retry_after(self) -> int | None:
        value = self.details.get("retry_after")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class ConnectSession:
    connect_url: str
    expires_at: str
    end_user_id: str
    provider: str | None


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: int
    scopes: list[str]
    username: str | None
    provider: str
    end_user_id: str

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"Token(provider={self.provider!r}, end_user_id={self.end_user_id!r}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class ProxyResponse:
    """Bitbucket's answer, passed through bitbridge: status, headers and body as Bitbucket sent them."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.content)

    @property
    def ok(self) -> bool:
        return self.status_code < 400


def _error(response: requests.Response) -> ServiceAPIError:
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or f"http_{response.status_code}")
    message = str(error.get("message") or response.reason or "")
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    status = response.status_code
    cls: type[ServiceAPIError] = ServiceAPIError
    if status == 401:
        cls = Unauthenticated
    elif status == 403:
        cls = Forbidden
    elif status == 404:
        cls = NotFound
    elif status == 409:
        cls = {"reauth_required": ReauthRequired, "not_connected": NotConnected}.get(code, Conflict)
    elif status == 429:
        cls = RateLimited
    return cls(status, code, message, details)


class _Proxy:
    """`client.proxy.get(provider, end_user_id, path, params=...)` and friends; `path` is below the
    provider's REST API root (e.g. `repositories/acme/web-app/pullrequests` on Cloud)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def request(
        self,
        method: str,
        provider: str,
        end_user_id: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> ProxyResponse:
        url = self._client._url("proxy", provider, end_user_id) + "/" + path.lstrip("/")
        response = self._client._send(method, url, params=params, json=json, service_errors_only=True)
        return ProxyResponse(response.status_code, dict(response.headers), response.content)

    def get(self, provider: str, end_user_id: str, path: str, **kwargs: Any) -> ProxyResponse:
        return self.request("GET", provider, end_user_id, path, **kwargs)

    def post(self, provider: str, end_user_id: str, path: str, **kwargs: Any) -> ProxyResponse:
        return self.request("POST", provider, end_user_id, path, **kwargs)

    def put(self, provider: str, end_user_id: str, path: str, **kwargs: Any) -> ProxyResponse:
        return self.request("PUT", provider, end_user_id, path, **kwargs)

    def delete(self, provider: str, end_user_id: str, path: str, **kwargs: Any) -> ProxyResponse:
        return self.request("DELETE", provider, end_user_id, path, **kwargs)

    def pages(self, provider: str, end_user_id: str, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a Cloud-style paged list (`values` + `next`), following `next` through the proxy."""
        response = self.get(provider, end_user_id, path, params=params)
        while True:
            if not response.ok:
                raise ServiceAPIError(
                    response.status_code, "provider_error", response.content[:200].decode(errors="replace")
                )
            page = response.json()
            yield from page.get("values", [])
            next_url = page.get("next")
            if not next_url:
                return
            raw = self._client._send("GET", next_url, service_errors_only=True)
            response = ProxyResponse(raw.status_code, dict(raw.headers), raw.content)


class _Imports:
    def __init__(self, client: Client) -> None:
        self._client = client

    def start(
        self,
        provider: str,
        end_user_id: str,
        repositories: list[str],
        *,
        reimport: bool = False,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """`include` / `exclude`: the optional parts (docs/imports.md: "comments", "activity", "commits")."""
        body: dict[str, Any] = {
            "provider": provider,
            "end_user_id": end_user_id,
            "repositories": repositories,
            "reimport": reimport,
        }
        if include is not None:
            body["include"] = include
        if exclude is not None:
            body["exclude"] = exclude
        return list(self._client._call("POST", self._client._url("imports"), json=body)["imports"])

    def get(self, import_id: str, end_user_id: str) -> dict[str, Any]:
        url = self._client._url("imports", import_id)
        return dict(self._client._call("GET", url, params={"end_user_id": end_user_id}))


# -- files (files:read) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    """A file's bytes at a ref, exactly as git holds them; `type` is its media type (from the name)."""

    path: str
    ref: str
    content: bytes
    size: int
    type: str

    def text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding)

    def __repr__(self) -> str:
        return f"File(path={self.path!r}, ref={self.ref!r}, size={self.size}, type={self.type!r})"


@dataclass(frozen=True)
class FileEntry:
    path: str  # from the repository's root
    type: str  # file | directory | submodule
    size: int | None  # bytes, files only


@dataclass(frozen=True)
class Listing:
    entries: list[FileEntry]
    truncated: bool  # more entries than one listing holds (2,000)

    def __iter__(self) -> Iterator[FileEntry]:
        return iter(self.entries)


@dataclass(frozen=True)
class ChangedFile:
    """One changed file, as in events' `changed_files`: status added | modified | removed | renamed."""

    path: str
    status: str
    old_path: str | None = None  # renamed only


@dataclass(frozen=True)
class Changes:
    changed_files: list[ChangedFile]
    count: int | None  # how many files changed (null past 5,000)
    truncated: bool


def changed_files(items: list[dict[str, Any]]) -> list[ChangedFile]:
    """Events' `changed_files` (and the changes route's) as ChangedFile values."""
    return [ChangedFile(i["path"], i["status"], i.get("old_path")) for i in items]


class _Files:
    """`client.files.get(...)` / `client.files.list(...)`: a repository's files at a branch, a tag or a commit,
    read as the end user (scope `files:read`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, provider: str, end_user_id: str, repository: str, path: str, ref: str) -> File:
        """The file's bytes; 413 `file_too_large` (ServiceAPIError) over 4 MiB, NotFound when there is none."""
        params = {"repository": repository, "path": path, "ref": ref}
        response = self._client._send(
            "GET", self._client._url("files", provider, end_user_id, "content"), params=params
        )
        kind = response.headers.get("Content-Type", "application/octet-stream")
        return File(path, ref, response.content, len(response.content), kind)

    def list(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        path: str = "",
        ref: str = "",
        *,
        recursive: bool = False,
    ) -> Listing:
        """A directory's entries (`path` "" = the root); `recursive`: every file below it, as `git ls-tree -r`."""
        params = {"repository": repository, "path": path, "ref": ref, "recursive": "true" if recursive else "false"}
        data = self._client._call("GET", self._client._url("files", provider, end_user_id, "list"), params=params)
        entries = [FileEntry(e["path"], e["type"], e.get("size")) for e in data["entries"]]
        return Listing(entries, bool(data["truncated"]))


def _repo_parts(repository: str) -> tuple[str, str]:
    owner, _, slug = repository.partition("/")
    if not owner or not slug or "/" in slug:
        raise ValueError(f"repository is 'workspace/slug' (Data Center 'PROJECT/slug'), got {repository!r}")
    return owner, slug


class _Actions:
    """Shared by statuses, comments and pull requests: URLs below a repository, writes sent once."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _url(self, provider: str, end_user_id: str, repository: str, *rest: str | int) -> str:
        return self._client._url("repos", provider, end_user_id, *_repo_parts(repository), *map(str, rest))

    def _write(self, method: str, url: str, body: Any, idempotency_key: str | None) -> Any:
        return self._client._write(method, url, body, idempotency_key)


class _Statuses(_Actions):
    """Commit statuses (build results): `state` is in_progress, successful, failed or stopped; `key` names the
    build (a second `set` with the same key updates it; keys over a flavor's limit are mapped, see the docs)."""

    def set(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        commit: str,
        key: str,
        state: str,
        url: str,
        *,
        name: str | None = None,
        description: str | None = None,
        refname: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {"key": key, "state": state, "url": url, "name": name, "description": description, "refname": refname}
        target = self._url(provider, end_user_id, repository, "commits", commit, "statuses")
        return dict(self._write("POST", target, {k: v for k, v in body.items() if v is not None}, idempotency_key))

    def list(self, provider: str, end_user_id: str, repository: str, commit: str) -> list[dict[str, Any]]:
        target = self._url(provider, end_user_id, repository, "commits", commit, "statuses")
        return list(self._client._call("GET", target)["statuses"])


class _Comments(_Actions):
    """Pull-request comments. `inline={"path", "line", "side": "new" | "old"}` puts one on a line of a file;
    `parent` replies to a comment. `upsert` keeps one comment per pull request and `marker` (split into ordered
    parts when the text is over the flavor's limit)."""

    def create(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        pull_request: int,
        text: str,
        *,
        inline: dict[str, Any] | None = None,
        parent: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text}
        if inline is not None:
            body["inline"] = inline
        if parent is not None:
            body["parent"] = parent
        target = self._url(provider, end_user_id, repository, "pull-requests", pull_request, "comments")
        return dict(self._write("POST", target, body, idempotency_key))

    def update(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        pull_request: int,
        comment_id: int,
        text: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        target = self._url(provider, end_user_id, repository, "pull-requests", pull_request, "comments", comment_id)
        return dict(self._write("PUT", target, {"text": text}, idempotency_key))

    def delete(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        pull_request: int,
        comment_id: int,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        target = self._url(provider, end_user_id, repository, "pull-requests", pull_request, "comments", comment_id)
        return dict(self._write("DELETE", target, None, idempotency_key))

    def upsert(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        pull_request: int,
        marker: str,
        text: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        target = self._url(provider, end_user_id, repository, "pull-requests", pull_request, "comments")
        return dict(self._write("PUT", target, {"marker": marker, "text": text}, idempotency_key))


class _PullRequests(_Actions):
    """Review actions, as the end user: `request_changes` is Data Center's "needs work" too (`needs_work`)."""

    def _act(
        self, provider: str, end_user_id: str, repository: str, pull_request: int, action: str, body: Any, key: Any
    ) -> dict[str, Any]:
        target = self._url(provider, end_user_id, repository, "pull-requests", pull_request, action)
        return dict(self._write("POST", target, body, key))

    def approve(
        self, provider: str, end_user_id: str, repository: str, pull_request: int, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._act(provider, end_user_id, repository, pull_request, "approve", {}, idempotency_key)

    def unapprove(
        self, provider: str, end_user_id: str, repository: str, pull_request: int, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._act(provider, end_user_id, repository, pull_request, "unapprove", {}, idempotency_key)

    def request_changes(
        self, provider: str, end_user_id: str, repository: str, pull_request: int, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._act(provider, end_user_id, repository, pull_request, "request-changes", {}, idempotency_key)

    needs_work = request_changes

    def merge(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        pull_request: int,
        *,
        strategy: str | None = None,
        message: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"strategy": strategy, "message": message}.items() if v is not None}
        return self._act(provider, end_user_id, repository, pull_request, "merge", body, idempotency_key)

    def decline(
        self,
        provider: str,
        end_user_id: str,
        repository: str,
        pull_request: int,
        *,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return self._act(provider, end_user_id, repository, pull_request, "decline", body, idempotency_key)


class Client:
    """A product backend's handle on bitbridge. `credentials` is the key from `bitbridge clients add`."""

    def __init__(
        self,
        base_url: str,
        credentials: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.timeout = timeout
        self._http = session or requests.Session()
        self.proxy = _Proxy(self)
        self.imports = _Imports(self)
        self.files = _Files(self)
        self.statuses = _Statuses(self)
        self.comments = _Comments(self)
        self.pull_requests = _PullRequests(self)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, credentials=***)"

    # -- plumbing ----------------------------------------------------------------------------------
    def _url(self, *parts: str) -> str:
        return f"{self.base_url}/service/v1/" + "/".join(quote(p, safe="") for p in parts)

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        service_errors_only: bool = False,
    ) -> requests.Response:
        response = self._http.request(
            method,
            url,
            params=params,
            json=json,
            headers={"Authorization": f"Bearer {self._credentials}"},
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            is_service_error = _is_service_error(response)
            if not service_errors_only or is_service_error:
                raise _error(response)
        return response

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._send(method, url, **kwargs).json()

    def _write(self, method: str, url: str, body: Any, idempotency_key: str | None) -> Any:
        """A write, with an Idempotency-Key, sent again with the same key when it may not have landed."""
        import time
        import uuid

        key = idempotency_key or str(uuid.uuid4())
        headers = {"Authorization": f"Bearer {self._credentials}", "Idempotency-Key": key}
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                response = self._http.request(method, url, json=body, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout):
                if attempt == WRITE_ATTEMPTS:
                    raise
            else:
                again = response.status_code >= 500 or (
                    response.status_code == 409 and _code(response) == "idempotency_in_progress"
                )
                if not again or attempt == WRITE_ATTEMPTS:
                    if response.status_code >= 400:
                        raise _error(response)
                    return response.json()
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1])
        raise AssertionError("unreachable")

    # -- the API -----------------------------------------------------------------------------------
    def connect_session(self, end_user_id: str, *, return_to: str, provider: str | None = None) -> ConnectSession:
        """A one-time, short-lived URL to send the end user to (redirect their browser there)."""
        body: dict[str, Any] = {"end_user_id": end_user_id, "return_to": return_to}
        if provider:
            body["provider"] = provider
        data = self._call("POST", self._url("connect-sessions"), json=body)
        return ConnectSession(data["connect_url"], data["expires_at"], data["end_user_id"], data.get("provider"))

    def connection(self, provider: str, end_user_id: str) -> dict[str, Any]:
        """The end user's connection (never its token): status, username, scopes."""
        return dict(self._call("GET", self._url("connections", provider, end_user_id)))

    def budget(self, provider: str, end_user_id: str) -> dict[str, Any]:
        """The end user's Bitbucket rate-limit budgets: per resource class, used and limit now, 429s met and
        work waiting (`scope` per_consumer: the OAuth consumer's, shared by every end user)."""
        return dict(self._call("GET", self._url("connections", provider, end_user_id, "budget")))

    def delete_connection(self, provider: str, end_user_id: str) -> None:
        self._call("DELETE", self._url("connections", provider, end_user_id))

    def changes(self, provider: str, end_user_id: str, repository: str, *, base: str, head: str) -> Changes:
        """What `head` has that `base` does not, from their merge base (as a pull request of head into base
        shows it), in events' `changed_files` shape. Scope `files:read`."""
        return _changes(self, provider, end_user_id, repository, base, head)

    def token(self, provider: str, end_user_id: str) -> Token:
        """A fresh access token for the end user, valid for at least 5 more minutes."""
        data = self._call("POST", self._url("connections", provider, end_user_id, "token"))
        return Token(
            data["access_token"],
            int(data["expires_at"]),
            list(data["scopes"]),
            data.get("username"),
            provider,
            end_user_id,
        )


def _changes(client: Client, provider: str, end_user_id: str, repository: str, base: str, head: str) -> Changes:
    params = {"repository": repository, "base": base, "head": head}
    data = client._call("GET", client._url("files", provider, end_user_id, "changes"), params=params)
    return Changes(changed_files(data["changed_files"]), data["changed_files_count"], data["changed_files_truncated"])


def _code(response: requests.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return str(error.get("code")) if isinstance(error, dict) else None


def _is_service_error(response: requests.Response) -> bool:
    """bitbridge marks its own refusals with `X-Bitbridge-Error: 1`; a proxied Bitbucket error (a 404 for a
    missing repository, say) has no such header and comes back as a ProxyResponse, not an exception."""
    return response.headers.get("X-Bitbridge-Error") == "1"
