"""Request counting and fault injection (429 windows, 5xx, latency, dropped connections)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._faulted: Counter[str] = Counter()

    def count(self, flavor: str, endpoint: str) -> None:
        with self._lock:
            self._counts[(flavor, endpoint)] += 1

    def count_fault(self, flavor: str) -> None:
        with self._lock:
            self._faulted[flavor] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faulted.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            flavors: dict[str, Any] = {}
            for (flavor, endpoint), n in sorted(self._counts.items()):
                entry = flavors.setdefault(flavor, {"total": 0, "faulted": 0, "endpoints": {}})
                entry["endpoints"][endpoint] = n
                entry["total"] += n
            for flavor, n in self._faulted.items():
                flavors.setdefault(flavor, {"total": 0, "faulted": 0, "endpoints": {}})["faulted"] = n
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

    def check(self, flavor: str, method: str, path: str) -> tuple[float, Action | None]:
        """Returns (latency to add in seconds, terminal action or None)."""
        latency, action = 0.0, None
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
        return latency, action
