"""AuditWriterFunction on moto, under its own template policy: the service API's audit log lines,
as the log subscription (or the retry queue) hands them over, become one record each."""

from __future__ import annotations

import io
import json

import pytest

from bitbridge.service import audit
from bitbridge.store.service import AuditRecord, audit_pk
from functions.audit_writer import app
from infra.local import iam
from infra.local.logs import awslogs_event
from infra.local.resources import LocalResources

TOKEN = "ya29.a-live-access-token"


class _Context:
    function_name = "AuditWriterFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:AuditWriterFunction"
    aws_request_id = "req"


def _lines(n: int, client: str = "cli_audit") -> list[tuple[int, str]]:
    out = io.StringIO()
    for i in range(n):
        audit.record(
            client_id=client,
            key_id="key_1",
            action="proxy",
            method="GET",
            path=f"/service/v1/proxy/cloud/eu-1/repositories/acme/r{i}",
            query=f"access_token={TOKEN}&page={i}",
            status=200,
            duration_ms=2.5,
            request_id=f"req-{i}",
            end_user_id="eu-1",
            provider_id="cloud",
            out=out,
        )
    lines = out.getvalue().splitlines()
    # A line the filter matched that is not a record (someone else's, or damaged): skipped, not retried.
    return [(1700000000000 + i, line) for i, line in enumerate([*lines, '{"bitbridge_audit": 1}'])]


def _stored(client: str = "cli_audit") -> list[AuditRecord]:
    return list(AuditRecord.query(audit_pk(client)))


def test_a_log_batch_becomes_one_record_per_call_without_the_token(aws: LocalResources):
    event = awslogs_event("/bitbridge/test/service-api", "AuditWriterFunctionServiceAudit", _lines(30))
    with iam.acting_as("AuditWriterFunction"):
        assert app.handler(event, _Context()) == {"written": 30, "skipped": 1}
        # Delivered again (CloudWatch Logs and Lambda deliver at least once): still one record per call.
        app.handler(event, _Context())
    rows = _stored()
    assert len(rows) == 30
    assert {r.path for r in rows} == {
        f"/service/v1/proxy/cloud/eu-1/repositories/acme/r{i}?access_token=REDACTED&page={i}" for i in range(30)
    }
    assert all(r.expires_at > 0 and r.status == 200 for r in rows)
    assert TOKEN not in json.dumps([r.attribute_values for r in rows], default=str)


def test_a_batch_parked_on_the_retry_queue_is_written_from_the_sqs_event(aws: LocalResources):
    parked = awslogs_event("/bitbridge/test/service-api", "f", _lines(3, client="cli_parked"))
    sqs_event = {"Records": [{"messageId": "m1", "body": json.dumps(parked), "eventSource": "aws:sqs"}]}
    with iam.acting_as("AuditWriterFunction"):
        assert app.handler(sqs_event, _Context())["written"] == 3
    assert len(_stored("cli_parked")) == 3


def test_the_writer_may_only_batch_write_the_service_table(aws: LocalResources):
    with iam.acting_as("AuditWriterFunction"), pytest.raises(Exception, match="AccessDenied"):
        list(AuditRecord.query(audit_pk("cli_audit")))  # reading the trail is the CLI's job, not the writer's
