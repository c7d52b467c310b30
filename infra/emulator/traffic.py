"""Request counting and fault injection: REST faults (429 windows, 5xx, latency, dropped connections) and
webhook delivery faults (lost deliveries, unreachable receivers, answers slower than the timeout)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._per_repo: Counter[tuple[str, str]] = Counter()
        self._faulted: Counter[str] = Counter()

    def count(self, flavor: str, endpoint: str, repository: str | None = None) -> None:
        with self._lock:
            self._counts[(flavor, endpoint)] += 1
            if repository:
                self._per_repo[(flavor, repository)] += 1

    def count_fault(self, flavor: str) -> None:
        with self._lock:
            self._faulted[flavor] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._per_repo.clear()
            self._faulted.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            flavors: dict[str, Any] = {}

            def entry(flavor: str) -> dict[str, Any]:
                return flavors.setdefault(flavor, {"total": 0, "faulted": 0, "endpoints": {}, "repositories": {}})

            for (flavor, endpoint), n in sorted(self._counts.items()):
                entry(flavor)["endpoints"][endpoint] = n
                entry(flavor)["total"] += n
            for (flavor, repository), n in sorted(self._per_repo.items()):
                entry(flavor)["repositories"][repository] = n
            for flavor, n in self._faulted.items():
                entry(flavor)["faulted"] = n
            return {"total": sum(self._counts.values()), "flavors": flavors}


@dataclass
class Fault:
    """One rule. The first ``after`` matching requests pass; then it fires for ``count`` requests or for
    ``seconds`` (from the first firing), or forever when neither is set."""

    id: int
    status: int | None = None
    after: int = 0
    count: int | None = None
    seconds: float | None = None
    path_prefix: str = ""
    method: str | None = None
    flavor: str | None = None
    retry_after: float | None = None
    latency_ms: float | None = None
    # With latency_ms only: the request is handled at once and its answer held back (a reply that
    # reaches a client after its read timeout - e.g. a token rotation whose new pair is lost).
    late_answer: bool = False
    drop_connection: bool = False
    body: Any = None
    seen: int = 0
    fired: int = 0
    started_at: float | None = field(default=None, repr=False)

    def matches(self, flavor: str, method: str, path: str) -> bool:
        return (
            (self.flavor is None or self.flavor == flavor)
            and (self.method is None or self.method.upper() == method)
            and path.startswith(self.path_prefix)
        )

    def expired(self, now: float) -> bool:
        if self.count is not None and self.fired >= self.count:
            return True
        return self.seconds is not None and self.started_at is not None and now - self.started_at >= self.seconds


@dataclass
class Action:
    status: int | None = None
    retry_after: str | None = None
    drop: bool = False
    body: Any = None


class Faults:
    _FIELDS = {
        "status",
        "after",
        "count",
        "seconds",
        "path_prefix",
        "method",
        "flavor",
        "retry_after",
        "latency_ms",
        "late_answer",
        "drop_connection",
        "body",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._next = 1

    def add(self, spec: dict) -> Fault:
        unknown = set(spec) - self._FIELDS
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if not (spec.get("status") or spec.get("latency_ms") or spec.get("drop_connection")):
            raise ValueError("a fault needs status, latency_ms or drop_connection")
        with self._lock:
            fault = Fault(id=self._next, **spec)
            self._next += 1
            self._rules.append(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [{k: v for k, v in asdict(f).items() if k != "started_at"} for f in self._rules]

    def check(self, flavor: str, method: str, path: str) -> tuple[float, Action | None, float]:
        """Returns (latency to add before handling in seconds, terminal action or None, seconds to hold
        the answer back after handling)."""
        latency, action, late = 0.0, None, 0.0
        now = time.monotonic()
        with self._lock:
            for fault in self._rules:
                if not fault.matches(flavor, method, path):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after or fault.expired(now):
                    continue
                if fault.started_at is None:
                    fault.started_at = now
                if fault.latency_ms and not (fault.status or fault.drop_connection):
                    fault.fired += 1
                    if fault.late_answer:
                        late += fault.latency_ms / 1000
                    else:
                        latency += fault.latency_ms / 1000
                    continue
                if action is not None:
                    continue
                fault.fired += 1
                latency += (fault.latency_ms or 0) / 1000
                retry_after = fault.retry_after
                if retry_after is None and fault.status == 429 and fault.seconds is not None:
                    retry_after = max(1, math.ceil(fault.seconds - (now - fault.started_at)))
                action = Action(
                    fault.status,
                    None if retry_after is None else str(math.ceil(retry_after)),
                    fault.drop_connection,
                    fault.body,
                )
        return latency, action, late


# ---------------------------------------- webhook delivery faults
DELIVERY_ACTIONS = ("drop", "unreachable", "delay")


@dataclass
class DeliveryFault:
    """One rule over webhook deliveries. Matching deliveries (by flavor, repository, hook, event, url) are hit
    with probability ``fraction`` (a RNG seeded with ``seed``, so runs repeat), after the first ``after``
    matches, for ``count`` hits or ``seconds`` from the rule's creation (neither = forever).

    Actions: ``drop`` - Bitbucket loses the delivery (never sent, no retry, not a receiver failure);
    ``unreachable`` - every attempt fails as if the URL did not answer (a failure: Cloud retries, DC counts it);
    ``delay`` - the receiver gets the request but its answer is held back ``delay_ms``; past the delivery
    timeout the attempt is a timeout failure."""

    id: int
    action: str = "drop"
    fraction: float = 1.0
    seed: int = 0
    after: int = 0
    count: int | None = None
    seconds: float | None = None
    delay_ms: float | None = None
    flavor: str | None = None
    repository: str | None = None  # "acme/web-app", "PLAT/core", "~ALICE/dotfiles" (case-insensitive)
    hook_id: str | None = None
    event_key: str | None = None
    url: str | None = None
    seen: int = 0
    fired: int = 0
    created_at: float = field(default_factory=time.monotonic, repr=False)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def matches(self, flavor: str, repository: str, hook_id: str, event_key: str, url: str) -> bool:
        return (
            (self.flavor is None or self.flavor == flavor)
            and (self.repository is None or self.repository.lower() == repository.lower())
            and (self.hook_id is None or self.hook_id.strip("{}") == hook_id.strip("{}"))
            and (self.event_key is None or self.event_key == event_key)
            and (self.url is None or self.url == url)
        )

    def expired(self, now: float) -> bool:
        if self.count is not None and self.fired >= self.count:
            return True
        return self.seconds is not None and now - self.created_at >= self.seconds

    def describe(self) -> str:
        what = {"drop": "dropped", "unreachable": "receiver unreachable"}.get(self.action)
        what = what or f"answer delayed {self.delay_ms:g} ms"
        share = f" (fraction {self.fraction:g})" if self.fraction < 1 else ""
        return f"{what} by delivery fault {self.id}{share}"


class DeliveryFaults:
    _FIELDS = {f for f in DeliveryFault.__dataclass_fields__ if f not in ("id", "seen", "fired", "created_at", "rng")}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[DeliveryFault] = []
        self._next = 1

    def add(self, spec: dict) -> DeliveryFault:
        spec = dict(spec)
        if "drop_fraction" in spec:  # shorthand: {"drop_fraction": 0.3, "seed": 7}
            spec.setdefault("action", "drop")
            spec["fraction"] = spec.pop("drop_fraction")
        unknown = set(spec) - self._FIELDS
        if unknown:
            raise ValueError(f"unknown delivery fault field(s): {', '.join(sorted(unknown))}")
        action = spec.get("action", "drop")
        if action not in DELIVERY_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(DELIVERY_ACTIONS)}")
        fraction = spec.get("fraction", 1.0)
        if not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            raise ValueError("fraction (drop_fraction) must be a number from 0 to 1")
        if action == "delay" and not spec.get("delay_ms"):
            raise ValueError("a delay fault needs delay_ms")
        if action != "delay" and spec.get("delay_ms"):
            raise ValueError("delay_ms only goes with action delay")
        with self._lock:
            rule = DeliveryFault(id=self._next, **spec)
            self._next += 1
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._next = 1  # ids restart, so a test's rule ids (and reasons in the log) repeat run to run

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            kept = [r for r in self._rules if r.id != rule_id]
            removed = len(kept) != len(self._rules)
            self._rules = kept
            return removed

    def list(self) -> list[dict]:
        with self._lock:
            return [
                {k: v for k, v in asdict(r).items() if k not in ("created_at", "rng")}
                | {"active": not r.expired(time.monotonic())}
                for r in self._rules
            ]

    def check(self, flavor: str, repository: str, hook_id: str, event_key: str, url: str) -> DeliveryFault | None:
        """The rule that hits this delivery, if any (first firing rule wins). Called once per delivery, in
        the order the changes happened, so a seeded fraction picks the same deliveries on every run."""
        now = time.monotonic()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(flavor, repository, hook_id, event_key, url):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after or rule.expired(now):
                    continue
                if rule.fraction < 1 and rule.rng.random() >= rule.fraction:
                    continue
                rule.fired += 1
                return rule
        return None
