"""The whole system on one machine: moto server for AWS, the Bitbucket emulator, the API
routes, the event-source pollers and an event tap - all from template.yaml.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import threading
import time
from typing import Any

import boto3
from werkzeug.wrappers import Request, Response

from infra.emulator import persist
from infra.local import atomic, iam, logs, moto_speed, ports, state
from infra.local.config import LABELS, PortsTaken, StackConfig, free_port, held, release
from infra.local.events_tap import EventTap
from infra.local.faults import FaultProxy
from infra.local.gateway import Gateway, serve
from infra.local.lambda_runtime import FunctionRunner, resolved_functions
from infra.local.logs import LogDelivery, function_log_groups, subscriptions
from infra.local.pollers import Poller, SchedulePoller, SqsPoller, StreamPoller, sqs_concurrency
from infra.local.resources import REGION, LocalResources, create_resources, local_parameters
from infra.local.template import load_template, routes

log = logging.getLogger("local")


class LocalStack:
    # The two providers the local stack registers, so sign-in works out of the box.
    LOCAL_PROVIDERS = (("bitbucket-cloud", "cloud"), ("acme-datacenter", "datacenter"))

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = (config or StackConfig()).resolve_ports()
        self.resources: LocalResources | None = None
        self.emulator: Any = None
        self.tap: EventTap | None = None
        self._servers: list[Any] = []
        self._moto_server: Any = None
        self._threads: list[Poller] = []
        self._stdout: logs.FunctionStdout | None = None
        self.faults: FaultProxy | None = None
        self.template = self._template()
        # State across restarts: decided in start(), before anything listens.
        self.saved: state.Saved | None = None
        self.state_kind = "memory"  # "kept" | "fresh" | "memory"
        self.state_detail = "nothing is kept when it stops"
        self._moto_state: dict[Any, Any] | None = None
        self._emulator_state: dict[str, Any] | None = None
        self._state_lock: Any = None
        self.started = False

    def _template(self) -> dict[str, Any]:
        """The template as this stack runs it: the file, with the overrides on functions applied
        (overrides of other resources are applied where they are created)."""
        template = copy.deepcopy(load_template(self.config.template_path))
        for logical_id, props in self.config.overrides.items():
            resource = template["Resources"].get(logical_id)
            if resource is not None and resource["Type"] == "AWS::Serverless::Function":
                resource["Properties"].update(props)
        return template

    # -- state -----------------------------------------------------------------------------
    def _open_state(self) -> None:
        """Kept or fresh: read the saved state (if any, and if this code can load it) into memory."""
        folder = self.config.state_dir
        if folder is None:
            return
        self._state_lock = state.lock(folder)
        if self._state_lock is None:  # two stacks saving into one folder would overwrite each other
            self.config.state_dir = None
            self.state_detail = f"another running stack keeps its state in {folder}; this one keeps nothing"
            return
        if self.config.fresh:
            cleared = state.clear(folder)
            self.state_kind = "fresh"
            self.state_detail = "the saved state was deleted" if cleared else "there was no saved state"
            return
        saved, why = state.open_saved(folder, self.template, self.config.emulator)
        if saved is not None:
            try:
                self._moto_state = persist.load(folder, "moto")
                self._emulator_state = persist.load(folder / "emulator", "backend") if saved.emulator else None
            except (persist.Incompatible, OSError) as exc:
                saved, why = None, f"the saved state cannot be loaded: {exc}"
                self._moto_state = self._emulator_state = None
        if saved is None:
            self.state_kind, self.state_detail = "fresh", why
            return
        self.saved = saved
        self.state_kind = "kept"
        self.state_detail = f"restored from {folder}, saved {state.age(saved.saved_at)}"

    def state_line(self) -> str:
        """The ready banner's word on state."""
        folder = self.config.state_dir
        if self.state_kind == "memory":
            return f"state: in memory only ({self.state_detail})"
        reset = "`make dev-reset` starts clean" if self.state_kind == "kept" else f"kept in {folder} when it stops"
        return f"state: {self.state_kind} ({self.state_detail}); {reset}"

    def save_state(self) -> float | None:
        """Write the state into the state folder (after stop()); the seconds it took, None when not kept."""
        if self.config.state_dir is None or not self.started or self.resources is None:
            return None
        positions = {p.key: p.positions() for p in self._threads if isinstance(p, StreamPoller)}
        return state.save(
            self.config.state_dir,
            template=self.template,
            emulator_backend=self.emulator.backend if self.emulator is not None else None,
            urls=self.urls(),
            refs=self.resources.refs,
            attributes=self.resources.attributes,
            stream_positions=positions,
        )

    # -- AWS -------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.config.aws_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def _start_aws(self) -> None:
        from moto.backends import get_backend
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        atomic.install()  # DynamoDB's single-item atomicity, which moto lacks
        moto_speed.install()
        # moto server runs in this process: the saved backends go in place before it answers anything.
        for (service, account, region), backend in (self._moto_state or {}).items():
            get_backend(service)[account][region] = backend
        self._moto_state = None
        # Bound here, not in moto's ThreadedMotoServer (whose thread dies on a taken port while start() waits
        # for it forever, deaf to Ctrl-C).
        app = DomainDispatcherApplication(create_backend_app)
        self._moto_server = self._serve(app, self.config.aws_port, "aws", "aws_port", MotoRequestHandler)
        # The handlers run in this process and find moto through the standard variables.
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.config.aws_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
            }
        )
        origins = f"{self.config.api_url},http://localhost:{self.config.api_port}"
        params = local_parameters(
            self.config.stage,
            self.template,
            PublicBaseUrl=self.config.api_url,
            AllowedReturnToOrigins=origins,
            AdminUsers=self._local_admins(),
        )
        self.resources = create_resources(
            self.client,
            stage=self.config.stage,
            parameters=params,
            overrides=self.config.overrides,
            template=self.template,
            existing=(self.saved.refs, self.saved.attributes) if self.saved else None,
        )
        os.environ.update(self.resources.environment)
        # The functions reach AWS through a proxy that can fail one service on demand (outage tests,
        # `POST /faults/aws` on the local helper); the stack itself, tests and the CLI talk to moto directly.
        self.faults = FaultProxy(self.config.aws_url)
        proxy_port = free_port(self.config.host)
        self._serve(self.faults, proxy_port, "aws-faults")
        os.environ["AWS_ENDPOINT_URL"] = f"http://{self.config.host}:{proxy_port}"

    def _local_admins(self) -> str:
        """The emulator's seeded alice is the console's admin on both local providers (AdminUsers takes
        stable account ids: her Cloud uuid, and Data Center user id 1, the seed's first user)."""
        from infra.emulator.models import stable_uuid

        cloud, datacenter = (p for p, _ in self.LOCAL_PROVIDERS)
        return f"{cloud}:{{{stable_uuid('user', 'alice')}}},{datacenter}:1"

    # -- Bitbucket -------------------------------------------------------------------------
    def _start_emulator(self) -> None:
        if not self.config.emulator:
            return
        from infra.emulator import Emulator

        restoring = self._emulator_state is not None
        self.emulator = Emulator(
            host=self.config.host, cloud_port=self.config.cloud_port, dc_port=self.config.dc_port, seed=not restoring
        )
        if self._emulator_state is not None:
            persist.apply(self.emulator.backend, self._emulator_state)
            self._emulator_state = None
        release(self.config.host, self.config.cloud_port)
        release(self.config.host, self.config.dc_port)
        try:
            self.emulator.start()
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            wanted = [(s, p) for s, p in self.config.port_settings() if s.attribute in ports.EMULATOR_PORTS]
            problems = ports.check(self.config.host, wanted)
            raise PortsTaken(problems or [str(exc)]) from None
        if restoring:
            self._rehome_hooks()
        self._register_emulator_providers()

    def _rehome_hooks(self) -> None:
        """Hooks installed before a restart on another API port: point them at this one (Bitbucket would
        keep the old URL; here the old port is gone for good)."""
        assert self.saved is not None
        old, new = self.saved.urls.get("api", ""), self.config.api_url
        if not old or old == new:
            return
        backend = self.emulator.backend
        with backend.lock:
            for repo in backend.repos.values():
                for hook in repo.hooks.values():
                    if hook.url.startswith(old + "/"):
                        hook.url = new + hook.url[len(old) :]

    def _register_emulator_providers(self) -> None:
        """Register each emulator as a provider exactly as an admin would: an OAuth client on the
        Bitbucket side with our callback URL, then `bitbridge providers add` on ours. A restored stack
        keeps its providers (users' connections refer to them) and only brings their URLs up to date."""
        import secrets

        import requests

        from bitbridge import providers
        from bitbridge.aws import reset_caches

        reset_caches()
        for provider_id, flavor in self.LOCAL_PROVIDERS:
            web_url = self.emulator.cloud_url if flavor == "cloud" else self.emulator.dc_url
            client_id, client_secret = f"local-{provider_id}", secrets.token_urlsafe(24)
            existing = None
            if self.saved is not None:
                try:
                    existing = providers.get_provider(provider_id)
                except providers.ProviderError:
                    existing = None
            if existing is not None and existing.web_url == web_url:
                creds = providers.credentials(provider_id)
                client_id, client_secret = creds.client_id, creds.client_secret
            elif existing is not None:  # the emulator moved to another port: register it again
                providers.remove_provider(provider_id)
                existing = None
            requests.post(
                f"{web_url}/_emulator/oauth/clients",
                json={
                    "flavor": flavor,
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "redirect_uri": providers.callback_url(self.config.api_url, provider_id),
                    # Cloud's consumer also ticks "Pull requests: Write", as an admin does for products that
                    # approve, merge or decline through the service API (docs/service-api.md, "Report back").
                    "scopes": [
                        *providers.DEFAULT_SCOPES[flavor],
                        *(["pullrequest:write"] if flavor == "cloud" else []),
                    ],
                },
                timeout=10,
            ).raise_for_status()
            if existing is None:
                providers.add_provider(
                    provider_id,
                    flavor,
                    client_id,
                    client_secret,
                    web_url=web_url,
                    label="Bitbucket Cloud (emulator)" if flavor == "cloud" else "Acme Data Center (emulator)",
                )

    # -- functions -------------------------------------------------------------------------
    def _start_functions(self) -> None:
        assert self.resources is not None and self.resources.resolver is not None
        template = self.template
        resolve = self.resources.resolver.resolve
        fns = resolved_functions(template, self.resources.resolver)
        # Every function's AWS calls from now on are checked against its own policy.
        iam.install(iam.enforcer_for(template, self.resources))
        runner = FunctionRunner(fns)
        gateway = Gateway(routes(template), runner)
        self._serve(gateway, self.config.api_port, "api", "api_port")
        arn_to_url = {
            self.resources.attributes[(lid, "Arn")]: self.resources.refs[lid]
            for (lid, attr) in list(self.resources.attributes)
            if attr == "QueueUrl"
        }
        positions = self.saved.stream_positions if self.saved else {}
        for fn in fns.values():
            for source in fn.sqs_sources:
                arn = self._resolve_arn(source["Queue"])
                source = resolve(source)
                for _ in range(sqs_concurrency(source)):  # Lambda polls several batches at once
                    self._threads.append(SqsPoller(runner, fn.logical_id, source, arn_to_url[arn], arn, self.client))
            for source in fn.stream_sources:
                failure = source.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                poller = StreamPoller(
                    runner,
                    fn.logical_id,
                    resolve(source),
                    self._resolve_arn(source["Stream"]),
                    arn_to_url[self._resolve_arn(failure)] if failure else None,
                    self.client,
                )
                # After a restart each stream is read on from where its poller stopped, as Lambda's would be.
                poller.resume(positions.get(poller.key, {}))
                self._threads.append(poller)
            if self.config.schedules:
                self._threads.extend(SchedulePoller(runner, fn.logical_id, resolve(s)) for s in fn.schedules)
        # CloudWatch Logs subscriptions: what a function prints reaches the subscribed function.
        resolver = self.resources.resolver
        deliveries = [LogDelivery(runner, s, self.client) for s in subscriptions(template, resolver, fns, arn_to_url)]
        if deliveries:
            self._stdout = logs.capture(function_log_groups(template, resolver, fns), deliveries)
            self._threads.extend(deliveries)
        self.tap = EventTap(
            self.client,
            self.resources.environment["BITBRIDGE_EVENT_BUS_NAME"],
            f"bitbridge-{self.config.stage}-tap",
        )
        self._threads.append(self.tap)
        for thread in self._threads:
            thread.start()
        self._serve(self._helper, self.config.helper_port, "helper", "helper_port")

    def _resolve_arn(self, value: dict[str, Any]) -> str:
        assert self.resources is not None
        logical_id, attribute = value["Fn::GetAtt"]
        return self.resources.attributes[(logical_id, attribute)]

    def _helper(self, environ: dict[str, Any], start_response: Any) -> Any:
        """The local helper: local-only endpoints that are not part of the deployed API."""
        request = Request(environ)
        if request.path == "/events" and self.tap is not None:
            events, cursor = self.tap.since(int(request.args.get("since", 0)))
            body = {"events": events, "next": cursor}
        elif request.path == "/env":
            # What the CLI needs to act on this stack: the functions' environment (names and
            # ARNs only, never secret values) and where AWS is.
            assert self.resources is not None
            body = {
                **self.resources.environment,
                "AWS_ENDPOINT_URL": self.config.aws_url,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",  # moto accepts any credentials
                "AWS_SECRET_ACCESS_KEY": "local",
            }
        elif request.path == "/faults/aws" and self.faults is not None:
            return self.faults.control(request)(environ, start_response)
        elif request.path == "/":
            body = {**self.urls(), "state": self.state_kind}
        else:
            return Response("not found", 404)(environ, start_response)
        return Response(json.dumps(body), 200, content_type="application/json")(environ, start_response)

    def _serve(self, app: Any, port: int, name: str, setting: str | None = None, handler: Any = None) -> Any:
        """Listen on `port` and serve `app` in a thread; a port someone else holds ends the start with the
        sentence that names the service and the variable to set."""
        release(self.config.host, port)
        try:
            server = serve(app, self.config.host, port, handler)
        except OSError as exc:
            if setting is None or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            raise PortsTaken([ports.problem(ports.setting_for(setting), port, self.config.host)]) from None
        threading.Thread(target=server.serve_forever, name=f"http:{name}", daemon=True).start()
        self._servers.append(server)
        return server

    # -- lifecycle -------------------------------------------------------------------------
    def check_ports(self) -> None:
        """Every port free, before anything starts (raises PortsTaken naming each one that is not)."""
        host = self.config.host
        wanted = [(setting, port) for setting, port in self.config.port_settings() if not held(host, port)]
        problems = ports.check(host, wanted)
        if problems:
            raise PortsTaken(problems)

    def start(self) -> LocalStack:
        self.check_ports()
        self._open_state()
        iam.install(None)  # hook every SDK session from the start; policies once resources exist
        self._start_aws()
        self._start_emulator()
        self._start_functions()
        self.started = True
        return self

    def urls(self) -> dict[str, str]:
        urls = {
            "web_console": f"{self.config.api_url}/",
            "api": self.config.api_url,
            "health": f"{self.config.api_url}/health",
            "aws": self.config.aws_url,
            "console": self.config.helper_url,
            "events": f"{self.config.helper_url}/events",
        }
        if self.emulator is not None:
            urls["bitbucket_cloud"] = self.emulator.cloud_url
            urls["bitbucket_datacenter"] = self.emulator.dc_url
        return urls

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and polling within `timeout` seconds (a function still running past it is left
        behind: its thread is a daemon). moto stops last, so functions that finish in time finish their
        writes. Saving the state is save_state()'s job, after this."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.stop()
        # Pollers handling a batch are waited for; those waiting for one (an SQS long poll can wait 20 s)
        # handle nothing more once stopped.
        busy = [thread for thread in self._threads if thread.busy]
        front = [server for server in self._servers if server is not self._moto_server]
        for waiting in [*_shut_down(front), *busy]:
            waiting.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._stdout is not None:
            logs.release(self._stdout)
        if self.emulator is not None:
            self.emulator.stop()
        if self._moto_server is not None:
            for waiting in _shut_down([self._moto_server]):
                waiting.join(timeout=2)
        for server in self._servers:
            server.server_close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _shut_down(servers: list[Any]) -> list[threading.Thread]:
    """Ask each server to stop; each waits for its poll loop, so all at once rather than one after another."""
    closing = [threading.Thread(target=server.shutdown, daemon=True) for server in servers]
    for closer in closing:
        closer.start()
    return closing


__all__ = ["LABELS", "LocalStack", "PortsTaken", "StackConfig"]
