"""One HTTP session per container, and Bitbucket's failures as bitbridge exceptions.

Every call has a timeout and goes through `bitbridge.calls.Caller.send` (token, refresh, retries).
`raise_for_status` names the failures: 429 RateLimited (with Retry-After when Bitbucket sends it),
401 Unauthorized, other 4xx BitbucketError(permanent), 5xx and network errors transient.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import requests

from bitbridge import metering

TIMEOUT = (3.05, 15)  # connect, read (seconds)
GIT_TIMEOUT = (3.05, 120)  # git's upload-pack may think for a while (counting objects) before its first byte
USER_AGENT = "bitbridge/0.1 (+https://github.com/bitbridge)"


class BitbucketError(Exception):
    """Bitbucket answered with an error. `permanent` errors are not worth retrying."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


class Unauthorized(BitbucketError):
    """The token was refused (expired, revoked or lacking a scope)."""


class RateLimited(BitbucketError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


@cache
def session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


def _summary(response: requests.Response) -> str:
    """A short description of an error body, without echoing anything sensitive."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message", ""))[:200]
        if isinstance(body.get("errors"), list) and body["errors"]:
            return str(body["errors"][0].get("message", ""))[:200]
        if isinstance(error, str):
            return f"{error}: {body.get('error_description', '')}"[:200]
    return response.reason or ""


def raise_for_status(response: requests.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _summary(response)
    if status == 429:
        header = response.headers.get("Retry-After")
        retry_after = float(header) if header and header.replace(".", "", 1).isdigit() else None
        raise RateLimited(f"{what}: rate limited by Bitbucket", retry_after)
    if status == 401:
        raise Unauthorized(f"{what}: Bitbucket refused the token ({detail})", status, permanent=True)
    raise BitbucketError(f"{what}: HTTP {status} {detail}".strip(), status, permanent=400 <= status < 500)


def send(
    method: str,
    url: str,
    token: str,
    *,
    params: dict[str, Any] | None = None,
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    allow_redirects: bool = True,
    authorization: Callable[[str], str] | None = None,
    timeout: tuple[float, float] = TIMEOUT,
) -> requests.Response:
    """One authenticated HTTP request, answered as Bitbucket answered it (network failures raise
    requests' own exceptions). Only `bitbridge.calls.Caller.send` calls it: the one way to Bitbucket.
    `authorization` makes the Authorization header from the token where Bitbucket wants other than
    `Bearer` (git over HTTPS on Cloud: `Bitbucket.git_authorization`)."""
    metering.count_bitbucket_call()
    return session().request(
        method,
        url,
        params=params,
        json=json,
        data=data,
        headers={**(headers or {}), "Authorization": authorization(token) if authorization else f"Bearer {token}"},
        timeout=timeout,
        stream=stream,
        allow_redirects=allow_redirects,
    )
