"""Readiness: can this function reach what it depends on?"""

from __future__ import annotations

import time
from typing import Any

from bitbridge import __version__
from bitbridge.config import settings
from bitbridge.store.base import ping_providers_table


def readiness() -> tuple[bool, dict[str, Any]]:
    """Probe DynamoDB with a cheap read; report each check with its latency."""
    checks: dict[str, Any] = {}
    cfg = settings()
    configured = bool(cfg.providers_table and cfg.event_bus_name and cfg.import_queue_url)
    checks["configuration"] = {"ok": configured}
    started = time.perf_counter()
    try:
        ping_providers_table()
        checks["dynamodb"] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:  # any failure means "not ready"; the type name is enough to diagnose
        checks["dynamodb"] = {"ok": False, "error": type(exc).__name__}
    ready = all(check["ok"] for check in checks.values())
    return ready, {
        "status": "ok" if ready else "unavailable",
        "version": __version__,
        "stage": cfg.stage,
        "checks": checks,
    }
