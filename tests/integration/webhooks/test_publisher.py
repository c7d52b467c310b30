"""event_publisher on moto: the deliveries table's stream -> event v1 on the bus, as Lambda runs it.

Deliveries go in through the real receiver handler; the stream is read by the local stack's StreamPoller
(the template's event source settings) invoking the real publisher handler; events are read from an
SQS queue subscribed to the bus by a rule, as a consumer would.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.store.subscriptions import SubscriptionRecord, repository_key
from bitbridge.webhooks import redrive
from bitbridge.webhooks.binding import subscription_id
from bitbridge.webhooks.normalise import UnhandledEvent, event_type, normalise
from bitbridge.webhooks.publish import forget_providers, handle_stream_records
from functions.webhook_receiver.app import handler as receive
from infra.local.iam import acting_as
from infra.local.lambda_runtime import FunctionRunner, resolved_functions
from infra.local.pollers import SqsPoller, StreamPoller
from infra.local.template import load_template
from tests.integration.webhooks.support import (
    PROVIDERS,
    Context,
    api_event,
    bitbucket_headers,
    hook_secret,
    manifest,
    payload_bytes,
    register_provider,
    schema_errors,
    subscription_for,
)

CLOUD, DC = PROVIDERS["cloud"], PROVIDERS["datacenter"]
CLOUD_REPO = "{673a6070-3421-46c9-9d48-90745f7bfe8e}"  # the repository in the shared Cloud payloads
CLOUD_SUB = subscription_id(CLOUD, CLOUD_REPO)  # the subscription a hook on that repository posts to


def _boto(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


class Pipeline:
    """Receiver -> table -> stream poller -> publisher -> bus -> consumer queue, all on moto."""

    def __init__(self, aws, **source_overrides: Any) -> None:
        self.aws = aws
        fns = resolved_functions(load_template(), aws.resolver)
        source = {**fns["EventPublisherFunction"].stream_sources[0], **source_overrides}
        self.poller = StreamPoller(
            FunctionRunner(fns),
            "EventPublisherFunction",
            source,
            aws.attributes[("DeliveriesTable", "StreamArn")],
            aws.ref("PublishFailureQueue"),
            _boto,
        )
        self.poller.retry_delay = 0.01
        self.sqs = _boto("sqs")
        self.queue = self.sqs.create_queue(QueueName="consumer")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.subscribe(arn)
        self.seen: list[dict] = []

    def subscribe(self, queue_arn: str) -> None:
        bus = self.aws.environment["BITBRIDGE_EVENT_BUS_NAME"]
        events = _boto("events")
        events.put_rule(
            Name="consumer", EventBusName=bus, EventPattern=json.dumps({"source": ["bitbridge"]}), State="ENABLED"
        )
        events.put_targets(Rule="consumer", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])

    def deliver(
        self,
        flavor: str,
        event_key: str,
        body: bytes,
        delivery_id: str,
        subscription: str | None = None,
        provider: str | None = None,
        subscribed: bool = True,
    ) -> int:
        """Post as the hook on the payload's repository would (or as ``subscription``, under ``provider``).
        That hook's subscription exists, as an import makes it (its names as the payload gives them), unless
        the test says it is gone (``subscribed=False``) or already made one."""
        if subscription is None and subscribed:
            _subscribe_as_an_import_would(flavor, event_key, body, provider or PROVIDERS[flavor])
        subscription = subscription or subscription_for(flavor, event_key, body)
        secret = hook_secret(self.aws.environment, subscription)
        headers = bitbucket_headers(flavor, event_key, body, secret, delivery_id=delivery_id)
        with acting_as("WebhookReceiverFunction"):
            event = api_event(provider or PROVIDERS[flavor], subscription, body, headers)
            return receive(event, Context())["statusCode"]

    def run(self) -> list[dict]:
        """Drain the stream through the publisher; the envelopes published since the last run."""
        while self.poller.poll_once():
            pass
        new: list[dict] = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages"):
            new.extend(json.loads(m["Body"]) for m in messages)
            for m in messages:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        self.seen.extend(new)
        return new

    def item(self, pk: str) -> dict:
        return _boto("dynamodb").get_item(
            TableName=self.aws.ref("DeliveriesTable"), Key={"pk": {"S": pk}}, ConsistentRead=True
        )["Item"]


def _subscribe_as_an_import_would(flavor: str, event_key: str, body: bytes, provider: str) -> None:
    try:
        event = normalise(
            flavor=flavor, provider_id=provider, event_key=event_key, payload=json.loads(body),
            delivery_id="probe", received_at="2024-05-01T12:00:00.000Z",
        )  # fmt: skip
    except (UnhandledEvent, ValueError):  # a payload the publisher settles as malformed or ignored
        return
    repo = event["repository"]
    record = SubscriptionRecord(
        subscription_id(provider, repo["id"]),
        provider_id=provider,
        repository_key=repository_key(provider, repo["id"]),
        repository_full_name=repo["full_name"],
        repository_name=repo["name"],
        repository_html_url=repo["links"]["html"],
    )
    with contextlib.suppress(Exception):  # the test made this subscription itself
        record.save(condition=SubscriptionRecord.pk.does_not_exist())


def _publish(records: list[dict]) -> dict:
    with acting_as("EventPublisherFunction"):
        return handle_stream_records(records)


@pytest.fixture
def pipeline(aws):
    forget_providers()
    for flavor, provider in PROVIDERS.items():
        register_provider(aws.ref("ProvidersTable"), provider, flavor)
    return Pipeline(aws)


def test_every_shared_payload_is_published_once_valid_with_the_delivery_id(pipeline, shared_dir):
    entries = manifest(shared_dir)
    for n, entry in enumerate(entries):
        body = payload_bytes(shared_dir, entry["file"])
        assert pipeline.deliver(entry["flavor"], entry["event_key"], body, f"id-{n}") == 202

    published = pipeline.run()
    assert sorted(e["detail"]["id"] for e in published) == sorted(f"id-{n}" for n in range(len(entries)))
    for n, entry in enumerate(entries):
        (envelope,) = [e for e in published if e["detail"]["id"] == f"id-{n}"]
        detail = envelope["detail"]
        assert schema_errors(detail) == [], entry["file"]
        assert envelope["source"] == "bitbridge"
        assert envelope["detail-type"] == detail["type"] == event_type(entry["flavor"], entry["event_key"])
        assert detail["provider"] == {"id": PROVIDERS[entry["flavor"]], "flavor": entry["flavor"]}
        item = pipeline.item(f"{PROVIDERS[entry['flavor']]}#id-{n}")
        assert item["status"]["S"] == "published" and item["event_type"]["S"] == detail["type"]
        assert detail["received_at"] == item["received_at"]["S"]

    # The publisher's own status updates (MODIFY records) publish nothing.
    assert pipeline.run() == []


def test_subscription_records_the_newest_delivery_and_a_deleted_one_is_not_recreated(pipeline, aws, shared_dir, caplog):
    SubscriptionRecord(
        CLOUD_SUB,
        provider_id=CLOUD,
        repository_key=repository_key(CLOUD, CLOUD_REPO),
        repository_full_name="team/repo",
        events=["repo:push"],
    ).save()
    body = payload_bytes(shared_dir, "cloud/repo-push.json")
    other = json.loads(body)
    other["repository"]["uuid"] = "{00000000-0000-4000-8000-00000000dead}"  # a repository whose subscription is gone
    deleted = subscription_for("cloud", "repo:push", json.dumps(other).encode())
    pipeline.deliver("cloud", "repo:push", body, "s-1")
    pipeline.deliver("cloud", "repo:push", json.dumps(other).encode(), "s-2", subscribed=False)
    # Issue 23 (4): a gone subscription has nothing to vouch for the repository's names: not published.
    assert [e["detail"]["id"] for e in pipeline.run()] == ["s-1"]
    assert pipeline.item(f"{CLOUD}#s-2")["status"]["S"] == "unpublishable"

    record = SubscriptionRecord.get(CLOUD_SUB, consistent_read=True)
    assert (record.last_delivery_id, record.health) == ("s-1", "ok")
    assert record.last_delivery_at == pipeline.item(f"{CLOUD}#s-1")["received_at"]["S"]
    with pytest.raises(SubscriptionRecord.DoesNotExist):
        SubscriptionRecord.get(deleted, consistent_read=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["delivery s-2: its subscription is gone: nothing vouches for the repository's names"]


def test_imported_project_state_follows_pushes_and_pull_requests(pipeline, aws, shared_dir):
    ddb = _boto("dynamodb")
    table = aws.ref("ImportsTable")
    key = {"pk": {"S": f"PROJECT#{CLOUD}#{CLOUD_REPO}"}, "sk": {"S": "PROJECT"}}
    ddb.put_item(TableName=table, Item={**key, "default_branch": {"S": "name-of-branch"}})
    pipeline.deliver("cloud", "repo:push", payload_bytes(shared_dir, "cloud/repo-push.json"), "p-1")
    pipeline.deliver(
        "cloud", "pullrequest:created", payload_bytes(shared_dir, "cloud/pull-request-created.json"), "p-2"
    )
    pipeline.run()
    project = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert project["default_branch_head"]["S"] == "709d658dc5b6d6afcd46049c2f332ee3f515a67d"
    assert project["last_push_event_id"]["S"] == "p-1" and project["last_push_at"]["S"]
    assert project["open_pull_request_ids"]["NS"] == ["1"]

    # A redelivered "opened" does not count twice; "merged" closes it.
    pipeline.deliver(
        "cloud", "pullrequest:created", payload_bytes(shared_dir, "cloud/pull-request-created.json"), "p-3"
    )
    merged = json.loads(payload_bytes(shared_dir, "cloud/pull-request-merged.json"))
    merged["pullrequest"]["id"] = 1
    pipeline.deliver("cloud", "pullrequest:fulfilled", json.dumps(merged).encode(), "p-4")
    pipeline.run()
    project = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert "open_pull_request_ids" not in project  # the last open id removed

    # Events for a repository never imported create no project (only the ledger of its changes' ids).
    pipeline.deliver("datacenter", "pr:opened", payload_bytes(shared_dir, "datacenter/pr-opened.json"), "p-5")
    pipeline.run()
    assert sorted(i["sk"]["S"] for i in ddb.scan(TableName=table)["Items"]) == ["OBSERVED", "OBSERVED", "PROJECT"]


def test_a_delivery_naming_another_repository_or_provider_than_its_subscription_is_rejected(pipeline, aws, shared_dir):
    """Subscription A's secret signs a push naming repository B, and A's own push posted under another
    provider's path: neither is published nor touches B's recorded state; both are recorded rejected
    and counted on A."""
    other_cloud = "other-cloud"
    register_provider(aws.ref("ProvidersTable"), other_cloud, "cloud")
    SubscriptionRecord(
        CLOUD_SUB, provider_id=CLOUD, repository_key=repository_key(CLOUD, CLOUD_REPO), repository_full_name="a/a"
    ).save()
    repo_b = "{00000000-0000-4000-8000-0000000000bb}"
    ddb, table = _boto("dynamodb"), aws.ref("ImportsTable")
    projects = [
        {"pk": {"S": f"PROJECT#{CLOUD}#{repo_b}"}, "sk": {"S": "PROJECT"}},
        {"pk": {"S": f"PROJECT#{other_cloud}#{CLOUD_REPO}"}, "sk": {"S": "PROJECT"}},
    ]
    for key in projects:
        ddb.put_item(TableName=table, Item={**key, "default_branch": {"S": "name-of-branch"}})
    body = payload_bytes(shared_dir, "cloud/repo-push.json")
    forged = json.loads(body)
    forged["repository"]["uuid"] = repo_b
    forged_body = json.dumps(forged).encode()

    assert pipeline.deliver("cloud", "repo:push", forged_body, "forged-repo", subscription=CLOUD_SUB) == 202
    assert (
        pipeline.deliver("cloud", "repo:push", body, "forged-path", subscription=CLOUD_SUB, provider=other_cloud) == 202
    )
    assert (
        pipeline.deliver(
            "datacenter",
            "repo:refs_changed",
            payload_bytes(shared_dir, "datacenter/repo-refs-changed.json"),
            "forged-flavor",
            subscription=CLOUD_SUB,
        )
        == 202
    )
    assert pipeline.run() == []

    for pk in (f"{CLOUD}#forged-repo", f"{other_cloud}#forged-path", f"{DC}#forged-flavor"):
        item = pipeline.item(pk)
        assert item["status"]["S"] == "rejected", pk
        assert item["error"]["S"] == "repository or provider does not match the subscription"
    for key in projects:  # no project state moved
        project = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        assert set(project) == {"pk", "sk", "default_branch"}
    record = SubscriptionRecord.get(CLOUD_SUB, consistent_read=True)
    assert (record.health, record.rejected_count, record.last_delivery_id) == ("rejected", 3, None)
    assert record.last_rejected_id in {"forged-repo", "forged-path", "forged-flavor"}

    # The subscription's own repository, under its own provider, is published and clears the health.
    assert pipeline.deliver("cloud", "repo:push", body, "genuine") == 202
    assert [e["detail"]["id"] for e in pipeline.run()] == ["genuine"]
    record = SubscriptionRecord.get(CLOUD_SUB, consistent_read=True)
    assert (record.health, record.rejected_count, record.last_delivery_id) == ("ok", 3, "genuine")


def test_malformed_and_unpublishable_deliveries_are_recorded_and_do_not_block_the_stream(pipeline, aws, shared_dir):
    SubscriptionRecord(CLOUD_SUB, provider_id=CLOUD, repository_key="x", repository_full_name="team/repo").save()
    good = payload_bytes(shared_dir, "cloud/repo-push.json")
    pipeline.deliver("cloud", "repo:push", b'{"push": {"changes": []}}', "bad-1")  # no repository
    pipeline.deliver("cloud", "pullrequest:created", b'{"repository": {}}', "bad-2")
    pipeline.deliver("datacenter", "repo:push", good, "cloud-key-on-dc")  # a Cloud key for a DC provider
    # A provider nobody registered: signed correctly, so stored; the publisher cannot normalise it.
    pipeline.deliver("cloud", "repo:push", good, "orphan", provider="unregistered")
    pipeline.deliver("cloud", "repo:push", good, "good-1")

    assert [e["detail"]["id"] for e in pipeline.run()] == ["good-1"]
    bad = pipeline.item(f"{CLOUD}#bad-1")
    assert bad["status"]["S"] == "malformed" and bad["error"]["S"] == "payload field repository is missing"
    assert pipeline.item(f"{CLOUD}#bad-2")["status"]["S"] == "malformed"
    assert pipeline.item(f"{DC}#cloud-key-on-dc")["status"]["S"] == "ignored"
    assert pipeline.item("unregistered#orphan")["status"]["S"] == "unpublishable"
    assert SubscriptionRecord.get(CLOUD_SUB, consistent_read=True).last_delivery_id == "good-1"
    failures = _boto("sqs").receive_message(QueueUrl=aws.ref("PublishFailureQueue")).get("Messages")
    assert not failures


def _stream_records(aws) -> list[dict]:
    """The stream's records as Lambda passes them (via the local poller's own shaping)."""
    streams = _boto("dynamodbstreams")
    arn = aws.attributes[("DeliveriesTable", "StreamArn")]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    poller = StreamPoller.__new__(StreamPoller)
    poller.stream_arn = arn
    return [poller._record(r) for r in records]


def test_entries_eventbridge_does_not_accept_are_retried_and_then_reported(pipeline, aws, shared_dir):
    body = payload_bytes(shared_dir, "cloud/repo-push.json")
    for n in range(3):
        pipeline.deliver("cloud", "repo:push", body, f"f-{n}")
    records = _stream_records(aws)
    failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
    ok = {"EventId": "e"}
    with Stubber(client("events")) as stub:
        # PutEvents answers 200 but rejects the second entry, then again on both quick retries.
        stub.add_response("put_events", {"FailedEntryCount": 1, "Entries": [ok, failed, ok]}, {"Entries": ANY})
        stub.add_response("put_events", {"FailedEntryCount": 1, "Entries": [failed]}, {"Entries": [ANY]})
        stub.add_response("put_events", {"FailedEntryCount": 1, "Entries": [failed]}, {"Entries": [ANY]})
        result = _publish(records)
        stub.assert_no_pending_responses()
    # The stream retries from f-1; f-0 and f-2 were accepted and are recorded so.
    seq = {r["dynamodb"]["NewImage"]["delivery_id"]["S"]: r["dynamodb"]["SequenceNumber"] for r in records}
    assert result == {"batchItemFailures": [{"itemIdentifier": seq["f-1"]}]}
    assert pipeline.item(f"{CLOUD}#f-1")["status"]["S"] == "received"
    assert pipeline.item(f"{CLOUD}#f-0")["status"]["S"] == "published"

    with Stubber(client("events")) as stub:
        # A partial failure that a quick retry fixes: only the rejected entry is sent again.
        stub.add_response("put_events", {"FailedEntryCount": 1, "Entries": [ok, failed, ok]}, {"Entries": ANY})
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [ok]}, {"Entries": [ANY]})
        assert _publish(records) == {"batchItemFailures": []}
        stub.assert_no_pending_responses()
    assert pipeline.item(f"{CLOUD}#f-1")["status"]["S"] == "published"


def _another_pull_request(shared_dir, n: int) -> bytes:
    """The shared `pr:opened` payload for pull request n: four deliveries, four changes (the same payload
    four times would be one change told four times: bitbridge.change_ids)."""
    body = json.loads(payload_bytes(shared_dir, "datacenter/pr-opened.json"))
    body["pullRequest"]["id"] = 100 + n
    return json.dumps(body).encode()


def test_an_outage_sends_the_batch_to_the_failure_queue_and_replay_recovers_it(aws, shared_dir, capsys):
    from bitbridge.cli import main as cli

    forget_providers()
    for flavor, provider in PROVIDERS.items():
        register_provider(aws.ref("ProvidersTable"), provider, flavor)
    pipeline = Pipeline(aws, MaximumRetryAttempts=1, BisectBatchOnFunctionError=False)
    for n in range(4):
        pipeline.deliver("datacenter", "pr:opened", _another_pull_request(shared_dir, n), f"o-{n}")

    # The bus is unreachable (a missing bus fails every PutEvents call).
    bus = os.environ["BITBRIDGE_EVENT_BUS_NAME"]
    os.environ["BITBRIDGE_EVENT_BUS_NAME"] = "bitbridge-gone"
    settings.cache_clear()
    try:
        assert pipeline.run() == []
    finally:
        os.environ["BITBRIDGE_EVENT_BUS_NAME"] = bus
        settings.cache_clear()
    failure_queue = aws.ref("PublishFailureQueue")
    assert (
        _boto("sqs").get_queue_attributes(QueueUrl=failure_queue, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "1"
    )
    assert {pipeline.item(f"{DC}#o-{n}")["status"]["S"] for n in range(4)} == {"received"}
    # Their changes were claimed before the bus refused them; the ids are kept on the deliveries.
    claimed = {f"o-{n}": json.loads(pipeline.item(f"{DC}#o-{n}")["change_ids"]["S"]) for n in range(4)}

    assert cli(["events", "replay", "--since", "10m", "--dry-run"]) == 0
    assert "would republish 4" in capsys.readouterr().out
    assert cli(["events", "replay", "--since", "10m"]) == 0
    out = capsys.readouterr().out
    assert "republished 4," in out and "failure queue: 1 acknowledged, 0 left" in out
    published = pipeline.run()
    assert sorted(e["detail"]["id"] for e in published) == [f"o-{n}" for n in range(4)]
    assert {pipeline.item(f"{DC}#o-{n}")["status"]["S"] for n in range(4)} == {"published"}
    # The replay published the ids claimed when they were first tried: the same changes, not new ones.
    ids = {e["detail"]["id"]: e["detail"]["change_id"] for e in published}
    assert len(set(ids.values())) == 4 and {i: [c] for i, c in ids.items()} == claimed
    assert not _boto("sqs").receive_message(QueueUrl=failure_queue).get("Messages")

    # Nothing is left unpublished, so a second replay republishes nothing (no duplicates)...
    assert cli(["events", "replay", "--since", "10m"]) == 0
    assert "republished 0," in capsys.readouterr().out
    # ...unless asked to, with the same ids; a window or provider that excludes them republishes nothing.
    assert cli(["events", "replay", "--since", "10m", "--include-published", "--provider", CLOUD]) == 0
    assert "republished 0," in capsys.readouterr().out
    assert cli(["events", "replay", "--since", "10m", "--include-published"]) == 0
    assert "republished 4," in capsys.readouterr().out
    again = pipeline.run()
    assert {e["detail"]["id"]: e["detail"]["change_id"] for e in again} == ids  # the same changes, not new ones


def test_parked_deliveries_are_redriven_with_backoff_once_the_bus_answers(aws, shared_dir, monkeypatch):
    """The PublishFailureQueue's own event source: refused while the bus is down (the message backs
    off, doubling), published once it answers - no command run, nothing published twice."""
    forget_providers()
    for flavor, provider in PROVIDERS.items():
        register_provider(aws.ref("ProvidersTable"), provider, flavor)
    pipeline = Pipeline(aws, MaximumRetryAttempts=1, BisectBatchOnFunctionError=False)
    fns = resolved_functions(load_template(), aws.resolver)
    (source,) = fns["PublishRedriveFunction"].sqs_sources
    queue = aws.ref("PublishFailureQueue")
    queue_arn = _boto("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redriver = SqsPoller(FunctionRunner(fns), "PublishRedriveFunction", source, queue, queue_arn, _boto, wait_seconds=1)
    for n in range(4):
        pipeline.deliver("datacenter", "pr:opened", _another_pull_request(shared_dir, n), f"r-{n}")

    def visible() -> int:
        attributes = _boto("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    monkeypatch.setattr(redrive, "BACKOFF_SECONDS", 3)  # 15 s in the template's function; scaled down here

    def come_back_now() -> None:  # time passes: the backoff is over
        time.sleep(3.2)

    bus = os.environ["BITBRIDGE_EVENT_BUS_NAME"]
    os.environ["BITBRIDGE_EVENT_BUS_NAME"] = "bitbridge-gone"
    settings.cache_clear()
    try:
        assert pipeline.run() == []
        assert visible() == 1  # the stream gave up: one batch parked
        assert redriver.poll_once()  # the redriver tries while the bus is still down
        assert visible() == 0, "a refused message waits out its backoff, not the next poll"
        assert not redriver.poll_once()
    finally:
        os.environ["BITBRIDGE_EVENT_BUS_NAME"] = bus
        settings.cache_clear()
    assert {pipeline.item(f"{DC}#r-{n}")["status"]["S"] for n in range(4)} == {"received"}

    come_back_now()
    assert redriver.poll_once()
    assert sorted(e["detail"]["id"] for e in pipeline.run()) == [f"r-{n}" for n in range(4)]
    assert {pipeline.item(f"{DC}#r-{n}")["status"]["S"] for n in range(4)} == {"published"}
    time.sleep(1.2)
    assert not redriver.poll_once(), "the settled message was deleted"
    assert pipeline.run() == []  # nothing twice


def test_replay_rejects_a_bad_window(aws, capsys):
    from bitbridge.cli import main as cli

    assert cli(["events", "replay", "--since", "yesterday"]) == 2
    assert "not a time or duration" in capsys.readouterr().err
    assert cli(["events", "replay", "--since", "1h", "--until", "2h"]) == 2


def test_an_empty_data_center_push_is_published_and_keeps_the_subscription_healthy(pipeline):
    # Data Center sends repo:refs_changed with "changes": [] (e.g. a push that moved nothing it reports).
    body = {
        "eventKey": "repo:refs_changed",
        "date": "2024-05-01T12:00:00+0000",
        "actor": {"name": "ann", "id": 9, "displayName": "Ann", "slug": "ann", "type": "NORMAL"},
        "repository": {"slug": "widgets", "id": 42, "name": "widgets", "project": {"key": "ENG"}, "public": False},
        "changes": [],
    }
    subscription = subscription_for("datacenter", "repo:refs_changed", json.dumps(body).encode())
    SubscriptionRecord(subscription, provider_id=DC, repository_key="x", repository_full_name="ENG/widgets").save()
    assert pipeline.deliver("datacenter", "repo:refs_changed", json.dumps(body).encode(), "empty-1") == 202
    (published,) = pipeline.run()
    assert published["detail"]["type"] == "repository.push" and published["detail"]["ref_changes"] == []
    assert pipeline.item(f"{DC}#empty-1")["status"]["S"] == "published"
    assert SubscriptionRecord.get(subscription, consistent_read=True).health == "ok"


def test_imported_projects_keep_their_newest_events_for_the_console(pipeline, aws, shared_dir):
    from bitbridge.imports import activity
    from bitbridge.store.imports import JobRecord, job_pk
    from bitbridge.webhooks.project_state import RECENT_EVENTS_KEPT

    ddb = _boto("dynamodb")
    table = aws.ref("ImportsTable")
    key = {"pk": {"S": f"PROJECT#{CLOUD}#{CLOUD_REPO}"}, "sk": {"S": "PROJECT"}}
    ddb.put_item(TableName=table, Item={**key, "provider_id": {"S": CLOUD}})
    body = payload_bytes(shared_dir, "cloud/repo-push.json")
    for n in range(RECENT_EVENTS_KEPT + 5):
        pipeline.deliver("cloud", "repo:push", body, f"r-{n:02d}")
    pipeline.run()
    pipeline.deliver("cloud", "repo:push", body, "r-03")  # a redelivery writes the same entry
    pipeline.deliver("datacenter", "pr:opened", payload_bytes(shared_dir, "datacenter/pr-opened.json"), "r-x")
    pipeline.run()
    recent = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["recent_events"]["M"]
    assert len(recent) == RECENT_EVENTS_KEPT
    entry = recent["r-24"]["M"]
    assert entry["type"]["S"] == "repository.push" and entry["repository"]["S"] and entry["actor"]["S"]
    projects = [i for i in ddb.scan(TableName=table)["Items"] if i["sk"]["S"] == "PROJECT"]
    assert len(projects) == 1  # the repository never imported got no project

    # The console's Activity: the projects of the user's imports, newest first.
    JobRecord(
        job_pk("j1"),
        "JOB",
        job_id="j1",
        owner_id="u1",
        created_at="2026-01-01T00:00:00.000Z",
        provider_id=CLOUD,
        flavor="cloud",
        repository_id=CLOUD_REPO,
        repository_full_name="team/repo",
    ).save()
    events = activity.recent_events("u1", limit=5)
    assert len(events) == 5 and all(e["provider"] == CLOUD for e in events)
    assert [e["occurred_at"] for e in events] == sorted((e["occurred_at"] for e in events), reverse=True)
    assert activity.recent_events("someone-else") == []


def _baseline(ref: str, head: str) -> None:
    """The repository's observed state as an import records it: `ref` at `head`."""
    from bitbridge.store import observed

    with acting_as("ImportWorkerFunction"):
        observed.record_seen(CLOUD, CLOUD_REPO, {ref: (head, None)}, {}, "2026-01-01T00:00:00Z")
        observed.finish_baseline(CLOUD, CLOUD_REPO, "2026-01-01T00:00:00Z", None, None)


def _observe(ref: str, new: str, read_at: str) -> dict:
    """What the reconciler does: read the ledger, compare with Bitbucket (`ref` at `new`), queue the difference."""
    from bitbridge.reconcile import diff, events
    from bitbridge.reconcile.emit import emit
    from bitbridge.store import observed

    seen = observed.read(CLOUD, CLOUD_REPO)
    assert seen is not None
    (change,) = diff.ref_changes(seen.ledger, {ref: (new, new)}, read_at)
    repository = {
        "id": CLOUD_REPO,
        "workspace": "team_name",
        "slug": "repo_name",
        "full_name": "team_name/repo_name",
        "name": "repo_name",
        "links": {"html": None, "clone": []},
    }
    event = events.push_event(CLOUD, "cloud", repository, seen.ledger.epoch, change, "2026-01-01T00:00:00Z")
    with acting_as("ReconcilerFunction"):
        assert emit(CLOUD_SUB, event, change.observation)
    return event


def test_a_reconciliation_between_a_stored_delivery_and_its_publishing_tells_the_change_once(pipeline, shared_dir):
    """Issue 20, forced: the delivery is stored (in the stream) but not yet published when the reconciler
    reads; its observation comes after it in the stream, finds the ledger moved on, and is superseded."""
    body = payload_bytes(shared_dir, "cloud/repo-push.json")
    change = json.loads(body)["push"]["changes"][0]
    old, new = change["old"]["target"]["hash"], change["new"]["target"]["hash"]
    _baseline("b:name-of-branch", old)
    assert pipeline.deliver("cloud", "repo:push", body, "stored-1") == 202  # not published yet
    observed_event = _observe("b:name-of-branch", new, "2026-12-31T00:00:00.000000Z")
    published = pipeline.run()
    assert [e["detail"]["id"] for e in published] == ["stored-1"]
    outbox = pipeline.item(f"{CLOUD}#{observed_event['id']}")
    assert outbox["status"]["S"] == "superseded" and "first" in outbox["error"]["S"]
    assert json.loads(outbox["change_ids"]["S"]) == [None]


def test_a_delivery_of_a_move_the_reconciler_told_first_is_not_published_again(pipeline, shared_dir):
    """The other order (streams of several shards): the observation is claimed first; the delivery, received
    before the reconciler read Bitbucket, is the same change: settled `duplicate`, with the change's id."""
    body = payload_bytes(shared_dir, "cloud/repo-push.json")
    change = json.loads(body)["push"]["changes"][0]
    old, new = change["old"]["target"]["hash"], change["new"]["target"]["hash"]
    _baseline("b:name-of-branch", old)
    observed_event = _observe("b:name-of-branch", new, "2999-01-01T00:00:00.000000Z")  # read after receipt
    (published,) = pipeline.run()
    assert published["detail"]["id"] == observed_event["id"] and published["detail"]["origin"] == "reconciliation"
    assert pipeline.deliver("cloud", "repo:push", body, "late-1") == 202
    assert pipeline.run() == []
    late = pipeline.item(f"{CLOUD}#late-1")
    assert late["status"]["S"] == "duplicate"
    assert json.loads(late["change_ids"]["S"]) == [None] and published["detail"]["change_id"] in late["error"]["S"]


def test_an_observed_state_too_large_for_one_item_still_publishes_the_event(pipeline, aws, shared_dir, caplog):
    """Past DynamoDB's 400 KB the ledger cannot take a claim: the event is still published, with an id of
    its own (never another change's), and the publisher says why reconciliation no longer covers it."""
    item = {"pk": f"PROJECT#{CLOUD}#{CLOUD_REPO}", "sk": "OBSERVED", "epoch": "e"}
    # DynamoDB counts an item's attribute names and values; fill it to within 50 bytes of the limit moto
    # enforces (405,000: DynamoDB's 400 KB is measured between 409 and 410 KB).
    used = sum(len(k) + len(v) for k, v in item.items()) + len("clock") + 1 + len("padding")
    _boto("dynamodb").put_item(
        TableName=aws.ref("ImportsTable"),
        Item={
            **{k: {"S": v} for k, v in item.items()},
            "clock": {"N": "0"},
            "padding": {"S": "x" * (405_000 - 50 - used)},
        },
    )
    assert pipeline.deliver("cloud", "repo:push", payload_bytes(shared_dir, "cloud/repo-push.json"), "big-1") == 202
    (published,) = pipeline.run()
    change_id = published["detail"]["change_id"]
    assert change_id.startswith("chg-") and published["detail"]["ref_changes"][0]["change_id"] == change_id
    assert pipeline.item(f"{CLOUD}#big-1")["status"]["S"] == "published"
    assert any("exceeds the item size" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
