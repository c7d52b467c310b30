"""Python SDK for bitbridge's service API (`/service/v1/...`): a thin, typed layer over HTTP.

    from bitbridge.client import Client

    bb = Client("https://bitbridge.example.com", "bbk_0123456789abcdef.<secret>")
    session = bb.connect_session("user-42", return_to="https://app.example.com/done", provider="bitbucket-cloud")
    token = bb.token("bitbucket-cloud", "user-42")                    # always valid >= 5 more minutes
    prs = bb.proxy.get("bitbucket-cloud", "user-42", "repositories/acme/web-app/pullrequests").json()
    job = bb.imports.start("bitbucket-cloud", "user-42", ["acme/web-app"])[0]
    readme = bb.files.get("bitbucket-cloud", "user-42", "acme/web-app", "README.md", ref="main").content
    diff = bb.changes("bitbucket-cloud", "user-42", "acme/web-app", base="v1.0", head="main").changed_files

Every refusal is a ServiceAPIError subclass carrying the API's stable `code` (see docs/service-api.md).
Depends only on `requests`.
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
        cls = ReauthRequired if code == "reauth_required" else NotConnected
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
    ) -> list[dict[str, Any]]:
        body = {"provider": provider, "end_user_id": end_user_id, "repositories": repositories, "reimport": reimport}
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


def _is_service_error(response: requests.Response) -> bool:
    """bitbridge marks its own refusals with `X-Bitbridge-Error: 1`; a proxied Bitbucket error (a 404 for a
    missing repository, say) has no such header and comes back as a ProxyResponse, not an exception."""
    return response.headers.get("X-Bitbridge-Error") == "1"
