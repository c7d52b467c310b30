"""Event sources as Lambda runs them: SQS queue -> function, DynamoDB stream -> function, and a schedule.

Settings (batch size, partial batch responses, retries, bisecting, on-failure destination, event
filters) come from the function's event definition in template.yaml. Lambda's pollers act with the
function's execution role, so their own calls (receive, delete, stream reads, the on-failure message)
are checked against the function's policy too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from infra.local import filters, iam
from infra.local.lambda_runtime import FunctionRunner, Throttled
from infra.local.resources import REGION, ClientFactory

log = logging.getLogger("local.pollers")


class Poller(threading.Thread):
    # Seconds between polls that found nothing. An idle stack's polls are most of its CPU when it has nothing
    # to do, and the suite runs several stacks at once: pollers that can wait inside their read (SQS's long
    # polling) wait there instead.
    idle_wait = 0.2

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()
        self._working = threading.Lock()  # held while a batch is handled: what stop() waits for
        self._busy = False

    def stop(self) -> None:
        with self._working:
            self.stopping.set()

    @property
    def busy(self) -> bool:
        """Handling a batch (a function running), not waiting for one: only these are worth waiting for
        when the stack stops. Read after stop(), a poller not busy then never becomes busy."""
        return self._busy

    def working(self) -> bool:
        """Called with a batch in hand: True when it may be handled, False once the stack is stopping (the
        batch is left to return, as a message Lambda received but never handed to the function does)."""
        with self._working:
            if self.stopping.is_set():
                return False
            self._busy = True
            return True

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                try:
                    found = self.poll_once()
                finally:
                    self._busy = False
                if not found and self.idle_wait:
                    self.stopping.wait(self.idle_wait)
            except Exception:
                if self.stopping.is_set():
                    return
                log.exception("%s failed; retrying", self.name)
                self.stopping.wait(1.0)

    def poll_once(self) -> bool:
        """Process one batch; False when there was nothing to do."""
        raise NotImplementedError


# Concurrent batches Lambda's SQS poller starts with; it scales up from there (far beyond any reserved
# concurrency this template sets), unless ScalingConfig.MaximumConcurrency caps it.
SQS_INITIAL_CONCURRENCY = 5
LONG_POLL_SECONDS = 20  # SQS's maximum, and what Lambda's poller uses


def sqs_concurrency(source: dict[str, Any]) -> int:
    """How many batches the local stack polls and invokes at once for an SQS event source."""
    maximum = (source.get("ScalingConfig") or {}).get("MaximumConcurrency")
    return int(maximum) if maximum not in (None, "") else SQS_INITIAL_CONCURRENCY


class SqsPoller(Poller):
    """Receives batches and deletes what the function processed, as Lambda's SQS poller does.

    A batch that raises is left alone (it reappears after the visibility timeout); with
    ReportBatchItemFailures only the listed messages are left. SQS itself moves a message
    to the dead-letter queue after the redrive policy's maxReceiveCount.

    Long polling, as Lambda's poller: a receive waits up to LONG_POLL_SECONDS and answers as soon as a
    message arrives (moto wakes waiting receives on a send, and checks each second for messages whose
    delay or visibility timeout ended), so waiting longer costs no latency, only idle requests.
    """

    idle_wait = 0.0

    def __init__(
        self,
        runner: FunctionRunner,
        function: str,
        source: dict[str, Any],
        queue_url: str,
        queue_arn: str,
        client: ClientFactory,
        *,
        wait_seconds: int = LONG_POLL_SECONDS,
    ) -> None:
        super().__init__(f"sqs:{function}")
        self.wait_seconds = wait_seconds  # a test driving poll_once() by hand may want a short one
        self.runner = runner
        self.function = function
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = int(source.get("BatchSize", 10))
        self.partial = "ReportBatchItemFailures" in source.get("FunctionResponseTypes", [])
        self.sqs = client("sqs")

    def poll_once(self) -> bool:
        with iam.acting_as(self.function):
            return self._poll()

    def _poll(self) -> bool:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.batch_size, 10),
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        if not self.working():
            return True
        event = {"Records": [self._record(m) for m in messages]}
        try:
            result = self.runner.invoke(self.function, event)
        except Throttled:
            # Lambda's SQS poller hands a throttled batch back to the queue: it returns after the
            # visibility timeout, its receive count one higher (maxReceiveCount then dead-letters it).
            log.warning("%s throttled; %d messages return after the visibility timeout", self.function, len(messages))
            return True
        except Exception:
            log.exception("%s failed; %d messages return after the visibility timeout", self.function, len(messages))
            return True
        failed: set[str] = set()
        if self.partial and isinstance(result, dict):
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return True

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: {k[0].lower() + k[1:]: v for k, v in attr.items()}
                for name, attr in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }


class StreamPoller(Poller):
    """Reads a DynamoDB stream shard by shard and invokes the function in order.

    On error the batch is retried (bisected when BisectBatchOnFunctionError is set) up to
    MaximumRetryAttempts, then its description goes to the OnFailure destination and the
    poller moves on, as Lambda does. With ReportBatchItemFailures the checkpoint is the
    first failed record. Each shard is read 4 times a second when idle, as Lambda reads one.
    """

    idle_wait = 0.25
    shards_every = 2.0  # seconds between listings of the stream's shards (a split is rare; moto never splits)

    def __init__(
        self,
        runner: FunctionRunner,
        function: str,
        source: dict[str, Any],
        stream_arn: str,
        on_failure_queue_url: str | None,
        client: ClientFactory,
    ) -> None:
        super().__init__(f"stream:{function}")
        self.runner = runner
        self.function = function
        self.stream_arn = stream_arn
        self.batch_size = int(source.get("BatchSize", 100))
        self.max_retries = int(source.get("MaximumRetryAttempts", -1))
        self.bisect = bool(source.get("BisectBatchOnFunctionError", False))
        self.partial = "ReportBatchItemFailures" in source.get("FunctionResponseTypes", [])
        self.starting_position = source.get("StartingPosition", "LATEST")
        self.filters = filters.patterns(source.get("FilterCriteria"))
        self.on_failure_queue_url = on_failure_queue_url
        self.streams = client("dynamodbstreams")
        self.sqs = client("sqs")
        self.iterators: dict[str, str | None] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {}  # fetched but not yet processed, per shard
        self.last_read: dict[str, str] = {}  # per shard, the sequence number of the last record fetched
        self.start_at: dict[str, list[str]] = {}  # per shard, [iterator type, sequence number] to resume at
        self.retry_delay = 0.2
        self._shards_listed_at: float | None = None

    @property
    def key(self) -> str:
        return f"{self.function} {self.stream_arn}"

    def positions(self) -> dict[str, list[str]]:
        """Where each shard is to be read on from after a restart: at the first record not yet done with,
        else after the last one read (records the filters rejected included)."""
        out = dict(self.start_at)
        for shard_id in self.iterators:
            pending = list(self.pending.get(shard_id, ()))
            if pending:
                out[shard_id] = ["AT_SEQUENCE_NUMBER", pending[0]["dynamodb"]["SequenceNumber"]]
            elif shard_id in self.last_read:
                out[shard_id] = ["AFTER_SEQUENCE_NUMBER", self.last_read[shard_id]]
        return out

    def resume(self, positions: dict[str, list[str]]) -> None:
        """Read on from saved positions (shards not listed start at the event source's StartingPosition)."""
        self.start_at = {shard: list(at) for shard, at in positions.items()}

    def _refresh_shards(self) -> None:
        now = time.monotonic()
        if self._shards_listed_at is not None and now - self._shards_listed_at < self.shards_every:
            return
        self._shards_listed_at = now
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self.iterators:
                where: dict[str, str] = {"ShardIteratorType": self.starting_position}
                if shard_id in self.start_at:
                    kind, sequence = self.start_at[shard_id]
                    where = {"ShardIteratorType": kind, "SequenceNumber": sequence}
                self.iterators[shard_id] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, **where
                )["ShardIterator"]
                self.pending[shard_id] = []

    def poll_once(self) -> bool:
        with iam.acting_as(self.function):
            return self._poll()

    def _poll(self) -> bool:
        self._refresh_shards()
        worked = False
        for shard_id, iterator in list(self.iterators.items()):
            pending = self.pending[shard_id]
            if iterator and len(pending) < self.batch_size:
                response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
                self.iterators[shard_id] = response.get("NextShardIterator")
                records = response.get("Records", [])
                if records:
                    self.last_read[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                worked = worked or bool(records)
                # Records the filters reject are never delivered; the checkpoint moves past them.
                pending.extend(r for r in records if filters.delivered(self.filters, self._record(r)))
            if pending:
                if not self.working():
                    return True  # stopping: what is pending is where a restart reads on (positions())
                batch = pending[: self.batch_size]
                processed = self._process(shard_id, batch)
                del pending[:processed]
                worked = True
        return worked

    def _process(self, shard_id: str, batch: list[dict[str, Any]]) -> int:
        """Deliver `batch`; return how many records (from the start) are done with."""
        attempts = 0
        while not self.stopping.is_set():
            failed_at = self._invoke(batch)
            if failed_at is None:
                self.retry_delay = 0.2
                return len(batch)
            if failed_at > 0:
                return failed_at  # checkpoint before the first failure; retry from there
            attempts += 1
            if self.bisect and len(batch) > 1:
                batch = batch[: len(batch) // 2]
                continue
            if 0 <= self.max_retries < attempts:
                self._send_to_failure_destination(shard_id, batch)
                return len(batch)
            self.stopping.wait(self.retry_delay)
            self.retry_delay = min(self.retry_delay * 2, 5.0)
        return 0

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        """None when the whole batch succeeded, else the index of the first failed record."""
        event = {"Records": [self._record(r) for r in batch]}
        try:
            result = self._invoke_unthrottled(event)
        except Exception:
            log.exception("%s raised on a batch of %d stream records", self.function, len(batch))
            return 0
        failures = (result or {}).get("batchItemFailures") if self.partial and isinstance(result, dict) else None
        if not failures:
            return None
        failed = {f["itemIdentifier"] for f in failures}
        for index, record in enumerate(batch):
            if record["dynamodb"]["SequenceNumber"] in failed:
                return index
        return 0

    def _invoke_unthrottled(self, event: dict[str, Any]) -> Any:
        """Invoke; a throttled batch is retried as it is (throttles do not count as retries)."""
        delay = 0.05
        while True:
            try:
                return self.runner.invoke(self.function, event)
            except Throttled:
                if self.stopping.wait(delay):
                    raise
                delay = min(delay * 2, 1.0)

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        data = dict(record["dynamodb"])
        created = data.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            data["ApproximateCreationDateTime"] = created.timestamp()
        return {
            "eventID": record.get("eventID", uuid.uuid4().hex),
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": data,
            "eventSourceARN": self.stream_arn,
        }

    def _send_to_failure_destination(self, shard_id: str, batch: list[dict[str, Any]]) -> None:
        log.error("%s: giving up on %d records after retries", self.function, len(batch))
        if not self.on_failure_queue_url:
            return
        # The shape Lambda sends to an on-failure destination for stream sources.
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.max_retries + 1,
            },
            "timestamp": datetime.now(UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
        }
        self.sqs.send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(message))


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_period(expression: str) -> float:
    """Seconds between runs of a `rate(...)` expression (the only kind this template uses; a `cron(...)`
    is refused at start-up rather than silently never run)."""
    match = _RATE.fullmatch(expression.strip())
    if not match:
        raise NotImplementedError(f"the local stack runs rate(...) schedules only, not {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


class SchedulePoller(Poller):
    """Invokes a function on its `Schedule`/`ScheduleV2` event's rate, as EventBridge (Scheduler) does:
    the first run one period after start, then every period; a failed run is logged, not retried."""

    def __init__(self, runner: Any, function: str, source: dict[str, Any], period: float | None = None) -> None:
        super().__init__(f"schedule:{function}")
        self.runner, self.function = runner, function
        self.expression = str(source["ScheduleExpression"])
        self.period = period if period is not None else schedule_period(self.expression)
        self.runs = 0

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            try:
                self.poll_once()
            finally:
                self._busy = False

    def poll_once(self) -> bool:
        if not self.working():
            return False
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "detail": {},
        }
        try:
            self.runner.invoke(self.function, event)
        except Exception:
            log.exception("scheduled run of %s (%s) failed", self.function, self.expression)
        self.runs += 1
        return True
