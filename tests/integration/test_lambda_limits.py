"""Event sources under Lambda's limits: throttled and timed-out SQS batches come back after the
visibility timeout (MaximumConcurrency avoids the throttles), and stream filters decide what is delivered."""

from __future__ import annotations

import json
import threading
import time

import boto3
from moto import mock_aws

from infra.local.lambda_runtime import FunctionRunner
from infra.local.pollers import SqsPoller, StreamPoller, sqs_concurrency
from infra.local.resources import create_resources
from infra.local.template import Function

RECEIVES: list[tuple[str, int]] = []  # (body, ApproximateReceiveCount) per delivered record
LOCK = threading.Lock()


def busy(event, context):
    """Takes 0.3 s per batch; a body "slow-once" outlives a 1 s Timeout on its first receive."""
    for record in event["Records"]:
        count = int(record["attributes"]["ApproximateReceiveCount"])
        with LOCK:
            RECEIVES.append((record["body"], count))
        if record["body"] == "slow-once" and count == 1:
            time.sleep(1.6)
    time.sleep(0.3)
    return {"batchItemFailures": []}


def published(event, context):
    with LOCK:
        RECEIVES.extend((r["dynamodb"]["NewImage"]["pk"]["S"], 1) for r in event["Records"])
    return {"batchItemFailures": []}


def _client(service: str):
    return boto3.client(service, region_name="us-east-1")


def _drain(source: dict, reserved: int, bodies: list[str], timeout: int = 5) -> tuple[dict[str, list[int]], list[str]]:
    """Run the SQS event source with `sqs_concurrency(source)` pollers until the queue is empty:
    each body's receive counts as the function saw them, and the bodies dead-lettered."""
    RECEIVES.clear()
    with mock_aws():
        res = create_resources(_client, overrides={"ImportQueue": {"VisibilityTimeout": 1}})
        queue = res.ref("ImportQueue")
        for body in bodies:
            _client("sqs").send_message(QueueUrl=queue, MessageBody=body)
        runner = FunctionRunner(
            {"busy": Function("busy", __name__, "busy", timeout, 128, reserved_concurrency=reserved)}
        )
        arn = res.attributes[("ImportQueue", "Arn")]
        pollers = [SqsPoller(runner, "busy", source, queue, arn, _client) for _ in range(sqs_concurrency(source))]
        for poller in pollers:
            poller.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            left = _client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
            if left["ApproximateNumberOfMessages"] == left["ApproximateNumberOfMessagesNotVisible"] == "0":
                break
        for poller in pollers:
            poller.stop()
        for poller in pollers:
            if poller.busy:  # the others wait in a long poll, and handle nothing more once stopped
                poller.join(5)
        dlq = res.ref("ImportDeadLetterQueue")
        dead = [
            m["Body"] for m in _client("sqs").receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
        ]
    assert left["ApproximateNumberOfMessages"] == left["ApproximateNumberOfMessagesNotVisible"] == "0"
    counts: dict[str, list[int]] = {}
    for body, count in RECEIVES:
        counts.setdefault(body, []).append(count)
    return counts, dead


SOURCE = {"BatchSize": 1, "FunctionResponseTypes": ["ReportBatchItemFailures"]}


def test_more_pollers_than_reserved_concurrency_throttle_and_messages_come_back_received_again():
    bodies = [f"m-{i}" for i in range(8)]
    counts, dead = _drain(SOURCE, reserved=1, bodies=bodies)
    # Throttled batches went back to the queue: their receive count grew, and those throttled
    # maxReceiveCount (5) times were dead-lettered without ever reaching the function.
    assert max(max(c) for c in counts.values()) > 1 or dead
    assert sorted([*counts, *dead]) == bodies and not set(counts) & set(dead)


def test_maximum_concurrency_at_the_reserved_concurrency_means_no_throttles():
    bodies = [f"m-{i}" for i in range(8)]
    counts, dead = _drain({**SOURCE, "ScalingConfig": {"MaximumConcurrency": 2}}, reserved=2, bodies=bodies)
    assert counts == {body: [1] for body in bodies} and dead == []


def test_a_batch_that_times_out_is_received_again_after_the_visibility_timeout():
    counts, dead = _drain({**SOURCE, "ScalingConfig": {"MaximumConcurrency": 2}}, 2, ["slow-once", "quick"], timeout=1)
    assert counts == {"slow-once": [1, 2], "quick": [1]} and dead == []


def test_stream_filter_criteria_decide_which_records_reach_the_function():
    RECEIVES.clear()
    pattern = {"dynamodb": {"NewImage": {"status": {"S": ["received"]}}}}
    source = {
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 10,
        "FilterCriteria": {"Filters": [{"Pattern": json.dumps(pattern)}]},
    }
    with mock_aws():
        res = create_resources(_client)
        for pk, status in [("a", "received"), ("b", "published"), ("c", "received"), ("d", "ignored")]:
            _client("dynamodb").put_item(
                TableName=res.ref("DeliveriesTable"), Item={"pk": {"S": pk}, "status": {"S": status}}
            )
        runner = FunctionRunner({"published": Function("published", __name__, "published", 5, 128)})
        stream = res.attributes[("DeliveriesTable", "StreamArn")]
        poller = StreamPoller(runner, "published", source, stream, None, _client)
        while poller.poll_once():
            pass
    assert [pk for pk, _ in RECEIVES] == ["a", "c"]
