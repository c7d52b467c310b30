"""The authenticated proxy: a provider-relative path, the end user's token, Bitbucket's answer passed through.

Path safety is a pure function (`safe_path`): only paths below the provider's REST API root, so no
absolute URL, `//host`, dot segment, encoded separator or dot, backslash, control character or OAuth
endpoint can move the request to another host or path. The call goes through `bitbridge.calls.Caller`
like every Bitbucket call, with the proxy's `PATIENCE`: one refresh-and-retry on a 401, 429s waited out
(Retry-After) within a budget, and a bounded number of retries on 5xx for idempotent methods only. The call
spends the end user's rate-limit budget first, as a person waiting (`X-Bitbridge-Budget-Wait` says how
long it waited for room; with none within a few seconds the answer is bitbridge's 429 `rate_limited`).
Pagination links in JSON bodies are rewritten to come back through the proxy.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from bitbridge.bitbucket.http import BitbucketError
from bitbridge.calls import Caller, Patience
from bitbridge.service.errors import ServiceRefused, refuse

MAX_REQUEST_BYTES = 1024 * 1024  # a proxied request body
MAX_RESPONSE_BYTES = 5 * 1024 * 1024  # below Lambda's 6 MB response limit, with room for base64
METHODS = ("GET", "POST", "PUT", "DELETE")
# 5xx retried twice (idempotent methods); the function's timeout leaves room for 10 s of 429 waiting.
PATIENCE = Patience(transient_retries=2, retry_base=0.4, retry_cap=2.0, rate_limit_seconds=10.0)
MAX_PATH_LENGTH = 2048

_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@{}%-]+$")  # RFC 3986 pchar (+ braces for Cloud uuids)
_ENCODED_FORBIDDEN = re.compile(r"%(2e|2f|5c|25|3f|23|[01][0-9a-f]|7f)", re.I)  # . / \ % ? # and controls
# Unreachable from below the API root anyway; refused by name too, so a mistake elsewhere cannot reach them.
_FORBIDDEN_SEGMENTS = {"oauth2", "access_token"}

#: Seconds the call waited for room in the end user's rate-limit budget (bitbridge.budget), on every answer.
BUDGET_WAIT_HEADER = "X-Bitbridge-Budget-Wait"

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
    caller: Caller, method: str, url: str, *, query: str, body: bytes | None, content_type: str | None
) -> Answer:
    """Send the request as `caller` (the end user's token, refreshed once on a 401; its patience is
    `PATIENCE`) and answer Bitbucket's final answer, whatever its status."""
    if body is not None and len(body) > MAX_REQUEST_BYTES:
        raise too_large("request")
    headers = {"Accept": "application/json", **({"Content-Type": content_type} if content_type else {})}
    try:
        response = caller.send(
            method,
            f"{url}?{query}" if query else url,
            what="proxying",
            data=body,
            headers=headers,
            stream=True,
            allow_redirects=False,
        )
    except BitbucketError as exc:
        raise refuse("provider_unreachable", f"Bitbucket did not answer ({exc}); try again shortly.") from None
    data = _read_limited(response)
    passed = {h: response.headers[h] for h in PASSED_HEADERS if h in response.headers}
    passed[BUDGET_WAIT_HEADER] = f"{caller.budget_waited:.3f}"
    return Answer(response.status_code, data, passed)


def describe(answer: Answer) -> dict[str, Any]:
    """For tests and logs: never the body, never a token."""
    return {"status": answer.status, "bytes": len(answer.body), "headers": dict(answer.headers)}
