"""AWS fault injection for the local stack: a reverse proxy in front of moto server.

The functions' AWS_ENDPOINT_URL points here. Every request is forwarded to moto unchanged, unless a
fault is set for its service: then it is answered with the fault's status (503 by default) and an AWS
JSON error body, as a real outage would be. The service is read from the SigV4 credential scope in the
Authorization header (``Credential=KEY/20240501/us-east-1/events/aws4_request``), which is what names
the service on the wire. Nothing in-process is patched: the SDK sees real HTTP failures and retries as
it would on AWS.

Control (served by the local console, see stack.py)::

    POST   /faults/aws  {"service": "events", "status": 503, "seconds": 30}   seconds: omit = until cleared
    DELETE /faults/aws  [?service=events]                                    clear one or all
    GET    /faults/aws                                                       what is set, and how often it hit
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

log = logging.getLogger("local.faults")

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
# Not forwarded either way: they describe one hop, not the request.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
}


def service_of(authorization: str | None) -> str | None:
    """The AWS service a SigV4-signed request is for (``events``, ``dynamodb``...), or None."""
    found = _SCOPE.search(authorization or "")
    return found.group(1) if found else None


@dataclass
class Fault:
    service: str
    status: int
    until: float | None  # monotonic deadline; None = until cleared
    hits: int = 0

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def describe(self, now: float) -> dict[str, Any]:
        remaining = None if self.until is None else max(0.0, round(self.until - now, 1))
        return {
            "service": self.service,
            "status": self.status,
            "remaining_seconds": remaining,
            "active": self.active(now),
            "hits": self.hits,
        }


class FaultProxy:
    """A WSGI app: forwards to ``upstream`` (moto server), failing the services it is told to."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # one keep-alive connection to moto per server thread

    # -- control ---------------------------------------------------------------------------
    def inject(self, service: str, status: int = 503, seconds: float | None = None) -> dict[str, Any]:
        if not re.fullmatch(r"[a-z0-9-]{2,40}", service):
            raise ValueError("service must be an AWS signing name such as events or dynamodb")
        if not 400 <= status <= 599:
            raise ValueError("status must be 4xx or 5xx")
        until = None if seconds is None else time.monotonic() + float(seconds)
        with self._lock:
            self._faults[service] = Fault(service, status, until)
        log.warning("fault: %s answers %d for %s", service, status, f"{seconds} s" if seconds else "ever")
        return self._faults[service].describe(time.monotonic())

    def clear(self, service: str | None = None) -> None:
        with self._lock:
            if service is None:
                self._faults.clear()
            else:
                self._faults.pop(service, None)
        log.warning("fault cleared: %s", service or "all services")

    def faults(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [fault.describe(now) for fault in self._faults.values()]

    def control(self, request: Request) -> Response:
        """The console's /faults/aws endpoint."""
        try:
            if request.method == "POST":
                spec = request.get_json(force=True, silent=True) or {}
                seconds = spec.get("seconds")
                self.inject(
                    str(spec.get("service", "")),
                    int(spec.get("status", 503)),
                    None if seconds is None else float(seconds),
                )
            elif request.method == "DELETE":
                self.clear(request.args.get("service"))
            elif request.method != "GET":
                return _json({"message": "use GET, POST or DELETE"}, 405)
        except (TypeError, ValueError) as exc:
            return _json({"message": str(exc)}, 400)
        return _json({"faults": self.faults()}, 200)

    # -- proxy -----------------------------------------------------------------------------
    def _fault_for(self, service: str | None) -> Fault | None:
        if service is None:
            return None
        with self._lock:
            fault = self._faults.get(service)
            if fault is None or not fault.active(time.monotonic()):
                return None
            fault.hits += 1
            return fault

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        fault = self._fault_for(service_of(request.headers.get("Authorization")))
        if fault is not None:
            body = {"__type": "ServiceUnavailableException", "message": "fault injected by the local stack"}
            response = Response(json.dumps(body), fault.status, content_type="application/x-amz-json-1.1")
            return response(environ, start_response)
        return self._forward(request)(environ, start_response)

    def _forward(self, request: Request) -> Response:
        body = request.get_data(cache=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        path = request.full_path if request.query_string else request.path
        for attempt in (1, 2):  # a kept-alive connection moto closed is retried once on a fresh one
            connection = self._connection(fresh=attempt == 2)
            try:
                connection.request(request.method, path, body=body, headers=headers)
                upstream = connection.getresponse()
                data = upstream.read()
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                if attempt == 2:
                    log.exception("moto server did not answer %s %s", request.method, request.path)
                    return _json({"message": "AWS emulation unreachable"}, 502)
        response = Response(data, upstream.status)
        response.headers.clear()
        for name, value in upstream.getheaders():
            # A HEAD answer has no body to measure: its Content-Length is the object's (S3's HeadObject).
            if name.lower() not in _HOP_BY_HOP or (request.method == "HEAD" and name.lower() == "content-length"):
                response.headers.add(name, value)
        return response

    def _connection(self, fresh: bool) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None or fresh:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self._local.connection = connection
        return connection


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")
