"""The audit trail survives a DynamoDB outage on its own: the proxy keeps answering from its warm caches,
the records wait in the log subscription's retries (and the retry queue), and land once each afterwards.

Warm means read less than CACHE_SECONDS ago: an entry lives that long from the moment it was read, and
serving it does not extend it (that is how a revoked key stops working within 5 s). So the outage calls
are made right after one call that has read every entry afresh, never after slower steps."""

from __future__ import annotations

import json
import time
from collections import Counter

import requests

from bitbridge.client import Client
from bitbridge.service import cache, credentials
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.service_support import PROVIDERS, add_client, connect, new_bitbucket_user
from tests.e2e.support import cli

# Every service cache entry read before a moment has lapsed this long after it; one read after it lives at least
# WARM_SECONDS.
LAPSED_SECONDS = max(cache.CACHE_SECONDS, credentials.CACHE_SECONDS)
WARM_SECONDS = min(cache.CACHE_SECONDS, credentials.CACHE_SECONDS)

# The writer's retry queue, with waits a test can sit through (the template's are minutes).
SHORTER_RETRIES = {
    "      Timeout: 30\n      ReservedConcurrentExecutions: !If [ReserveConcurrency, 2, !Ref AWS::NoValue]\n"
    "      LoggingConfig:\n        LogGroup: !Ref AuditWriterLogGroup\n": "      Timeout: 3\n"
    "      ReservedConcurrentExecutions: !If [ReserveConcurrency, 2, !Ref AWS::NoValue]\n"
    "      LoggingConfig:\n        LogGroup: !Ref AuditWriterLogGroup\n",
    "      VisibilityTimeout: 300  # >= 6x the writer's Timeout would be 180; 5 minutes is the retry interval\n": (
        "      VisibilityTimeout: 3\n"
    ),
}


def _audit_rows(stack, client_id: str) -> list[dict]:
    done = cli(stack, "audit", "--client", client_id, "--since", "10m", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _wait_for_rows(stack, client_id: str, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows = _audit_rows(stack, client_id)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = _audit_rows(stack, client_id)
    return rows


def test_a_dynamodb_outage_delays_audit_records_and_loses_none(tmp_path):
    text = (REPO_ROOT / "template.yaml").read_text()
    for old, new in SHORTER_RETRIES.items():
        assert text.count(old) == 1, "AuditWriterFunction or AuditRetryQueue changed: update this test"
        text = text.replace(old, new)
    copy = tmp_path / "template.yaml"
    copy.write_text(text)
    stack = start_stack(tmp_path, "--template", str(copy))
    try:
        client_id, key = add_client(stack)
        bb = Client(stack.api, key)
        connect(stack, bb, "cloud", "eu-outage", new_bitbucket_user(stack))
        path = "repositories/acme/infra"
        assert bb.proxy.get(PROVIDERS["cloud"], "eu-outage", path).status_code == 200
        last_read = time.monotonic()
        # The connect session, its confirmation by the product, the proxied call.
        assert len(_wait_for_rows(stack, client_id, 3, timeout=20)) == 3

        # The key and the provider were read by the connect session call, before the sign-in; the link and the
        # token by the call above; and the steps since take any time. Let every entry lapse, then warm them all
        # with one call, so that the outage calls are served from entries of one known age.
        time.sleep(max(0.0, last_read + LAPSED_SECONDS - time.monotonic()) + 0.2)
        warming = time.monotonic()
        assert bb.proxy.get(PROVIDERS["cloud"], "eu-outage", f"{path}?warm=1").status_code == 200

        faults = f"{stack.urls['console']}/faults/aws"
        # Longer than Lambda's two async retries (1 s and 2 s locally), so the batch is dead-lettered.
        assert requests.post(faults, json={"service": "dynamodb", "status": 503, "seconds": 6}, timeout=5).ok
        statuses = [bb.proxy.get(PROVIDERS["cloud"], "eu-outage", f"{path}?page={n}").status_code for n in range(3)]
        took = time.monotonic() - warming
        assert statuses == [200, 200, 200], (
            f"the proxy answers from its warm caches while DynamoDB is down (the calls ended {took:.1f} s after "
            f"warming; entries live {WARM_SECONDS} s)"
        )

        rows = _wait_for_rows(stack, client_id, 7, timeout=60)
        time.sleep(3)  # a batch stored twice would show now
        rows = _audit_rows(stack, client_id)
        paths = Counter(r["path"] for r in rows if "?page=" in r["path"])  # `page` values are kept: paging
        proxied = f"/service/v1/proxy/{PROVIDERS['cloud']}/eu-outage/{path}"
        assert paths == Counter({f"{proxied}?page={n}": 1 for n in range(3)})
        assert len(rows) == 7
        assert "AuditWriterFunctionServiceAudit: invocation failed" in stack.log()
    finally:
        stop_stack(stack)
