"""Bitbucket's rate limits, enforced.

Cloud: every authenticated request is counted against its user (or, in ``per_consumer`` mode, its OAuth
consumer) in a rolling window per resource class; past the class's limit the request is answered 429 with
the plain sentence Cloud sends an OAuth token, without Retry-After or X-RateLimit-* headers.
Data Center: each user has a token bucket (capacity, refill per second) over every request with Basic or
Bearer authentication, REST and git alike; an empty bucket answers 429 with Retry-After.

State is plain data (``RateLimiter.data``: JSON-serialisable dicts of wall-clock timestamps), so a stack that
keeps the emulator's state across restarts can save and restore it as it is. Sources: infra/emulator/README.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from .models import CLOUD, DC, Backend, BadRequest, Config, Token

CLOUD_CLASSES = ("repositories", "webhooks", "raw", "git", "other")
DC_CLASS = "http"  # one bucket per user over every authenticated HTTP request (REST and git)
COUNTING_MODES = ("per_user", "per_consumer")

# Cloud's body to an OAuth token, byte for byte as captured from bitbucket.org (Content-Length: 46; the support
# article's prose adds a full stop the wire does not carry).
CLOUD_BODY = "Rate limit for this resource has been exceeded"

_CLOUD_GIT = re.compile(r"^/[^/]+/[^/]+\.git(?:/|$)")


def cloud_class(path: str) -> str | None:
    """The resource class a Cloud request path is counted in; None for what is no API or git request
    (OAuth endpoints, web pages)."""
    if path.startswith("/2.0/") or path == "/2.0":
        parts = path.split("/")  # ['', '2.0', 'repositories', ws, slug, 'hooks', ...]
        section = parts[2] if len(parts) > 2 else ""
        if section == "repositories":
            sub = parts[5] if len(parts) > 5 else ""
            if sub == "hooks":
                return "webhooks"
            if sub == "src":
                return "raw"
            return "repositories"
        if section == "workspaces" and len(parts) > 4 and parts[4] == "hooks":
            return "webhooks"
        return "other"
    if _CLOUD_GIT.match(path):
        return "git"
    return None


def dc_counted(path: str) -> bool:
    """Data Center limits every HTTP request with Basic or Bearer authentication except its OAuth endpoints
    (which authenticate a client, not a user) and the web pages (no user credentials)."""
    return not path.startswith("/rest/oauth2/") and (
        path.startswith("/rest/") or path.startswith("/scm/") or path.startswith("/plugins/")
    )


def request_token(backend: Backend, flavor: str, request: Request) -> Token | None:
    """The valid access token a request carries (Bearer, or Basic with the token as password, as git over
    HTTP sends it), or None: requests without a valid token are answered 401 and never counted."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        raw = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            raw = base64.b64decode(credentials.strip()).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    else:
        return None
    with backend.lock:
        token = backend.access_tokens.get(raw)
    if token is None or token.flavor != flavor or token.revoked or time.time() >= token.access_expires_at:
        return None
    return token


@dataclass(frozen=True)
class Rejection:
    flavor: str
    retry_after: int | None = None

    def response(self) -> Response:
        if self.flavor == CLOUD:
            return Response(CLOUD_BODY, 429, content_type="text/plain")
        body = {
            "errors": [
                {
                    "context": None,
                    "message": "Rate limit exceeded: too many requests. Try again later.",
                    "exceptionName": None,
                }
            ]
        }
        return Response(
            json.dumps(body),
            429,
            {"Retry-After": str(self.retry_after or 1)},
            content_type="application/json;charset=UTF-8",
        )


class RateLimiter:
    """Counters for both flavours. ``data`` is plain data: ``{"windows": {key: {flavor, user, consumer, class,
    hits: [epoch seconds, ...], admitted, rejected}}, "buckets": {key: {flavor, user, consumer, class, tokens,
    updated, admitted, rejected}}}``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self.data: dict[str, dict[str, dict[str, Any]]] = {"windows": {}, "buckets": {}}

    def clear(self) -> None:
        with self._lock:
            self.data = {"windows": {}, "buckets": {}}

    def load(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.data = {"windows": dict(data.get("windows", {})), "buckets": dict(data.get("buckets", {}))}

    # ---------------------------------------- admission
    def check(self, flavor: str, path: str, request: Request) -> Rejection | None:
        """Count one request; a Rejection when it is over its limit (then it is not counted as used)."""
        cfg = self.backend.config
        if not cfg.rate_limits_enabled:
            return None
        klass = cloud_class(path) if flavor == CLOUD else (DC_CLASS if dc_counted(path) else None)
        if klass is None:
            return None
        token = request_token(self.backend, flavor, request)
        if token is None:
            return None
        # Data Center's limit is per user; Cloud's counting follows the setting (Atlassian's texts disagree).
        per_consumer = flavor == CLOUD and cfg.rate_limit_counting == "per_consumer"
        user, consumer = (None, token.client_id) if per_consumer else (token.user, None)
        who = f"consumer:{consumer}" if per_consumer else f"user:{user}"
        key = f"{flavor}|{who}|{klass}"
        now = time.time()
        with self._lock:
            if flavor == CLOUD:
                return self._window(key, user, consumer, klass, cfg, now)
            return self._bucket(key, user, klass, cfg, now)

    def _window(
        self, key: str, user: str | None, consumer: str | None, klass: str, cfg: Config, now: float
    ) -> Rejection | None:
        entry = self.data["windows"].setdefault(
            key,
            {
                "flavor": CLOUD,
                "user": user,
                "consumer": consumer,
                "class": klass,
                "hits": [],
                "admitted": 0,
                "rejected": 0,
            },
        )
        hits: list[float] = entry["hits"]
        del hits[: bisect_right(hits, now - cfg.rate_limit_window_seconds)]
        limit = cfg.cloud_rate_limits.get(klass)
        if limit is not None and len(hits) >= limit:
            entry["rejected"] += 1
            return Rejection(CLOUD)
        hits.append(now)
        entry["admitted"] += 1
        return None

    def _bucket(self, key: str, user: str | None, klass: str, cfg: Config, now: float) -> Rejection | None:
        capacity = float(cfg.dc_rate_limit["capacity"])
        rate = float(cfg.dc_rate_limit["refill_per_second"])
        entry = self.data["buckets"].setdefault(
            key,
            {
                "flavor": DC,
                "user": user,
                "consumer": None,
                "class": klass,
                "tokens": capacity,
                "updated": now,
                "admitted": 0,
                "rejected": 0,
            },
        )
        tokens = min(capacity, entry["tokens"] + max(0.0, now - entry["updated"]) * rate)
        entry["updated"] = now
        if tokens < 1:
            entry["tokens"] = tokens
            entry["rejected"] += 1
            return Rejection(DC, max(1, math.ceil((1 - tokens) / rate)))
        entry["tokens"] = tokens - 1
        entry["admitted"] += 1
        return None

    # ---------------------------------------- reporting
    def snapshot(self, flavor: str | None = None, user: str | None = None, klass: str | None = None) -> list[dict]:
        cfg = self.backend.config
        now = time.time()
        rows = []
        with self._lock:
            for entry in self.data["windows"].values():
                hits = entry["hits"]
                used = len(hits) - bisect_right(hits, now - cfg.rate_limit_window_seconds)
                rows.append(
                    {
                        "flavor": CLOUD,
                        "user": entry["user"],
                        "consumer": entry["consumer"],
                        "class": entry["class"],
                        "limit": cfg.cloud_rate_limits.get(entry["class"]),
                        "used": used,
                        "window_seconds": cfg.rate_limit_window_seconds,
                        "rejected": entry["rejected"],
                        "admitted": entry["admitted"],
                    }
                )
            capacity = float(cfg.dc_rate_limit["capacity"])
            rate = float(cfg.dc_rate_limit["refill_per_second"])
            for entry in self.data["buckets"].values():
                tokens = min(capacity, entry["tokens"] + max(0.0, now - entry["updated"]) * rate)
                rows.append(
                    {
                        "flavor": DC,
                        "user": entry["user"],
                        "consumer": None,
                        "class": entry["class"],
                        "limit": cfg.dc_rate_limit["capacity"],
                        "used": round(capacity - tokens, 3),  # tokens out of the bucket right now
                        "window_seconds": None,  # a bucket has no window: see tokens and refill_per_second
                        "rejected": entry["rejected"],
                        "admitted": entry["admitted"],
                        "tokens": round(tokens, 3),
                        "refill_per_second": cfg.dc_rate_limit["refill_per_second"],
                    }
                )
        rows = [
            r
            for r in rows
            if (flavor is None or r["flavor"] == flavor)
            and (user is None or user.lower() in (r["user"], r["consumer"]))
            and (klass is None or r["class"] == klass)
        ]
        return sorted(rows, key=lambda r: (r["flavor"], r["user"] or "", r["consumer"] or "", r["class"]))


# ---------------------------------------- configuration (POST /_emulator/config)
RATE_LIMIT_KEYS = (
    "rate_limits_enabled",
    "rate_limit_window_seconds",
    "rate_limit_counting",
    "cloud_rate_limits",
    "dc_rate_limit",
)


def configure(cfg: Config, key: str, value: Any) -> None:
    """Apply one rate-limit setting after checking it; a clear 400 otherwise. Class maps merge: keys given
    replace those classes' values, the others stay."""
    if key == "rate_limits_enabled":
        if not isinstance(value, bool):
            raise BadRequest("rate_limits_enabled must be true or false")
        cfg.rate_limits_enabled = value
    elif key == "rate_limit_window_seconds":
        if not _positive(value):
            raise BadRequest("rate_limit_window_seconds must be a number above 0 (3600 = Bitbucket's hour)")
        cfg.rate_limit_window_seconds = float(value)
    elif key == "rate_limit_counting":
        if value not in COUNTING_MODES:
            raise BadRequest("rate_limit_counting must be per_user or per_consumer")
        cfg.rate_limit_counting = value
    elif key == "cloud_rate_limits":
        if not isinstance(value, dict):
            raise BadRequest(f"cloud_rate_limits must be an object of class: limit ({', '.join(CLOUD_CLASSES)})")
        for klass, limit in value.items():
            if klass not in CLOUD_CLASSES:
                raise BadRequest(f"Unknown rate-limit class {klass!r}; use one of {', '.join(CLOUD_CLASSES)}")
            if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0):
                raise BadRequest(f"cloud_rate_limits.{klass} must be a whole number from 0, or null (no limit)")
        cfg.cloud_rate_limits = {**cfg.cloud_rate_limits, **value}
    elif key == "dc_rate_limit":
        if not isinstance(value, dict) or set(value) - {"capacity", "refill_per_second"}:
            raise BadRequest("dc_rate_limit must be an object with capacity and/or refill_per_second")
        if "capacity" in value and not (_positive(value["capacity"]) and float(value["capacity"]) >= 1):
            raise BadRequest("dc_rate_limit.capacity must be a number of at least 1")
        if "refill_per_second" in value and not _positive(value["refill_per_second"]):
            raise BadRequest("dc_rate_limit.refill_per_second must be a number above 0")
        cfg.dc_rate_limit = {**cfg.dc_rate_limit, **value}
    else:  # pragma: no cover - callers pass RATE_LIMIT_KEYS only
        raise KeyError(key)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
