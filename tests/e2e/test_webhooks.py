"""Webhooks end to end over real HTTP on the local stack: receive, store once, publish, survive an outage."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from bitbridge.webhooks.normalise import event_type
from bitbridge.webhooks.signatures import derive_hook_secret, sign
from tests.e2e.support import cli
from tests.integration.webhooks.support import (
    bitbucket_headers,
    manifest,
    payload_bytes,
    register_provider,
    register_subscription,
    schema_errors,
    subscription_for,
)

pytestmark = pytest.mark.e2e

# Our own providers, so these tests don't depend on what else the stack registers.
PROVIDERS = {"cloud": "e2e-hooks-cloud", "datacenter": "e2e-hooks-dc"}


class Hooks:
    def __init__(self, stack) -> None:
        self.stack = stack
        self.console = stack.urls["console"]
        self.env: dict[str, str] = requests.get(f"{self.console}/env", timeout=5).json()
        sm = stack.aws("secretsmanager")
        key = sm.get_secret_value(SecretId=self.env["BITBRIDGE_WEBHOOK_MASTER_KEY_SECRET_ARN"])["SecretString"]
        self.master_key = key.encode("utf-8")
        for flavor, provider in PROVIDERS.items():
            register_provider(self.env["BITBRIDGE_PROVIDERS_TABLE"], provider, flavor, stack.aws("dynamodb"))
        self.http = requests.Session()

    def post(self, flavor: str, event_key: str, body: bytes, delivery_id: str, **kwargs: Any) -> requests.Response:
        # As the hook on the payload's repository posts it: to its subscription, signed with its secret.
        subscription = subscription_for(flavor, event_key, body, PROVIDERS[flavor])
        table = self.env["BITBRIDGE_SUBSCRIPTIONS_TABLE"]
        register_subscription(table, flavor, event_key, body, PROVIDERS[flavor], self.stack.aws("dynamodb"))
        secret = self.secret_for(flavor, event_key, body)
        headers = bitbucket_headers(flavor, event_key, body, secret, delivery_id=delivery_id)
        headers.update(kwargs.pop("headers", {}))
        url = f"{self.stack.api}/hooks/{PROVIDERS[flavor]}/{subscription}"
        return requests.post(url, data=body, headers=headers, timeout=15, **kwargs)

    def secret_for(self, flavor: str, event_key: str, body: bytes) -> str:
        return derive_hook_secret(self.master_key, subscription_for(flavor, event_key, body, PROVIDERS[flavor]))

    def events_for(self, ids: set[str], timeout: float, settle: float = 0.0) -> list[dict]:
        """Events on the bus whose id is in ``ids``, waiting until all arrived (or timeout), then
        ``settle`` seconds more so a late duplicate would be seen too."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.stack.events(0)[0] if e["detail"].get("id") in ids]
            if {e["detail"]["id"] for e in found} >= ids or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if settle:
            time.sleep(settle)
            found = [e for e in self.stack.events(0)[0] if e["detail"].get("id") in ids]
        return found


@pytest.fixture(scope="module")
def hooks(stack) -> Hooks:
    return Hooks(stack)


def test_every_shared_payload_is_accepted_normalised_published_and_valid(hooks, shared_dir):
    run = uuid.uuid4().hex[:8]
    expected: dict[str, tuple[str, str]] = {}
    for n, entry in enumerate(manifest(shared_dir)):
        delivery_id = f"all-{run}-{n}"
        response = hooks.post(
            entry["flavor"], entry["event_key"], payload_bytes(shared_dir, entry["file"]), delivery_id
        )
        assert response.status_code == 202, (entry["file"], response.text)
        assert response.json() == {"message": "accepted", "id": delivery_id}
        expected[delivery_id] = (entry["flavor"], entry["event_key"])

    events = hooks.events_for(set(expected), timeout=30)
    assert Counter(e["detail"]["id"] for e in events) == Counter(set(expected))
    for envelope in events:
        detail = envelope["detail"]
        flavor, key = expected[detail["id"]]
        assert schema_errors(detail) == [], key
        assert envelope["source"] == "bitbridge"
        assert envelope["detail-type"] == detail["type"] == event_type(flavor, key)
        assert detail["provider"] == {"id": PROVIDERS[flavor], "flavor": flavor}


def test_bad_signatures_ping_and_oversized_bodies_over_http(hooks, shared_dir):
    body = payload_bytes(shared_dir, "datacenter/repo-refs-changed.json")
    secret = hooks.secret_for("datacenter", "repo:refs_changed", body)
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01
    rejected = [
        hooks.post(
            "datacenter",
            "repo:refs_changed",
            bytes(flipped),
            "x-1",
            headers={"X-Hub-Signature": sign(secret, body)},
        ),
        hooks.post("datacenter", "repo:refs_changed", body, "x-2", headers={"X-Hub-Signature": sign("secret", body)}),
        requests.post(
            f"{hooks.stack.api}/hooks/{PROVIDERS['datacenter']}/no-such-subscription",
            data=body,
            headers=bitbucket_headers("datacenter", "repo:refs_changed", body, secret),
            timeout=10,
        ),
    ]
    assert [(r.status_code, r.json()) for r in rejected] == [(401, {"message": "signature does not match"})] * 3

    ping = requests.post(
        f"{hooks.stack.api}/hooks/{PROVIDERS['datacenter']}/sub-any",
        data=b'{"test": true}',
        headers={"X-Event-Key": "diagnostics:ping", "Content-Type": "application/json; charset=UTF-8"},
        timeout=10,
    )
    assert (ping.status_code, ping.json()) == (200, {"message": "pong"})

    big = b'{"x": "' + b"a" * (256 * 1024) + b'"}'
    assert hooks.post("cloud", "repo:push", big, "x-3").status_code == 413
    stored = hooks.stack.aws("dynamodb").get_item(
        TableName=hooks.env["BITBRIDGE_DELIVERIES_TABLE"], Key={"pk": {"S": f"{PROVIDERS['datacenter']}#x-1"}}
    )
    assert "Item" not in stored


def test_the_same_delivery_fifty_times_at_once_is_one_event(hooks, shared_dir):
    body = payload_bytes(shared_dir, "cloud/pull-request-created.json")
    delivery_id = f"redelivered-{uuid.uuid4()}"
    with ThreadPoolExecutor(50) as pool:
        statuses = list(
            pool.map(lambda _: hooks.post("cloud", "pullrequest:created", body, delivery_id).status_code, range(50))
        )
    assert sorted(statuses) == [200] * 49 + [202]
    events = hooks.events_for({delivery_id}, timeout=20, settle=2.0)
    assert [e["detail"]["id"] for e in events] == [delivery_id]


def test_a_75_second_bus_outage_heals_itself_loses_nothing_and_publishes_nothing_twice(hooks, shared_dir):
    body = payload_bytes(shared_dir, "datacenter/repo-refs-changed.json")
    run = uuid.uuid4().hex[:8]
    ids = [f"outage-{run}-{n}" for n in range(100)]
    faults = f"{hooks.console}/faults/aws"
    assert requests.post(faults, json={"service": "events", "status": 503}, timeout=5).status_code == 200
    down_since = time.monotonic()
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda i: hooks.post("datacenter", "repo:refs_changed", body, i).status_code, ids))
        # Bitbucket's side never sees the outage: every delivery is stored and answered at once.
        assert statuses == [202] * 100
        # 75 s: long enough for the stream to exhaust its retries and park batches in the failure queue,
        # and for the redriver to be refused and back off at least once.
        while time.monotonic() - down_since < 75:
            time.sleep(1)
        assert not hooks.events_for(set(ids), timeout=0), "nothing can be published while the bus is down"
        parked = hooks.stack.aws("sqs").get_queue_attributes(
            QueueUrl=hooks.env["BITBRIDGE_PUBLISH_FAILURE_QUEUE_URL"], AttributeNames=["All"]
        )["Attributes"]
        assert int(parked["ApproximateNumberOfMessages"]) + int(parked["ApproximateNumberOfMessagesNotVisible"]) > 0
    finally:
        assert requests.delete(faults, timeout=5).json() == {"faults": []}

    # Recovery without a command: the redriver's next try after its backoff publishes what was parked.
    events = hooks.events_for(set(ids), timeout=150)
    events = hooks.events_for(set(ids), timeout=0, settle=2.0)
    counts = Counter(e["detail"]["id"] for e in events)
    assert set(counts) == set(ids), f"{len(set(ids) - set(counts))} deliveries never published"
    assert max(counts.values()) == 1, "some events were published twice"


def test_replay_and_tail_commands_work_against_the_local_stack(hooks, shared_dir):
    delivery_id = f"cli-{uuid.uuid4()}"
    hooks.post("cloud", "repo:push", payload_bytes(shared_dir, "cloud/repo-push.json"), delivery_id)
    assert hooks.events_for({delivery_id}, timeout=20)

    dry = cli(hooks.stack, "events", "replay", "--since", "10m", "--dry-run", "--include-published")
    assert dry.returncode == 0, dry.stderr
    assert "would republish" in dry.stdout and "published" in dry.stdout

    tail = cli(hooks.stack, "events", "tail", "--once", "--detail")
    assert tail.returncode == 0, tail.stderr
    details = [json.loads(line) for line in tail.stdout.splitlines()]
    assert delivery_id in {d["id"] for d in details}
