"""The two WSGI apps (Cloud, Data Center), their threaded servers, and the ``Emulator`` facade."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from . import cloud, control, datacenter, githttp, keys, oauth, pages
from .models import CLOUD, DC, Backend, EmulatorError
from .ratelimit import CLOUD_BODY, RateLimiter
from .seed import seed_default
from .traffic import DeliveryFaults, Faults, RequestStats
from .web import Ctx, json_response, template
from .webhooks import WebhookDispatcher

log = logging.getLogger("infra.emulator")


class _DropConnection(Exception):
    """Raised after the socket was shut down: the handler then gives up on the response quietly."""


class FlavorApp:
    def __init__(self, emulator: Emulator, flavor: str, context_path: str = "") -> None:
        self.emulator = emulator
        self.flavor = flavor
        self.context_path = context_path.rstrip("/")
        if flavor == CLOUD:
            self.url_map, self.handlers = cloud.routes.build(
                oauth.cloud_routes, githttp.cloud_routes, keys.cloud_routes, pages.cloud_routes
            )
            self.render_error = cloud.render_error
        else:
            self.url_map, self.handlers = datacenter.routes.build(
                oauth.dc_routes, githttp.dc_routes, keys.dc_routes, pages.dc_routes
            )
            self.render_error = datacenter.render_error
        self.control_map, self.control_handlers = control.routes.build(keys.control_routes)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except _DropConnection:
            return []
        return response(environ, start_response)

    def _root(self, request: Request) -> str:
        return request.host_url.rstrip("/") + self.context_path

    def dispatch(self, request: Request) -> Response:
        path = request.path
        root = self._root(request)
        backend = self.emulator.backend
        for prefix in ("", self.context_path):  # control API answers with or without the context path
            if path.startswith(prefix + "/_emulator/") or path == prefix + "/_emulator":
                ctx = Ctx(request, backend, self.flavor, root, self.emulator)
                return self._route(ctx, self.control_map, self.control_handlers, path[len(prefix) :], count=False)
        if self.context_path:
            if not path.startswith(self.context_path + "/"):
                return self._not_found()
            path = path[len(self.context_path) :]
        ctx = Ctx(request, backend, self.flavor, root, self.emulator)
        return self._route(ctx, self.url_map, self.handlers, path, count=True)

    def _not_found(self) -> Response:
        if self.flavor == CLOUD:
            return json_response(cloud.error_body("Resource not found"), 404)
        return json_response(datacenter.errors_body("Not found"), 404)

    def _route(self, ctx: Ctx, url_map: Any, handlers: dict, path: str, *, count: bool) -> Response:
        request = ctx.request
        adapter = url_map.bind("emulator", path_info=path, url_scheme=request.scheme)
        try:
            rule, values = adapter.match(path, method=request.method, return_rule=True)
            endpoint_label = template(rule.rule).replace("{api_version}", "1.0")
        except (NotFound, MethodNotAllowed) as exc:
            rule, values, endpoint_label = None, {}, "(unmatched)"
            error: HTTPException | None = exc
        else:
            error = None
        late = 0.0
        if count:
            self.emulator.stats.count(self.flavor, f"{request.method} {endpoint_label}", _repository(values))
            latency, action, late = self.emulator.faults.check(self.flavor, request.method, path)
            if latency:
                time.sleep(latency)
            if action is not None:
                self.emulator.stats.count_fault(self.flavor)
                return self._fault(request, action)
            rejection = self.emulator.limits.check(self.flavor, path, request)
            if rejection is not None:
                return rejection.response()
        if rule is None:
            if isinstance(error, MethodNotAllowed):
                return json_response(
                    cloud.error_body("Method not allowed")
                    if self.flavor == CLOUD
                    else datacenter.errors_body("Method not allowed"),
                    405,
                )
            return self._not_found()
        try:
            return handlers[rule.endpoint](ctx, **values)
        except EmulatorError as exc:
            if not count:
                return json_response({"error": exc.message}, exc.status)
            return self.render_error(exc)
        finally:
            if late:  # handled (state changed); the answer leaves only now
                time.sleep(late)

    def _fault(self, request: Request, action: Any) -> Response:
        if action.drop:
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.close()
            raise _DropConnection
        status = action.status or 500
        headers = {"Retry-After": action.retry_after} if action.retry_after else {}
        if action.body is not None:
            return json_response(action.body, status, headers)
        if status == 429 and self.flavor == CLOUD:
            # Cloud's 429 body is this plain sentence (as its rate limiter sends it).
            return Response(CLOUD_BODY, status, headers, content_type="text/plain")
        message = "Rate limit exceeded." if status == 429 else "Something went wrong (injected fault)."
        body = cloud.error_body(message) if self.flavor == CLOUD else datacenter.errors_body(message)
        return json_response(body, status, headers)


def _repository(values: dict) -> str | None:
    """The repository a REST call is about ("acme/web-app", "PLAT/core", "~ALICE/dotfiles"), for per-repository
    request counts; None for calls about no single repository."""
    if values.get("repo_slug") and values.get("workspace"):
        return f"{values['workspace'].lower()}/{values['repo_slug'].lower()}"
    if values.get("repository_slug"):
        owner = values.get("project_key") or "~" + str(values.get("user_slug"))
        return f"{owner.upper()}/{values['repository_slug'].lower()}"
    return None


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # keep test output clean
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(*args, **kwargs)

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        pass


class Emulator:
    """Bitbucket Cloud + Data Center emulator over real HTTP.

    >>> with Emulator(cloud_port=0, dc_port=0) as emu:
    ...     requests.get(emu.cloud_url + "/2.0/user", headers=...)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        cloud_port: int = 8990,
        dc_port: int = 7990,
        seed: bool = True,
        dc_context_path: str = "",
    ) -> None:
        self.host = host
        self.cloud_port = cloud_port
        self.dc_port = dc_port
        self.seed = seed
        self.dc_context_path = ("/" + dc_context_path.strip("/")) if dc_context_path.strip("/") else ""
        self.backend = Backend()
        self.stats = RequestStats()
        self.faults = Faults()
        self.limits = RateLimiter(self.backend)
        self.delivery_faults = DeliveryFaults()
        self.webhooks = WebhookDispatcher(self)
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        if seed:
            seed_default(self.backend)

    @property
    def cloud_url(self) -> str:
        return self.backend.public_urls[CLOUD]

    @property
    def dc_url(self) -> str:
        return self.backend.public_urls[DC]

    def reset(self, seed: bool = False) -> None:
        """Drop all state (data, OAuth clients, tokens, faults, counters, delivery log)."""
        self.webhooks.wait_idle(5)
        self.backend.reset()
        self.faults.clear()
        self.limits.clear()
        self.delivery_faults.clear()
        self.stats.reset()
        self.webhooks.clear()
        if seed:
            seed_default(self.backend)

    def start(self) -> Emulator:
        if self._servers:
            return self
        cloud_srv = make_server(
            self.host, self.cloud_port, FlavorApp(self, CLOUD), threaded=True, request_handler=_QuietHandler
        )
        dc_srv = make_server(
            self.host,
            self.dc_port,
            FlavorApp(self, DC, self.dc_context_path),
            threaded=True,
            request_handler=_QuietHandler,
        )
        for srv in (cloud_srv, dc_srv):
            srv.daemon_threads = True  # type: ignore[attr-defined]
        self._servers = [cloud_srv, dc_srv]
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"
        self.backend.public_urls[CLOUD] = f"http://{host}:{cloud_srv.server_port}"
        self.backend.public_urls[DC] = f"http://{host}:{dc_srv.server_port}{self.dc_context_path}"
        for srv, name in ((cloud_srv, "cloud"), (dc_srv, "datacenter")):
            thread = threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.1}, name=f"emulator-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self.webhooks.start()
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []
        self.webhooks.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        return json.dumps(
            {
                "cloud_url": self.cloud_url,
                "cloud_api": self.cloud_url + "/2.0",
                "dc_url": self.dc_url,
                "control": [self.cloud_url + "/_emulator/", self.dc_url + "/_emulator/"],
            },
            indent=2,
        )
