"""CloudWatch Logs subscriptions, locally.

On Lambda a function's stdout is its log group, and a `CloudWatchLogs` event on another function
(SAM's AWS::Logs::SubscriptionFilter) hands the lines its FilterPattern matches to that function: in
batches, gzip + base64 in `awslogs.data`, invoked asynchronously - so a failed invocation is retried
(EventInvokeConfig MaximumRetryAttempts, default 2) and then sent to the function's DeadLetterQueue.

Here `FunctionStdout` stands in for sys.stdout: everything still reaches the real stdout, and a line
written during an invocation of a function whose log group is subscribed also goes to that
subscription's `LogDelivery`, which batches for about a second and invokes the destination the same way.
Lambda waits about one and then two minutes between async retries; locally the waits are seconds.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from infra.local import iam
from infra.local.lambda_runtime import FunctionRunner
from infra.local.pollers import Poller
from infra.local.resources import ACCOUNT_ID, ClientFactory
from infra.local.template import Function, Resolver, resources_of_type

log = logging.getLogger("local.logs")

BATCH_SECONDS = 1.0  # CloudWatch Logs delivers within seconds; a second keeps tests quick
# A batch stays within PutLogEvents' limits (10,000 events, 1,048,576 bytes counting 26 per event), so the
# event a subscribed function gets is never larger than what CloudWatch Logs would send.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
RETRY_DELAYS = (1.0, 2.0)  # Lambda's async retries wait ~1 then ~2 minutes


# ------------------------------------------------------------------------------------------ filter patterns

_TERM = re.compile(r"^\$\.([A-Za-z0-9_.]+)\s*=\s*(\*|\"[^\"]*\"|-?\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class FilterPattern:
    """The part of CloudWatch Logs' JSON filter syntax this template uses: `{ $.a.b = value }` terms
    (a quoted string, a number, or `*` for "present") joined by `&&`. Anything else is refused when the
    stack starts, so the template cannot rely on a pattern the local stack would match differently."""

    text: str
    terms: tuple[tuple[tuple[str, ...], Any], ...]

    @classmethod
    def parse(cls, text: str) -> FilterPattern:
        body = text.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise NotImplementedError(f"filter pattern {text!r}: only JSON patterns {{ $.field = value }} run locally")
        terms = []
        for part in body[1:-1].split("&&"):
            match = _TERM.match(part.strip())
            if not match:
                raise NotImplementedError(f"filter pattern {text!r}: term {part.strip()!r} is not supported locally")
            path, raw = tuple(match.group(1).split(".")), match.group(2)
            value: Any = "*" if raw == "*" else raw[1:-1] if raw.startswith('"') else float(raw)
            terms.append((path, value))
        return cls(text, tuple(terms))

    def matches(self, message: str) -> bool:
        try:
            data = json.loads(message)
        except ValueError:
            return False
        return all(_term_matches(data, path, value) for path, value in self.terms)


def _term_matches(data: Any, path: tuple[str, ...], expected: Any) -> bool:
    for name in path:
        if not isinstance(data, dict) or name not in data:
            return False
        data = data[name]
    if expected == "*":
        return True
    if isinstance(expected, float):
        return isinstance(data, int | float) and not isinstance(data, bool) and float(data) == expected
    return data == expected


# ------------------------------------------------------------------------------------------ subscriptions


@dataclass(frozen=True)
class Subscription:
    log_group: str
    pattern: FilterPattern
    destination: str  # the subscribed function's logical id
    filter_name: str
    retries: int
    dead_letter_url: str | None


def log_group_name(template: dict[str, Any], resolver: Resolver, value: Any) -> str:
    """A LogGroupName as written (`!Ref SomeLogGroup` or a string) resolved to the group's name."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        groups = dict(resources_of_type(template, "AWS::Logs::LogGroup"))
        if value["Ref"] in groups:
            return str(resolver.resolve(groups[value["Ref"]]["Properties"]["LogGroupName"]))
    return str(resolver.resolve(value))


def function_log_groups(template: dict[str, Any], resolver: Resolver, functions: dict[str, Function]) -> dict[str, str]:
    """Each function's log group: LoggingConfig.LogGroup, or Lambda's default /aws/lambda/{name}."""
    return {
        name: log_group_name(template, resolver, fn.log_group) if fn.log_group else f"/aws/lambda/{name}"
        for name, fn in functions.items()
    }


def subscriptions(
    template: dict[str, Any], resolver: Resolver, functions: dict[str, Function], queue_urls: dict[str, str]
) -> list[Subscription]:
    """Every `CloudWatchLogs` event in the template. `queue_urls` maps queue ARNs to URLs."""
    out = []
    for name, fn in functions.items():
        dead_letter = resolver.resolve(fn.dead_letter) if fn.dead_letter else None
        for event_name, source in fn.log_sources:
            out.append(
                Subscription(
                    log_group=log_group_name(template, resolver, source["LogGroupName"]),
                    pattern=FilterPattern.parse(str(resolver.resolve(source["FilterPattern"]))),
                    destination=name,
                    filter_name=f"{name}{event_name}",
                    retries=fn.async_retries,
                    dead_letter_url=queue_urls[dead_letter] if dead_letter else None,
                )
            )
    return out


def awslogs_event(log_group: str, filter_name: str, lines: list[tuple[int, str]]) -> dict[str, Any]:
    """The event CloudWatch Logs sends a subscribed function (timestamps in ms)."""
    document = {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT_ID,
        "logGroup": log_group,
        "logStream": time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
        "subscriptionFilters": [filter_name],
        "logEvents": [{"id": uuid.uuid4().hex, "timestamp": at, "message": message} for at, message in lines],
    }
    data = base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()
    return {"awslogs": {"data": data}}


# ------------------------------------------------------------------------------------------ delivery


class LogDelivery(Poller):
    """One subscription: collects matching lines, invokes the destination asynchronously with a batch."""

    def __init__(
        self,
        runner: FunctionRunner,
        subscription: Subscription,
        client: ClientFactory,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        super().__init__(f"logs:{subscription.filter_name}")
        self.runner, self.subscription, self.client = runner, subscription, client
        self.retry_delays = retry_delays
        self.lines: queue.Queue[tuple[int, str]] = queue.Queue()
        self._held: tuple[int, str] | None = None
        self.delivered = 0  # batches the destination accepted
        self.dead_lettered = 0

    def offer(self, message: str) -> None:
        if self.subscription.pattern.matches(message):
            self.lines.put((int(time.time() * 1000), message))

    def poll_once(self) -> bool:
        first, self._held = self._held, None
        if first is None:
            try:
                first = self.lines.get(timeout=0.2)
            except queue.Empty:
                return False
        batch, size = [first], _event_bytes(first)
        deadline = time.monotonic() + BATCH_SECONDS
        while len(batch) < MAX_BATCH_EVENTS and (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if size + _event_bytes(line) > MAX_BATCH_BYTES:
                self._held = line  # the first of the next batch
                break
            batch.append(line)
            size += _event_bytes(line)
        if not self.working():
            return True
        self.deliver(batch)
        return True

    def deliver(self, batch: list[tuple[int, str]]) -> None:
        sub = self.subscription
        event = awslogs_event(sub.log_group, sub.filter_name, batch)
        for attempt in range(sub.retries + 1):
            try:
                self.runner.invoke(sub.destination, event)
                self.delivered += 1
                return
            except Exception as exc:  # a function error, timeout or throttle: Lambda retries async invokes
                log.warning("%s: invocation failed (%s), attempt %d", sub.filter_name, type(exc).__name__, attempt + 1)
                if attempt < sub.retries and self.stopping.wait(
                    self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
                ):
                    return
        if sub.dead_letter_url is None:
            log.error(
                "%s: batch of %d lines dropped after %d retries (no DeadLetterQueue)",
                sub.filter_name,
                len(batch),
                sub.retries,
            )
            return
        # Lambda sends the event to the dead-letter queue with the function's execution role.
        with iam.acting_as(sub.destination):
            self.client("sqs").send_message(QueueUrl=sub.dead_letter_url, MessageBody=json.dumps(event))
        self.dead_lettered += 1
        log.error(
            "%s: batch of %d lines sent to the dead-letter queue after %d retries",
            sub.filter_name,
            len(batch),
            sub.retries,
        )


def _event_bytes(line: tuple[int, str]) -> int:
    return len(line[1].encode()) + EVENT_OVERHEAD_BYTES


# ------------------------------------------------------------------------------------------ capture


class FunctionStdout:
    """sys.stdout for the local stack: writes go to the real stream; each complete line written during an
    invocation of a subscribed function's log group is offered to that group's deliveries too."""

    def __init__(self, real: TextIO, deliveries_by_function: dict[str, list[LogDelivery]]) -> None:
        self.real = real
        self.deliveries = deliveries_by_function
        self._partial = threading.local()

    def write(self, text: str) -> int:
        written = self.real.write(text)
        invocation = iam.current_invocation()
        deliveries = self.deliveries.get(invocation.function) if invocation else None
        if deliveries:
            pending = getattr(self._partial, "text", "") + text
            *lines, self._partial.text = pending.split("\n")
            for line in lines:
                for delivery in deliveries:
                    delivery.offer(line)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def capture(
    log_groups: dict[str, str], deliveries: list[LogDelivery], install: Callable[[Any], None] | None = None
) -> FunctionStdout:
    """Install a FunctionStdout routing each function's lines to the deliveries of its log group."""
    by_function: dict[str, list[LogDelivery]] = {}
    for function, group in log_groups.items():
        matching = [d for d in deliveries if d.subscription.log_group == group]
        if matching:
            by_function[function] = matching
    stdout = FunctionStdout(sys.stdout, by_function)
    (install or _install_stdout)(stdout)
    return stdout


def _install_stdout(stream: Any) -> None:
    sys.stdout = stream


def release(stdout: FunctionStdout) -> None:
    if sys.stdout is stdout:
        sys.stdout = stdout.real
