"""Bitbucket's rate limits as bitbridge budgets them: each flavor's model, published numbers and resource
classes, and a provider's own settings on top (`bitbridge providers set-limits`).

- **Cloud** counts a user's authenticated calls in a rolling window (an hour) per resource class:
  `/2.0/repositories/*` 1,000, webhook operations 1,000, raw file reads 5,000, git 60,000, and 1,000 for
  the rest of the API (Atlassian, "API request limits"; ../shared/docs/bitbucket-api.md §5).
- **Data Center**, when its admin turns rate limiting on, gives each user a token bucket over every
  authenticated HTTP request (commonly 60 tokens, refilled 5 per second).

Whose allowance a call spends (`scope`): the person's (`per_user`, the default) or the OAuth consumer's
(`per_consumer`), since Atlassian's own texts disagree for OAuth calls. The classes and the model are the
only flavor knowledge the budget needs; everything else about budgeting is flavor-neutral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

WINDOW = "window"  # Cloud: calls per rolling window, per class
BUCKET = "bucket"  # Data Center: a token bucket (capacity, refill per second)
PER_USER = "per_user"
PER_CONSUMER = "per_consumer"
SCOPES = (PER_USER, PER_CONSUMER)
DEFAULT_RESERVE = 0.05  # the share of each allowance only a person waiting may spend

# Cloud's resource classes and their published hourly limits; "other" is the page's general figure for
# the API paths its table does not name (/2.0/user, /2.0/workspaces, ...).
CLOUD_CLASSES: dict[str, int] = {"repositories": 1000, "webhooks": 1000, "raw": 5000, "git": 60000, "other": 1000}
CLOUD_WINDOW_SECONDS = 3600.0
DC_CLASS = "http"  # Data Center: one bucket per user over every authenticated request
DC_CAPACITY = 60
DC_REFILL_PER_SECOND = 5.0

#: What a caller may name for a call whose class it knows before the URL is built.
REPOSITORIES = "repositories"
WEBHOOKS = "webhooks"
GIT = "git"  # git over HTTPS (Cloud counts it in its own allowance: 60,000 an hour)


class LimitsError(ValueError):
    """A limit setting bitbridge refuses (the message says which and why)."""


@dataclass(frozen=True)
class Limits:
    """A provider's effective limits: its flavor's model with the admin's settings applied."""

    model: str  # WINDOW | BUCKET
    classes: dict[str, int] = field(default_factory=dict)  # window: calls per window; bucket: {http: capacity}
    window_seconds: float = CLOUD_WINDOW_SECONDS  # window model only
    refill_per_second: float = 0.0  # bucket model only
    scope: str = PER_USER
    reserve: float = DEFAULT_RESERVE
    enabled: bool = True

    def limit(self, klass: str) -> int | None:
        """The class's limit (calls per window, or the bucket's capacity); None: not limited."""
        return self.classes.get(klass)

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "scope": self.scope, "enabled": self.enabled}
        body |= {"reserve": self.reserve, "classes": dict(self.classes)}
        if self.model == WINDOW:
            body["window_seconds"] = self.window_seconds
        else:
            body["refill_per_second"] = self.refill_per_second
        return body


def cloud_defaults() -> Limits:
    return Limits(WINDOW, dict(CLOUD_CLASSES), CLOUD_WINDOW_SECONDS)


def datacenter_defaults() -> Limits:
    return Limits(BUCKET, {DC_CLASS: DC_CAPACITY}, refill_per_second=DC_REFILL_PER_SECOND)


def cloud_class(url: str, api_url: str) -> str:
    """The class a Cloud REST URL is counted in (the path below the API root, e.g. `/2.0`)."""
    root = urlsplit(api_url).path.rstrip("/")
    path = urlsplit(url).path
    parts = path[len(root) :].strip("/").split("/") if path.startswith(root) else []
    if parts[:1] == ["repositories"]:
        below = parts[3] if len(parts) > 3 else ""
        return {"hooks": "webhooks", "src": "raw"}.get(below, "repositories")
    if parts[:1] == ["workspaces"] and len(parts) > 2 and parts[2] == "hooks":
        return "webhooks"
    return "other"


def _number(value: Any, what: str, *, minimum: float, whole: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LimitsError(f"{what} must be a number")
    if value < minimum or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise LimitsError(f"{what} must be {kind} of at least {minimum:g}")
    return float(value)


def apply(defaults: Limits, settings: dict[str, Any] | None) -> Limits:
    """The flavor's defaults with a provider's stored settings on top (LimitsError when they do not fit the
    flavor: a Data Center provider has one class and a refill rate, Cloud a window and its classes)."""
    s = dict(settings or {})
    classes = dict(defaults.classes)
    for name, value in dict(s.get("classes") or {}).items():
        if name not in defaults.classes:
            raise LimitsError(f"unknown class {name!r} for this provider; its classes: {', '.join(defaults.classes)}")
        classes[name] = int(_number(value, f"the limit of {name}", minimum=1, whole=True))
    window = defaults.window_seconds
    refill = defaults.refill_per_second
    if s.get("window_seconds") is not None:
        if defaults.model != WINDOW:
            raise LimitsError("a token bucket has no window: set --class http=CAPACITY and --refill-per-second")
        window = _number(s["window_seconds"], "window_seconds", minimum=1)
    if s.get("refill_per_second") is not None:
        if defaults.model != BUCKET:
            raise LimitsError("a rolling window has no refill rate: set --window-seconds and --class NAME=N")
        refill = _number(s["refill_per_second"], "refill_per_second", minimum=0.001)
    scope = s.get("scope", defaults.scope)
    if scope not in SCOPES:
        raise LimitsError(f"scope must be one of {', '.join(SCOPES)}")
    reserve = _number(s.get("reserve", defaults.reserve), "reserve", minimum=0)
    if reserve >= 0.5:
        raise LimitsError("reserve is a share below 0.5 (e.g. 0.05 keeps 5 % for people waiting)")
    enabled = s.get("enabled", True)
    if not isinstance(enabled, bool):
        raise LimitsError("enabled must be true or false")
    return Limits(defaults.model, classes, window, refill, scope, reserve, enabled)
