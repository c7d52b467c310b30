"""The local stack's own runtime, in-process, for token tests: moto (the `aws` fixture, IAM enforced), the API
Gateway emulation over real HTTP, every function invoked by the local Lambda runtime under its template's
Timeout (which a test may change), TokenRefreshFunction fed by its SQS event source, and the Bitbucket
emulator over real HTTP. In-process, so a test (a Hypothesis example) can change a function's Timeout
without starting a stack."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import boto3
import requests

from bitbridge import accounts, providers
from bitbridge.calls import Caller
from bitbridge.service import credentials, links
from bitbridge.store.accounts import ConnectionRecord, user_pk
from infra.emulator import Emulator
from infra.local.gateway import Gateway, serve
from infra.local.lambda_runtime import FunctionRunner, resolved_functions
from infra.local.pollers import SqsPoller, sqs_concurrency
from infra.local.resources import LocalResources
from infra.local.template import load_template, routes

TOKEN_PATH = "/rest/oauth2/latest/token"


def boto(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


@dataclass
class Connected:
    provider: str
    user_id: str
    end_user: str
    key: str  # the service client's key

    def record(self) -> ConnectionRecord:
        key = ConnectionRecord.sort_key(self.provider)
        return ConnectionRecord.get(user_pk(self.user_id), key, consistent_read=True)


class TokenStack:
    def __init__(self, aws: LocalResources, emulator: Emulator) -> None:
        self.aws, self.emulator = aws, emulator
        template = load_template()
        self.functions = resolved_functions(template, aws.resolver)
        self.runner = FunctionRunner(dict(self.functions))
        self.server = serve(Gateway(routes(template), self.runner), "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, name="http:api", daemon=True).start()
        self.api = f"http://127.0.0.1:{self.server.server_port}"
        source = aws.resolver.resolve(self.functions["TokenRefreshFunction"].sqs_sources[0])
        queue, arn = aws.ref("TokenRefreshQueue"), aws.attributes[("TokenRefreshQueue", "Arn")]
        self.pollers = [
            SqsPoller(self.runner, "TokenRefreshFunction", source, queue, arn, boto)
            for _ in range(sqs_concurrency(source))
        ]
        for poller in self.pollers:
            poller.start()
        self.provider = f"dc-{uuid.uuid4().hex[:6]}"
        self.redirect = providers.callback_url(self.api, self.provider)
        control = f"{emulator.dc_url}/_emulator"
        record = providers.add_provider(self.provider, "datacenter", "dc-key", "dc-secret", web_url=emulator.dc_url)
        client = {"flavor": "datacenter", "client_id": "dc-key", "client_secret": "dc-secret"}
        client |= {"redirect_uri": self.redirect, "scopes": record.scope_list}
        requests.post(f"{control}/oauth/clients", json=client, timeout=5).raise_for_status()
        self.client_id = f"prod-{uuid.uuid4().hex[:6]}"
        scopes = ["tokens:read", "proxy", "connections:read", "connections:write"]  # so a 409 has a connect_url
        _, self.key = credentials.add_client(self.client_id, scopes, [])

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        self.server.shutdown()
        for poller in self.pollers:
            if poller.busy:  # the others wait in a long poll, and handle nothing more once stopped
                poller.join(5)

    # -- the stack ---------------------------------------------------------------------------------------
    def set_timeout(self, function: str, seconds: float) -> None:
        """Run `function` under this Timeout from now on (as `--override Function.Timeout=...` would)."""
        self.runner.functions[function] = replace(self.functions[function], timeout=seconds)

    def emulator_config(self, **settings: Any) -> None:
        requests.post(f"{self.emulator.dc_url}/_emulator/config", json=settings, timeout=5).raise_for_status()

    def token_endpoint(self, **fault: Any) -> None:
        """Every token request answered as `fault` says (latency_ms, late_answer, ...), until cleared."""
        requests.delete(f"{self.emulator.dc_url}/_emulator/faults", timeout=5).raise_for_status()
        if fault:
            spec = {"path_prefix": TOKEN_PATH, "flavor": "datacenter", **fault}
            requests.post(f"{self.emulator.dc_url}/_emulator/faults", json=spec, timeout=5).raise_for_status()

    def token_requests(self) -> int:
        stats = requests.get(f"{self.emulator.dc_url}/_emulator/requests", timeout=5).json()
        endpoints = stats["flavors"].get("datacenter", {}).get("endpoints", {})
        return int(endpoints.get(f"POST {TOKEN_PATH}", 0))

    # -- a person ----------------------------------------------------------------------------------------
    def connect(self, bitbucket_user: str = "carol") -> Connected:
        """A new bitbridge user connected to the provider with `bitbucket_user`'s grant (a real code exchange
        with the emulator's current token lifetime), linked to a new end user of the service client."""
        control = f"{self.emulator.dc_url}/_emulator"
        record = providers.get_provider(self.provider)
        consent = {"flavor": "datacenter", "client_id": "dc-key", "redirect_uri": self.redirect, "scope": record.scopes}
        granted = requests.post(f"{control}/oauth/authorize", json={**consent, "user": bitbucket_user}, timeout=5)
        session = providers.oauth_session(record, providers.credentials(self.provider), self.redirect)
        token = dict(session.fetch_token(providers.endpoints(record).token_url, code=granted.json()["code"], timeout=5))
        identity = providers.identify(record, Caller.with_token(record, token["access_token"]).get)
        user_id, end_user = f"user-{uuid.uuid4().hex[:8]}", f"eu-{uuid.uuid4().hex[:8]}"
        accounts.save_tokens_fresh(user_id, self.provider, identity, token, self.redirect)
        links.link(self.client_id, end_user, user_id)
        return Connected(self.provider, user_id, end_user, self.key)

    def age(self, person: Connected, seconds_left: float) -> None:
        """bitbridge's record says the access token expires in `seconds_left` (as time passing would)."""
        record = person.record()
        record.update(actions=[ConnectionRecord.expires_at.set(int(time.time() + seconds_left))])

    def end_lease(self, person: Connected) -> None:
        """The refresh lease on the connection runs out (as its 45 s passing would)."""
        person.record().update(actions=[ConnectionRecord.refreshing_until.set(int(time.time()) - 1)])

    # -- calls -------------------------------------------------------------------------------------------
    def vend(self, person: Connected) -> requests.Response:
        url = f"{self.api}/service/v1/connections/{person.provider}/{person.end_user}/token"
        return requests.post(url, headers={"Authorization": f"Bearer {person.key}"}, timeout=60)

    def proxy(self, person: Connected, path: str = "projects/PLAT/repos") -> requests.Response:
        url = f"{self.api}/service/v1/proxy/{person.provider}/{person.end_user}/{path}"
        return requests.get(url, headers={"Authorization": f"Bearer {person.key}"}, timeout=60)

    def wait_until(self, person: Connected, settled: Any, timeout: float) -> ConnectionRecord:
        """The connection once `settled(record)` holds (or as it is when `timeout` runs out)."""
        deadline = time.monotonic() + timeout
        while True:
            record = person.record()
            if settled(record) or time.monotonic() > deadline:
                return record
            time.sleep(0.1)


def events_queue(aws: LocalResources, detail_types: list[str]) -> Any:
    """A queue receiving the bus's events of these types; returns a function reading the details so far."""
    events, sqs = boto("events"), boto("sqs")
    bus = aws.ref("EventBus")
    name = f"tokens-{uuid.uuid4().hex[:6]}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["bitbridge"], "detail-type": detail_types}
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    def received(expected: int = 1, timeout: float = 15.0) -> list[dict]:
        """Every event delivered so far, waiting until `expected` have arrived (the event is published just
        after the record changes, and the bus delivers a moment later), then once more for any extra."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got += _receive()
            if len(got) < expected:
                time.sleep(0.2)
        time.sleep(0.5)
        return got + _receive()

    def _receive() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        for m in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    return received
