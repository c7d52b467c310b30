"""The local event-source emulation behaves like Lambda's pollers, with the template's settings."""

from __future__ import annotations

import json
import time

import boto3
from moto import mock_aws

from infra.local.lambda_runtime import FunctionRunner
from infra.local.pollers import SqsPoller, StreamPoller
from infra.local.resources import create_resources
from infra.local.template import Function, functions, load_template

CALLS: list[dict] = []


def failing_some(event, context):
    """Reports every message whose body is "fail" as a batch item failure."""
    CALLS.append(event)
    failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"]
    return {"batchItemFailures": failures}


def always_raises(event, context):
    CALLS.append(event)
    raise RuntimeError("downstream is down")


def records_stream(event, context):
    CALLS.append(event)
    return {"batchItemFailures": []}


def _runner(name: str) -> FunctionRunner:
    return FunctionRunner({name: Function(name, __name__, name, timeout=30, memory=128)})


def _client(service: str):
    return boto3.client(service, region_name="us-east-1")


def test_sqs_partial_batch_failure_and_dead_letter_after_max_receives():
    CALLS.clear()
    worker_source = functions(load_template())["ImportWorkerFunction"].sqs_sources[0]
    with mock_aws():
        # Same queue as the template, with a 1 s visibility so the retry is observable.
        res = create_resources(_client, overrides={"ImportQueue": {"VisibilityTimeout": 1}})
        sqs = _client("sqs")
        queue_url = res.ref("ImportQueue")
        for body in ("ok-1", "fail", "ok-2"):
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        poller = SqsPoller(
            _runner("failing_some"),
            "failing_some",
            worker_source,
            queue_url,
            res.attributes[("ImportQueue", "Arn")],
            _client,
            wait_seconds=1,
        )
        assert poller.poll_once()
        assert len(CALLS[0]["Records"]) == 3
        assert CALLS[0]["Records"][0]["eventSource"] == "aws:sqs"

        max_receives = load_template()["Resources"]["ImportQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1.05)
            poller.poll_once()
            dlq = sqs.receive_message(QueueUrl=res.ref("ImportDeadLetterQueue"), MaxNumberOfMessages=10)
            if dlq.get("Messages"):
                break
        # Only the failing message was retried, and it went to the DLQ after maxReceiveCount receives.
        bodies = [r["body"] for call in CALLS for r in call["Records"]]
        assert bodies.count("ok-1") == 1 and bodies.count("ok-2") == 1
        assert bodies.count("fail") == max_receives
        assert [m["Body"] for m in dlq["Messages"]] == ["fail"]


def _put_deliveries(table: str, count: int) -> None:
    ddb = _client("dynamodb")
    for i in range(count):
        # Shaped like the receiver's items (status "received"), so the publisher's FilterCriteria passes them.
        ddb.put_item(TableName=table, Item={"pk": {"S": f"d-{i}"}, "n": {"N": str(i)}, "status": {"S": "received"}})


def test_stream_records_arrive_in_order_as_lambda_shapes_them():
    CALLS.clear()
    with mock_aws():
        res = create_resources(_client)
        _put_deliveries(res.ref("DeliveriesTable"), 5)
        source = {
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 2,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }
        poller = StreamPoller(
            _runner("records_stream"),
            "records_stream",
            source,
            res.attributes[("DeliveriesTable", "StreamArn")],
            None,
            _client,
        )
        while poller.poll_once():
            pass
        records = [r for call in CALLS for r in call["Records"]]
        assert [r["dynamodb"]["NewImage"]["pk"]["S"] for r in records] == [f"d-{i}" for i in range(5)]
        assert all(len(call["Records"]) <= 2 for call in CALLS)
        assert records[0]["eventName"] == "INSERT" and records[0]["eventSource"] == "aws:dynamodb"


def test_stream_batch_goes_to_on_failure_destination_after_retries():
    CALLS.clear()
    publisher = functions(load_template())["EventPublisherFunction"].stream_sources[0]
    with mock_aws():
        res = create_resources(_client)
        _put_deliveries(res.ref("DeliveriesTable"), 1)
        source = {**publisher, "MaximumRetryAttempts": 2}
        poller = StreamPoller(
            _runner("always_raises"),
            "always_raises",
            source,
            res.attributes[("DeliveriesTable", "StreamArn")],
            res.ref("PublishFailureQueue"),
            _client,
        )
        poller.retry_delay = 0.01
        poller.poll_once()
        assert len(CALLS) == 3  # the first try and two retries
        message = _client("sqs").receive_message(QueueUrl=res.ref("PublishFailureQueue"))["Messages"][0]
        info = json.loads(message["Body"])["DDBStreamBatchInfo"]
        assert info["batchSize"] == 1
        assert info["streamArn"] == res.attributes[("DeliveriesTable", "StreamArn")]
