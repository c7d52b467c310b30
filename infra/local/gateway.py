"""An HTTP server that behaves like API Gateway HTTP API (payload format 2.0) for template routes.

Requests are matched against exactly the HttpApi routes in template.yaml, turned into the
event API Gateway would send, passed to the same handler function, and the handler's answer
is translated back (status, headers, cookies, base64 bodies).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from infra.local.lambda_runtime import FunctionError, FunctionRunner
from infra.local.resources import ACCOUNT_ID
from infra.local.template import Route

log = logging.getLogger("local.gateway")

# API Gateway passes these content types as text; anything else arrives base64-encoded.
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|x-www-form-urlencoded))(;.*)?$", re.I
)
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # HTTP API's request size limit
INTEGRATION_TIMEOUT_SECONDS = 30  # HTTP API's maximum integration timeout


class CompiledRoute:
    def __init__(self, route: Route) -> None:
        self.route = route
        parts = [p for p in route.path.split("/") if p]
        pattern = ""
        self.static_segments = 0
        self.greedy = False
        for part in parts:
            if part.startswith("{") and part.endswith("+}"):
                pattern += rf"/(?P<{part[1:-2]}>.+)"
                self.greedy = True
            elif part.startswith("{"):
                pattern += rf"/(?P<{part[1:-1]}>[^/]+)"
            else:
                pattern += "/" + re.escape(part)
                self.static_segments += 1
        self.regex = re.compile(f"^{pattern or '/'}$")

    @property
    def priority(self) -> tuple[int, int, int]:
        # API Gateway prefers the most specific route: more literal segments, then non-greedy.
        return (self.static_segments, 0 if self.greedy else 1, 0 if self.route.method == "ANY" else 1)


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted((CompiledRoute(r) for r in routes), key=lambda c: c.priority, reverse=True)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for compiled in self.routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            found = compiled.regex.match(path)
            if found:
                return compiled.route, found.groupdict()
        return None


def build_event(request: Request, route: Route, path_parameters: dict[str, str], body: bytes) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for one request."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key == "cookie":
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookies = [c.strip() for h in request.headers.getlist("Cookie") for c in h.split(";") if c.strip()]
    raw_query = request.query_string.decode("latin-1")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value  # repeated keys are comma-joined
    content_type = request.headers.get("Content-Type", "")
    is_text = not body or bool(_TEXT_TYPES.match(content_type))
    body_text, encoded = "", False
    if is_text:
        try:
            body_text = body.decode("utf-8")
            encoded = False
        except UnicodeDecodeError:
            is_text = False
    if not is_text:
        body_text = base64.b64encode(body).decode("ascii")
        encoded = True
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": request.host.split(".")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = body_text
    return event


def build_response(result: Any) -> Response:
    """Translate a handler's return value the way HTTP API does for payload format 2.0."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Without a statusCode, API Gateway assumes 200 and a JSON body.
        body = result if isinstance(result, str) else json.dumps(result)
        return Response(body, status=200, content_type="application/json")
    raw_body = result.get("body") or ""
    body = base64.b64decode(raw_body) if result.get("isBase64Encoded") else raw_body.encode("utf-8")
    response = Response(body, status=int(result["statusCode"]))
    response.headers.remove("Content-Type")
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(name, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


class Gateway:
    def __init__(self, routes: Iterable[Route], runner: FunctionRunner) -> None:
        self.router = Router(routes)
        self.runner = runner

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        response = self.dispatch(request)
        # The route, never the path, as template.yaml's access log: a path may carry a one-time token.
        matched = self.router.match(request.method, request.path)
        route = matched[0].route_key if matched else f"{request.method} (no route)"
        log.info("%s -> %s (%.0f ms)", route, response.status_code, (time.perf_counter() - started) * 1000)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        matched = self.router.match(request.method, request.path)
        if matched is None:
            return Response(json.dumps({"message": "Not Found"}), 404, content_type="application/json")
        route, path_parameters = matched
        if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
            return Response(json.dumps({"message": "Request Entity Too Large"}), 413, content_type="application/json")
        body = request.get_data(cache=False)
        event = build_event(request, route, path_parameters, body)
        function = self.runner.functions[route.function]
        try:
            result = self.runner.invoke(route.function, event, wait_at_most=INTEGRATION_TIMEOUT_SECONDS)
        except FunctionError as exc:
            if function.timeout > INTEGRATION_TIMEOUT_SECONDS and "timed out" in str(exc):
                # API Gateway stopped waiting before Lambda's own timeout.
                return _error(503, "Service Unavailable")
            # A timeout, a throttle or an oversized response: Lambda reports an error, which
            # API Gateway answers as any failed integration.
            log.error("%s: %s", route.function, exc)
            return _error(500, "Internal Server Error")
        except Exception:
            # What API Gateway answers when the integration fails.
            log.exception("handler %s raised", route.function)
            return _error(500, "Internal Server Error")
        return build_response(result)


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status, content_type="application/json")


def serve(app: Callable, host: str, port: int, handler: Any = None) -> BaseWSGIServer:
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    server.daemon_threads = True  # type: ignore[attr-defined]
    return server
