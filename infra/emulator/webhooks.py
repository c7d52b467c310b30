"""Webhook delivery: real HTTP POSTs from a background worker, signed and retried the way each flavour does.

Events are rendered when they happen (under the backend lock, so the payload is a snapshot) and queued;
a single worker thread delivers them in order, so the state-changing call returns immediately.

What can go wrong is modelled too, and every outcome lands in the delivery log with a reason: delivery
faults (``traffic.DeliveryFaults``: lost deliveries, unreachable receivers, answers slower than
``delivery_timeout``), changes made with ``deliver: false`` (no delivery at all), and Data Center's circuit
breaker, which skips a hook after ``dc_hook_failure_threshold`` consecutive failures.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from . import cloud, datacenter
from .models import CLOUD, DC, Event, Hook
from .traffic import DeliveryFault
from .web import Ctx

if TYPE_CHECKING:
    from .server import Emulator


def sign(secret: str, body: bytes) -> str:
    """X-Hub-Signature value: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    id: int
    flavor: str
    hook_id: str | None
    url: str
    event_key: str
    request_id: str
    headers: dict[str, str]
    body: bytes
    secret: str | None = None
    repository: str = ""
    status: int | None = None
    state: str = "pending"  # pending | delivered | failed | dropped | skipped
    reason: str | None = None  # why it was dropped, skipped or failed
    attempts: list[dict] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    hook: Hook | None = field(default=None, repr=False)
    fault: DeliveryFault | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flavor": self.flavor,
            "repository": self.repository,
            "hook_id": self.hook_id,
            "url": self.url,
            "event_key": self.event_key,
            "request_id": self.request_id,
            "headers": self.headers,
            "status": self.status,
            "state": self.state,
            "reason": self.reason,
            "fault_id": self.fault.id if self.fault else None,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "payload": json.loads(self.body),
        }

    def finish(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason = state, reason


class WebhookDispatcher:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backend = emulator.backend
        self.queue: queue.Queue[Delivery | None] = queue.Queue()
        self.log: list[Delivery] = []
        self._log_lock = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._session.trust_env = False  # hooks on loopback must not go through a proxy
        self._local = threading.local()  # per request thread: is this change silent?
        self.backend.listeners.append(self.on_event)

    # ---------------------------------------- lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="emulator-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery finished (tests and the control API use this)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def clear(self) -> None:
        with self._log_lock:
            self.log.clear()

    def deliveries(self) -> list[dict]:
        with self._log_lock:
            return [d.as_dict() for d in self.log]

    # ---------------------------------------- events
    def _ctx(self, flavor: str) -> Ctx:
        root = self.backend.public_urls[flavor]
        request = Request(EnvironBuilder(base_url=root).get_environ())
        return Ctx(request, self.backend, flavor, root, self.emulator)

    @contextlib.contextmanager
    def silenced(self, active: bool = True) -> Iterator[None]:
        """Changes made in this block (on this thread) fire no webhook: the log records them as dropped."""
        previous = getattr(self._local, "silent", False)
        self._local.silent = active or previous
        try:
            yield
        finally:
            self._local.silent = previous

    def on_event(self, event: Event) -> None:
        hooks = [h for h in event.repo.hooks.values() if h.active]
        if not hooks:
            return
        ctx = self._ctx(event.flavor)
        rendered = (cloud if event.flavor == CLOUD else datacenter).render_event(ctx, event)
        if rendered is None:
            return
        key, payload = rendered
        body = json.dumps(payload).encode()
        for h in hooks:
            if key not in h.events:
                continue
            delivery = self._build(event.flavor, h, key, body, repository=event.repo.full_name)
            if getattr(self._local, "silent", False):
                delivery.finish("dropped", "silent change (deliver: false)")
                continue
            delivery.fault = self.emulator.delivery_faults.check(event.flavor, delivery.repository, h.id, key, h.url)
            if delivery.fault and delivery.fault.action == "drop":
                delivery.finish("dropped", delivery.fault.describe())
                continue
            self._enqueue(delivery)

    def _build(
        self,
        flavor: str,
        h: Hook | None,
        key: str,
        body: bytes,
        secret: str | None = None,
        repository: str = "",
    ) -> Delivery:
        request_id = str(uuid.uuid4())
        secret = h.secret if h else secret
        if flavor == CLOUD:
            headers = {
                "X-Event-Key": key,
                "X-Hook-UUID": (h.id if h else "").strip("{}"),
                "X-Request-UUID": request_id,
                "User-Agent": "Bitbucket-Webhooks/2.0",
                "Content-Type": "application/json",
                "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            }
        else:
            headers = {
                "X-Event-Key": key,
                "X-Request-Id": request_id,
                "User-Agent": "Atlassian HttpClient 4.2.0 / Bitbucket-9.2.0 (9002000) / Default",
                "Content-Type": "application/json; charset=utf-8",
            }
        if secret:
            headers["X-Hub-Signature"] = sign(secret, body)
        with self._log_lock:
            delivery = Delivery(
                len(self.log) + 1,
                flavor,
                h.id if h else None,
                h.url if h else "",
                key,
                request_id,
                headers,
                body,
                secret,
                repository,
                hook=h,
            )
            self.log.append(delivery)
        return delivery

    def _enqueue(self, delivery: Delivery) -> None:
        with self._idle:
            self._pending += 1
        self.queue.put(delivery)

    # ---------------------------------------- delivery
    def _worker(self) -> None:
        while True:
            delivery = self.queue.get()
            if delivery is None:
                return
            try:
                self._deliver(delivery)
            except Exception as exc:  # never let one bad hook kill the worker
                delivery.finish("failed", f"emulator error: {exc!r}")
                delivery.attempts.append({"attempt": len(delivery.attempts) + 1, "error": repr(exc)})
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _post(self, delivery: Delivery, attempt: int) -> dict:
        headers = dict(delivery.headers)
        if delivery.flavor == CLOUD:
            headers["X-Attempt-Number"] = str(attempt)
        timeout = self.backend.config.delivery_timeout
        fault = delivery.fault
        record: dict[str, Any] = {"attempt": attempt}
        if fault and fault.action == "unreachable":
            record.update(error="ConnectionError", duration_ms=0.0)
            return record
        started = time.monotonic()
        try:
            resp = self._session.post(delivery.url, data=delivery.body, headers=headers, timeout=timeout)
            record["status"] = resp.status_code
        except requests.Timeout:
            record["error"] = "timeout"
        except requests.RequestException as exc:
            record["error"] = type(exc).__name__
        if fault and fault.action == "delay" and "status" in record:
            # The receiver answered, but (as injected) only after delay_ms: past the timeout Bitbucket has
            # stopped waiting and counts a timeout, although the receiver did get the request.
            elapsed = time.monotonic() - started
            delay = (fault.delay_ms or 0) / 1000
            time.sleep(max(0.0, min(delay, timeout - elapsed)))
            if elapsed + delay >= timeout:
                record["error"] = "timeout"
                record["receiver_status"] = record.pop("status")
        record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        return record

    def _skip_reason(self, delivery: Delivery) -> str | None:
        """Why Data Center would not call this hook now (disabled, or its circuit breaker is open)."""
        hook = delivery.hook
        if delivery.flavor != DC or hook is None:
            return None
        with self.backend.lock:
            if not hook.active:
                return hook.disabled_reason or "webhook is not active"
            if hook.skip_until is not None and time.monotonic() < hook.skip_until:
                return (
                    f"webhook failed {hook.consecutive_failures} times in a row: skipped by the circuit breaker "
                    f"for another {hook.skip_until - time.monotonic():.1f} s"
                )
        return None

    def _record_outcome(self, delivery: Delivery) -> None:
        """Data Center's circuit breaker: consecutive failures open it (or, configured, disable the hook)."""
        hook = delivery.hook
        if delivery.flavor != DC or hook is None:
            return
        cfg = self.backend.config
        with self.backend.lock:
            if delivery.state == "delivered":
                hook.consecutive_failures, hook.skip_until = 0, None
                return
            hook.consecutive_failures += 1
            threshold = cfg.dc_hook_failure_threshold
            if threshold <= 0 or hook.consecutive_failures < threshold:
                return
            if cfg.dc_hook_on_failures == "disable":
                hook.active = False
                hook.disabled_reason = f"disabled after {hook.consecutive_failures} consecutive failed deliveries"
                return
            over = hook.consecutive_failures - threshold
            window = min(cfg.dc_hook_skip_seconds * cfg.dc_hook_skip_exponent**over, cfg.dc_hook_skip_max_seconds)
            hook.skip_until = time.monotonic() + window

    def _deliver(self, delivery: Delivery) -> None:
        skip = self._skip_reason(delivery)
        if skip:
            delivery.finish("skipped", skip)
            return
        # Cloud resends up to two more times on 5xx or timeout (same X-Request-UUID); DC does not retry.
        max_attempts = 3 if delivery.flavor == CLOUD else 1
        for attempt in range(1, max_attempts + 1):
            record = self._post(delivery, attempt)
            delivery.attempts.append(record)
            delivery.status = record.get("status")
            if delivery.flavor == CLOUD and attempt == 1:
                delivery.headers["X-Attempt-Number"] = "1"
            status = record.get("status")
            if status is not None and status < 500:
                break
            if attempt < max_attempts:
                time.sleep(self.backend.config.delivery_retry_delay)
        status = delivery.status
        if status is not None and 200 <= status < 300:
            delivery.finish("delivered")
        else:
            last = delivery.attempts[-1]
            why = f"HTTP {status}" if status is not None else str(last.get("error"))
            if delivery.fault:
                why += f" ({delivery.fault.describe()})"
            delivery.finish("failed", f"{why} after {len(delivery.attempts)} attempt(s)")
        self._record_outcome(delivery)

    def ping(self, url: str) -> dict:
        """DC 'Test connection': diagnostics:ping, unsigned, body {"test": true}, sent synchronously."""
        delivery = self._build(DC, None, "diagnostics:ping", b'{"test": true}')
        delivery.url = url
        record = self._post(delivery, 1)
        delivery.attempts.append(record)
        delivery.status = record.get("status")
        ok = delivery.status is not None and 200 <= delivery.status < 300
        delivery.finish("delivered" if ok else "failed", None if ok else str(record.get("error") or delivery.status))
        return {
            "request": {"url": url, "method": "POST", "headers": delivery.headers, "body": '{"test": true}'},
            "result": {"status": delivery.status, "description": record.get("error") or "OK"},
        }


__all__ = ["DC", "Delivery", "WebhookDispatcher", "sign"]
