"""CloudWatch Logs subscriptions, locally: a function's printed lines reach the subscribed function as
CloudWatch Logs sends them (filtered, batched, gzip + base64), retried and then dead-lettered on failure."""

from __future__ import annotations

import io
import json
import threading

import pytest

from bitbridge.service import audit
from infra.local import iam
from infra.local.logs import (
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    FilterPattern,
    FunctionStdout,
    LogDelivery,
    Subscription,
    awslogs_event,
)
from infra.local.template import functions, load_template


def test_json_filter_patterns_match_as_cloudwatch_logs_does():
    pattern = FilterPattern.parse("{ $.bitbridge_audit = 1 }")
    assert pattern.matches('{"bitbridge_audit": 1, "client_id": "c"}')
    assert not pattern.matches('{"bitbridge_audit": "1"}')  # a string is not the number 1
    assert not pattern.matches('{"bitbridge_audit": true}')
    assert not pattern.matches('{"other": 1}')
    assert not pattern.matches("bitbridge_audit = 1")  # not JSON
    both = FilterPattern.parse('{ $.a.b = "x" && $.c = * }')
    assert both.matches('{"a": {"b": "x"}, "c": null}')
    assert not both.matches('{"a": {"b": "x"}}')
    assert not both.matches('{"a": {"b": "y"}, "c": 1}')


@pytest.mark.parametrize("pattern", ["ERROR", "{ $.a != 1 }", "[ip, user]", "{ $.a = 1 || $.b = 2 }", ""])
def test_patterns_the_local_stack_cannot_match_faithfully_are_refused_at_start(pattern):
    with pytest.raises(NotImplementedError):
        FilterPattern.parse(pattern)


def test_the_template_subscribes_the_writer_to_the_service_api_log_group_with_the_audit_marker():
    template = load_template()
    writer = functions(template)["AuditWriterFunction"]
    ((_, source),) = writer.log_sources
    assert source["LogGroupName"] == functions(template)["ServiceApiFunction"].log_group
    pattern = FilterPattern.parse(source["FilterPattern"])
    line = audit.record(
        client_id="c",
        key_id="k",
        action="proxy",
        method="GET",
        path="/p",
        query="",
        status=200,
        duration_ms=1.0,
        request_id="r",
        out=io.StringIO(),
    )
    assert pattern.matches(json.dumps(line))
    assert not pattern.matches(json.dumps({"message": "service call", "status": 200}))


class _Runner:
    """Stands in for the FunctionRunner: fails the first `failures` invocations."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.events: list[dict] = []
        self.done = threading.Event()

    def invoke(self, function: str, event: dict) -> None:
        self.events.append(event)
        if len(self.events) <= self.failures:
            raise RuntimeError("the destination failed")
        self.done.set()


def _subscription(retries: int = 2, dead_letter_url: str | None = None) -> Subscription:
    return Subscription(
        log_group="/bitbridge/test/service-api",
        pattern=FilterPattern.parse("{ $.bitbridge_audit = 1 }"),
        destination="AuditWriterFunction",
        filter_name="AuditWriterFunctionServiceAudit",
        retries=retries,
        dead_letter_url=dead_letter_url,
    )


def test_only_complete_matching_lines_of_the_subscribed_function_are_delivered_in_one_batch():
    runner = _Runner()
    delivery = LogDelivery(runner, _subscription(), client=lambda service: None)
    real = io.StringIO()
    stdout = FunctionStdout(real, {"ServiceApiFunction": [delivery]})
    stdout.write('{"bitbridge_audit": 1, "n": 1}\n')  # outside any invocation: not the function's log
    with iam.acting_as("ServiceApiFunction"):
        stdout.write('{"bitbridge_audit": 1, "n": 2}\n{"message": "service call"}\n{"bitbridge_audit"')
        stdout.write(': 1, "n": 3}\n')  # a line written in two parts is one log event
    with iam.acting_as("ApiFunction"):
        stdout.write('{"bitbridge_audit": 1, "n": 4}\n')  # another function's log group
    assert real.getvalue().count("\n") == 5  # everything still reaches the real stdout
    delivery.start()
    try:
        assert runner.done.wait(5)
    finally:
        delivery.stop()
        delivery.join(2)
    (event,) = runner.events
    batch = audit.decode_log_batch(event["awslogs"]["data"])
    assert batch["logGroup"] == "/bitbridge/test/service-api"
    assert batch["subscriptionFilters"] == ["AuditWriterFunctionServiceAudit"]
    assert [json.loads(e["message"])["n"] for e in batch["logEvents"]] == [2, 3]


def test_a_failing_destination_is_retried_as_an_async_invocation():
    runner = _Runner(failures=2)
    delivery = LogDelivery(runner, _subscription(retries=2), client=lambda service: None, retry_delays=(0.01, 0.01))
    delivery.deliver([(1, '{"bitbridge_audit": 1}')])
    assert len(runner.events) == 3 and delivery.delivered == 1 and delivery.dead_lettered == 0
    assert runner.events[0] == runner.events[2]  # the same batch each time


class _Sqs:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_message(self, **kwargs) -> None:
        self.sent.append(kwargs)


def test_after_its_retries_the_batch_goes_to_the_dead_letter_queue_as_the_function():
    runner, sqs = _Runner(failures=10), _Sqs()
    seen_as: list[str | None] = []

    def client(service: str) -> _Sqs:
        invocation = iam.current_invocation()
        seen_as.append(invocation.function if invocation else None)
        return sqs

    delivery = LogDelivery(
        runner, _subscription(retries=1, dead_letter_url="http://q/AuditRetryQueue"), client, (0.01,)
    )
    delivery.deliver([(1, '{"bitbridge_audit": 1}')])
    assert len(runner.events) == 2 and delivery.dead_lettered == 1
    (message,) = sqs.sent
    assert message["QueueUrl"] == "http://q/AuditRetryQueue"
    assert json.loads(message["MessageBody"]) == runner.events[0]  # the original event, as Lambda sends it
    assert seen_as == ["AuditWriterFunction"]  # with the function's role (SAM grants it sqs:SendMessage)


def test_awslogs_events_round_trip_through_the_writers_decoder():
    event = awslogs_event("/g", "f", [(1700000000000, "line one"), (1700000000001, "line two")])
    batch = audit.decode_log_batch(event["awslogs"]["data"])
    assert batch["messageType"] == "DATA_MESSAGE" and batch["logGroup"] == "/g"
    assert [(e["timestamp"], e["message"]) for e in batch["logEvents"]] == [
        (1700000000000, "line one"),
        (1700000000001, "line two"),
    ]


def test_a_batch_never_exceeds_what_cloudwatch_logs_would_send_in_one_event():
    runner = _Runner()
    delivery = LogDelivery(runner, _subscription(), client=lambda service: None)
    line = '{"bitbridge_audit": 1, "pad": "' + "x" * 100_000 + '"}'
    for _ in range(25):  # ~2.5 MB: three batches under 1 MiB each, nothing lost or repeated
        delivery.offer(line)
    while delivery.poll_once():
        if delivery.lines.empty() and delivery._held is None:
            break
    sizes = [
        sum(
            len(e["message"]) + EVENT_OVERHEAD_BYTES for e in audit.decode_log_batch(ev["awslogs"]["data"])["logEvents"]
        )
        for ev in runner.events
    ]
    assert len(sizes) == 3 and all(size <= MAX_BATCH_BYTES for size in sizes)
    assert sum(len(audit.decode_log_batch(ev["awslogs"]["data"])["logEvents"]) for ev in runner.events) == 25
