"""Watch what is published on the event bus: a rule routes every bitbridge event to a tap queue.

The tap keeps recent events in memory for the local console (`GET /events`) and tests, and
prints a one-line summary of each so `make dev` shows events as they arrive.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from infra.local.pollers import LONG_POLL_SECONDS, Poller
from infra.local.resources import ClientFactory

log = logging.getLogger("local.events")

TAP_RULE = "bitbridge-local-tap"
EVENT_SOURCE_PREFIX = "bitbridge"


class EventTap(Poller):
    idle_wait = 0.0  # its receive waits (long polling)

    def __init__(self, client: ClientFactory, bus_name: str, queue_name: str, keep: int = 10_000) -> None:
        super().__init__("events-tap")
        self.sqs = client("sqs")
        events = client("events")
        self.queue_url = self.sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(
            Name=TAP_RULE,
            EventBusName=bus_name,
            EventPattern=json.dumps({"source": [{"prefix": EVENT_SOURCE_PREFIX}]}),
            State="ENABLED",
        )
        events.put_targets(Rule=TAP_RULE, EventBusName=bus_name, Targets=[{"Id": "tap", "Arn": queue_arn}])
        self.keep = keep
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()

    def poll_once(self) -> bool:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=LONG_POLL_SECONDS
        ).get("Messages", [])
        if not messages:
            return False
        received = [json.loads(m["Body"]) for m in messages]
        self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        with self.changed:
            for envelope in received:
                detail = envelope.get("detail", {})
                log.info("event %s %s id=%s", envelope.get("detail-type"), _subject(detail), detail.get("id"))
                self.events.append(envelope)
            del self.events[: max(0, len(self.events) - self.keep)]
            self.changed.notify_all()
        return True

    def since(self, index: int) -> tuple[list[dict[str, Any]], int]:
        with self.changed:
            return self.events[index:], len(self.events)


def _subject(detail: dict[str, Any]) -> str:
    repository = detail.get("repository") or {}
    return str(repository.get("full_name") or detail.get("repository_id") or "")
