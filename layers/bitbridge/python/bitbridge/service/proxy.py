"""The authenticated proxy: a provider-relative path, the end user's token, Bitbucket's answer passed through.

Path safety is a pure function (`safe_path`): only paths below the provider's REST API root, so no
absolute URL, `//host`, dot segment, encoded separator or dot, backslash, control character or OAuth
endpoint can move the request to another host or path. Retries (`plan_retry`) are pure too: one
refresh-and-retry on a 401, waiting out a 429 (Retry-After) within a budget, and a bounded number of
retries on 5xx for idempotent methods only. Pagination links in JSON bodies are rewritten to come back
through the proxy.
"""

from __future__ import annotations

import json
import posixpath
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from bitbridge.bitbucket.http import TIMEOUT, session
from bitbridge.service.errors import ServiceRefused, refuse

MAX_REQUEST_BYTES = 1024 * 1024  # a proxied request body
MAX_RESPONSE_BYTES = 5 * 1024 * 1024  # below Lambda's 6 MB response limit, with room for base64
METHODS = ("GET", "POST", "PUT", "DELETE")
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})
MAX_5XX_RETRIES = 2
RATE_LIMIT_BUDGET_SECONDS = 10.0  # the function's timeout leaves room for this much waiting
DEFAULT_RATE_LIMIT_WAIT = 1.0  # Cloud's 429 may carry no Retry-After
MAX_PATH_LENGTH = 2048

_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@{}%-]+$")  # RFC 3986 pchar (+ braces for Cloud uuids)
_ENCODED_FORBIDDEN = re.compile(r"%(2e|2f|5c|25|3f|23|[01][0-9a-f]|7f)", re.I)  # . / \ % ? # and controls
# Unreachable from below the API root anyway; refused by name too, so a mistake elsewhere cannot reach them.
_FORBIDDEN_SEGMENTS = {"oauth2", "access_token"}

# Response headers worth passing on; hop-by-hop and Bitbucket's cookies stay behind.
PASSED_HEADERS = ("Content-Type", "Retry-After", "ETag", "Last-Modified", "X-RateLimit-Limit", "X-RateLimit-Remaining")


def refused(reason: str) -> ServiceRefused:
    return refuse(
        "path_not_allowed", f"Refusing to proxy this path: {reason}. Give a path below the provider's REST API."
    )


def safe_path(raw: str) -> str:
    """The raw (still percent-encoded) path below the API root, or ServiceError 400 saying why not."""
    if not raw or len(raw) > MAX_PATH_LENGTH:
        raise refused("empty or too long")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw):
        raise refused("control characters or spaces")
    if "\\" in raw:
        raise refused("backslashes")
    if "://" in raw or raw.lower().startswith(("http:", "https:", "file:")):
        raise refused("absolute URLs")
    if raw.startswith("/"):
        raise refused("a second leading slash (//host)")
    if _ENCODED_FORBIDDEN.search(raw):
        raise refused("percent-encoded dots, slashes, backslashes or percent signs")
    path = raw
    segments = path.split("/")
    for segment in segments[:-1] if path.endswith("/") else segments:
        if segment in ("", ".") or segment.startswith(".."):
            raise refused("empty or dot segments (//, /./, /../)")
        if not _SEGMENT.match(segment):
            raise refused(f"unexpected characters in {segment[:40]!r}")
        if segment.lower() in _FORBIDDEN_SEGMENTS:
            raise refused("OAuth and non-REST endpoints")
    return path


def target_url(api_url: str, path: str) -> str:
    """api_url + path, checked once more to stay on the API's origin and below its root."""
    root = api_url.rstrip("/")
    url = f"{root}/{path}"
    parts, base = urlsplit(url), urlsplit(root)
    # HTTP clients resolve dot segments before sending, so judge the path as it will be resolved.
    resolved = posixpath.normpath(unquote(parts.path))
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not resolved.startswith(base.path + "/"):
        raise refused("it leaves the REST API root")
    return url


# ------------------------------------------------------------------------------------------------ retries


@dataclass(frozen=True)
class Decision:
    retry: bool
    wait: float = 0.0
    refresh: bool = False


@dataclass
class Attempts:
    refreshed: bool = False
    server_errors: int = 0
    rate_limited: int = 0
    waited: float = 0.0


def retry_after_seconds(header: str | None) -> float | None:
    if header and header.strip().replace(".", "", 1).isdigit():
        return float(header.strip())
    return None


def plan_retry(method: str, status: int, retry_after: str | None, attempts: Attempts) -> Decision:
    """What to do after Bitbucket answered `status` (pure: the caller sleeps and counts)."""
    if status == 401 and not attempts.refreshed:
        return Decision(True, refresh=True)
    if status == 429:
        wait = retry_after_seconds(retry_after)
        wait = DEFAULT_RATE_LIMIT_WAIT * (2 ** min(attempts.rate_limited, 3)) if wait is None else wait
        if attempts.waited + wait <= RATE_LIMIT_BUDGET_SECONDS:
            return Decision(True, wait=wait)
        return Decision(False)  # the caller gets the 429 and its Retry-After
    if status >= 500 and method in IDEMPOTENT and attempts.server_errors < MAX_5XX_RETRIES:
        return Decision(True, wait=0.2 * (2**attempts.server_errors) * (1 + random.random() / 2))  # noqa: S311
    return Decision(False)


# ------------------------------------------------------------------------------------------------ forwarding


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def rewrite_pagination(body: bytes, content_type: str, api_url: str, proxy_base: str) -> bytes:
    """Cloud's `next`/`previous` are absolute API URLs: point them back through the proxy."""
    if "json" not in content_type or not body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    root = api_url.rstrip("/") + "/"
    changed = False
    for name in ("next", "previous"):
        link = data.get(name)
        if isinstance(link, str) and link.startswith(root):
            data[name] = proxy_base.rstrip("/") + "/" + link[len(root) :]
            changed = True
    return json.dumps(data).encode() if changed else body


def _read_limited(response: requests.Response) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
        response.close()
        raise too_large("response")
    chunks, total = [], 0
    for chunk in response.iter_content(64 * 1024):
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            response.close()
            raise too_large("response")
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(what: str) -> ServiceRefused:
    limit = MAX_REQUEST_BYTES if what == "request" else MAX_RESPONSE_BYTES
    hint = "send a smaller body" if what == "request" else "ask for smaller pages (pagelen / limit) or fewer fields"
    return refuse(f"{what}_too_large", f"The {what} body is over {limit // 1024} KB; {hint}.")


def forward(
    method: str,
    url: str,
    *,
    query: str,
    body: bytes | None,
    content_type: str | None,
    token: Callable[[str | None], str],
    sleep: Callable[[float], None] = time.sleep,
) -> Answer:
    """Send the request with the user's token, retrying as `plan_retry` says. `token(stale)` gives a
    token; called with the refused one, it refreshes (through the single-refresher lease)."""
    if body is not None and len(body) > MAX_REQUEST_BYTES:
        raise too_large("request")
    attempts = Attempts()
    access = token(None)
    full = f"{url}?{query}" if query else url
    while True:
        headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = session().request(
                method, full, data=body, headers=headers, timeout=TIMEOUT, stream=True, allow_redirects=False
            )
        except requests.RequestException as exc:
            if method in IDEMPOTENT and attempts.server_errors < MAX_5XX_RETRIES:
                attempts.server_errors += 1
                sleep(0.2 * attempts.server_errors)
                continue
            raise refuse(
                "provider_unreachable", f"Bitbucket did not answer ({type(exc).__name__}); try again shortly."
            ) from None
        decision = plan_retry(method, response.status_code, response.headers.get("Retry-After"), attempts)
        if not decision.retry:
            data = _read_limited(response)
            passed = {h: response.headers[h] for h in PASSED_HEADERS if h in response.headers}
            return Answer(response.status_code, data, passed)
        response.close()
        if decision.refresh:
            attempts.refreshed = True
            access = token(access)
        elif response.status_code == 429:
            attempts.rate_limited += 1
            attempts.waited += decision.wait
            sleep(decision.wait)
        else:
            attempts.server_errors += 1
            sleep(decision.wait)


def describe(answer: Answer) -> dict[str, Any]:
    """For tests and logs: never the body, never a token."""
    return {"status": answer.status, "bytes": len(answer.body), "headers": dict(answer.headers)}
