"""Redrive what the stream parked: the publisher's own recovery from a bus outage, without a human.

After the stream's retries a batch goes to the PublishFailureQueue. Lambda's message says only which
stream range failed (shard, first and last sequence number), not the deliveries, so each message is
read back from the stream (kept 24 hours) to the delivery keys it stands for, and every one of those
deliveries still ``received`` in the table is published again (same event ids). When the bus still
refuses, the message stays in the queue, invisible for a doubling delay (``BACKOFF_SECONDS``, capped
at ``MAX_BACKOFF_SECONDS``), so an outage costs a few calls, not a storm. The SQS event source on the
queue runs :func:`handle_failure_messages`; ``bitbridge events replay`` remains a tool for windows and
for deliveries a message can no longer name (older than the stream's 24 hours).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.store import deliveries
from bitbridge.store.deliveries import RECEIVED, Delivery
from bitbridge.webhooks.publish import publish_deliveries

log = logging.getLogger(__name__)

#: The first wait after a redrive the bus refused; it doubles with every receive of the message.
BACKOFF_SECONDS = 15
MAX_BACKOFF_SECONDS = 900


def handle_failure_messages(records: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """The redriver's work for one SQS batch; the partial batch response Lambda expects."""
    failures: list[dict[str, str]] = []
    for record in records:
        parked = parked_deliveries(record["body"])
        if parked is None:
            log.error(
                "failure message %s names no readable stream range; run `bitbridge events replay`", record["messageId"]
            )
            _back_off(record, MAX_BACKOFF_SECONDS)
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        outcome = publish_deliveries(parked, stop_at_failure=False)
        if outcome.failed:
            receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
            delay = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (receives - 1))
            log.warning("%d parked deliveries still unpublished; next try in %d s", len(outcome.failed), delay)
            _back_off(record, delay)
            failures.append({"itemIdentifier": record["messageId"]})
        else:
            log.info("redrove %d parked deliveries", len(outcome.published))
    return {"batchItemFailures": failures}


def parked_deliveries(body: str) -> list[Delivery] | None:
    """The deliveries a failure message stands for that are still unpublished, in arrival order;
    None when the message's stream range can no longer be read."""
    named = batch_deliveries(body)
    if named is None:
        return None
    current = (deliveries.get(d.provider_id, d.delivery_id) for d in named)
    return sorted((d for d in current if d is not None and d.status == RECEIVED), key=lambda d: d.received_at)


def batch_deliveries(body: str) -> list[Delivery] | None:
    """The deliveries (as inserted) in the stream range a failure message describes, read back from
    the stream; None when they can no longer be read (a malformed message or an expired stream)."""
    try:
        info = json.loads(body)["DDBStreamBatchInfo"]
        streams = client("dynamodbstreams")
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=info["startSequenceNumber"],
        ).get("ShardIterator")
        end, wanted = int(info["endSequenceNumber"]), int(info["batchSize"])
        found: list[Delivery] = []
        seen = 0
        for _ in range(20):  # a batch is at most 25 records; empty pages end it early
            if not iterator or seen >= wanted:
                break
            page = streams.get_records(ShardIterator=iterator, Limit=wanted - seen)
            records = page.get("Records", [])
            for record in records:
                if int(record["dynamodb"]["SequenceNumber"]) > end:
                    return found
                seen += 1
                delivery = Delivery.from_image(record["dynamodb"].get("NewImage") or {})
                if record["eventName"] == "INSERT" and delivery.status == RECEIVED:
                    found.append(delivery)
            if not records:
                break
            iterator = page.get("NextShardIterator")
        return found
    except Exception:
        return None


def _back_off(record: dict[str, Any], seconds: int) -> None:
    try:
        client("sqs").change_message_visibility(
            QueueUrl=settings().publish_failure_queue_url,
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=seconds,
        )
    except Exception as exc:  # the queue's own visibility timeout is the fallback delay
        log.warning("cannot delay failure message %s: %s", record["messageId"], type(exc).__name__)
