"""The whole system on one machine: moto server for AWS, the Bitbucket emulator, the API
routes, the event-source pollers and an event tap - all from template.yaml.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from werkzeug.wrappers import Request, Response

from infra.local import atomic, iam, logs
from infra.local.events_tap import EventTap
from infra.local.faults import FaultProxy
from infra.local.gateway import Gateway, serve
from infra.local.lambda_runtime import FunctionRunner, resolved_functions
from infra.local.logs import LogDelivery, function_log_groups, subscriptions
from infra.local.pollers import Poller, SchedulePoller, SqsPoller, StreamPoller, sqs_concurrency
from infra.local.resources import REGION, LocalResources, create_resources, local_parameters
from infra.local.template import TEMPLATE_PATH, load_template, routes

log = logging.getLogger("local")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class StackConfig:
    """Every setting has an environment variable and a default that just works."""

    host: str = field(default_factory=lambda: os.environ.get("BITBRIDGE_LOCAL_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: _env_int("BITBRIDGE_LOCAL_API_PORT", 3000))
    console_port: int = field(default_factory=lambda: _env_int("BITBRIDGE_LOCAL_CONSOLE_PORT", 3001))
    aws_port: int = field(default_factory=lambda: _env_int("BITBRIDGE_LOCAL_AWS_PORT", 4566))
    cloud_port: int = field(default_factory=lambda: _env_int("BITBRIDGE_EMULATOR_CLOUD_PORT", 8990))
    dc_port: int = field(default_factory=lambda: _env_int("BITBRIDGE_EMULATOR_DC_PORT", 7990))
    emulator: bool = field(default_factory=lambda: os.environ.get("BITBRIDGE_LOCAL_EMULATOR", "1") != "0")
    # Schedule events (the reconciler, every minute) run as on AWS; tests that drive them by hand turn them off.
    schedules: bool = field(default_factory=lambda: os.environ.get("BITBRIDGE_LOCAL_SCHEDULES", "1") != "0")
    stage: str = "local"
    # Per-resource property overrides (tests shorten timeouts); empty for `make dev`.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Tests run a modified copy of the template (a removed permission, an added limit).
    template_path: Path = TEMPLATE_PATH

    def resolve_ports(self) -> StackConfig:
        """Replace port 0 with a free port, so parallel test runs don't collide."""
        for name in ("api_port", "console_port", "aws_port", "cloud_port", "dc_port"):
            if getattr(self, name) == 0:
                setattr(self, name, free_port(self.host))
        return self

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def console_url(self) -> str:
        return f"http://{self.host}:{self.console_port}"


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = (config or StackConfig()).resolve_ports()
        self.resources: LocalResources | None = None
        self.emulator: Any = None
        self.tap: EventTap | None = None
        self._moto: Any = None
        self._servers: list[Any] = []
        self._threads: list[Poller] = []
        self._stdout: logs.FunctionStdout | None = None
        self.faults: FaultProxy | None = None
        self.template = self._template()

    def _template(self) -> dict[str, Any]:
        """The template as this stack runs it: the file, with the overrides on functions applied
        (overrides of other resources are applied where they are created)."""
        template = copy.deepcopy(load_template(self.config.template_path))
        for logical_id, props in self.config.overrides.items():
            resource = template["Resources"].get(logical_id)
            if resource is not None and resource["Type"] == "AWS::Serverless::Function":
                resource["Properties"].update(props)
        return template

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
        from moto.server import ThreadedMotoServer

        atomic.install()  # DynamoDB's single-item atomicity, which moto lacks
        self._moto = ThreadedMotoServer(ip_address=self.config.host, port=self.config.aws_port, verbose=False)
        self._moto.start()
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
        )
        os.environ.update(self.resources.environment)
        # The functions reach AWS through a proxy that can fail one service on demand (outage tests,
        # `POST /faults/aws` on the console); the stack itself, tests and the CLI talk to moto directly.
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

        self.emulator = Emulator(host=self.config.host, cloud_port=self.config.cloud_port, dc_port=self.config.dc_port)
        self.emulator.start()
        self._register_emulator_providers()

    # The two providers the local stack registers, so sign-in works out of the box.
    LOCAL_PROVIDERS = (("bitbucket-cloud", "cloud"), ("acme-datacenter", "datacenter"))

    def _register_emulator_providers(self) -> None:
        """Register each emulator as a provider exactly as an admin would: an OAuth client on the
        Bitbucket side with our callback URL, then `bitbridge providers add` on ours."""
        import secrets

        import requests

        from bitbridge import providers
        from bitbridge.aws import reset_caches

        reset_caches()
        for provider_id, flavor in self.LOCAL_PROVIDERS:
            web_url = self.emulator.cloud_url if flavor == "cloud" else self.emulator.dc_url
            client_id, client_secret = f"local-{provider_id}", secrets.token_urlsafe(24)
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
        self._serve(gateway, self.config.api_port, "api")
        arn_to_url = {
            self.resources.attributes[(lid, "Arn")]: self.resources.refs[lid]
            for (lid, attr) in list(self.resources.attributes)
            if attr == "QueueUrl"
        }
        for fn in fns.values():
            for source in fn.sqs_sources:
                arn = self._resolve_arn(source["Queue"])
                source = resolve(source)
                for _ in range(sqs_concurrency(source)):  # Lambda polls several batches at once
                    self._threads.append(SqsPoller(runner, fn.logical_id, source, arn_to_url[arn], arn, self.client))
            for source in fn.stream_sources:
                failure = source.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                self._threads.append(
                    StreamPoller(
                        runner,
                        fn.logical_id,
                        resolve(source),
                        self._resolve_arn(source["Stream"]),
                        arn_to_url[self._resolve_arn(failure)] if failure else None,
                        self.client,
                    )
                )
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
        self._serve(self._console, self.config.console_port, "console")

    def _resolve_arn(self, value: dict[str, Any]) -> str:
        assert self.resources is not None
        logical_id, attribute = value["Fn::GetAtt"]
        return self.resources.attributes[(logical_id, attribute)]

    def _console(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Local-only endpoints that are not part of the deployed API."""
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
            body = self.urls()
        else:
            return Response("not found", 404)(environ, start_response)
        return Response(json.dumps(body), 200, content_type="application/json")(environ, start_response)

    def _serve(self, app: Any, port: int, name: str) -> None:
        import threading

        server = serve(app, self.config.host, port)
        threading.Thread(target=server.serve_forever, name=f"http:{name}", daemon=True).start()
        self._servers.append(server)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalStack:
        iam.install(None)  # hook every SDK session from the start; policies once resources exist
        self._start_aws()
        self._start_emulator()
        self._start_functions()
        return self

    def urls(self) -> dict[str, str]:
        urls = {
            "api": self.config.api_url,
            "health": f"{self.config.api_url}/health",
            "aws": self.config.aws_url,
            "console": self.config.console_url,
            "events": f"{self.config.console_url}/events",
        }
        if self.emulator is not None:
            urls["bitbucket_cloud"] = self.emulator.cloud_url
            urls["bitbucket_datacenter"] = self.emulator.dc_url
        return urls

    def stop(self) -> None:
        for thread in self._threads:
            thread.stop()
        for server in self._servers:
            server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._stdout is not None:
            logs.release(self._stdout)
        if self.emulator is not None:
            self.emulator.stop()
        if self._moto is not None:
            self._moto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
