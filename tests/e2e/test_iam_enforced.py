"""The local stack enforces each function's policy: run on a copy of template.yaml without the
receiver's `dynamodb:PutItem` statement, a correctly signed delivery is refused as AWS would refuse it."""

from __future__ import annotations

import uuid

import pytest
import requests

from bitbridge.webhooks.signatures import derive_hook_secret
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import start_stack, stop_stack
from tests.integration.webhooks.support import bitbucket_headers

pytestmark = pytest.mark.e2e

# The receiver's first statement (the reconciler grants the same action further down, not first).
STATEMENTS = "        - Statement:\n"
RECEIVER_PUT = (
    STATEMENTS
    + """            - Effect: Allow
              Action: [dynamodb:PutItem]
              Resource: !GetAtt DeliveriesTable.Arn
"""
)
PUSH = b'{"repository": {"full_name": "team/repo"}, "push": {"changes": []}}'


def test_a_removed_statement_makes_the_flow_fail_with_access_denied(tmp_path):
    text = (REPO_ROOT / "template.yaml").read_text()
    assert text.count(RECEIVER_PUT) == 1, "the receiver's PutItem statement moved: update this test"
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace(RECEIVER_PUT, STATEMENTS))
    stack = start_stack(tmp_path, "--no-emulator", "--template", str(copy))
    try:
        env = requests.get(f"{stack.urls['console']}/env", timeout=5).json()
        key = stack.aws("secretsmanager").get_secret_value(SecretId=env["BITBRIDGE_WEBHOOK_MASTER_KEY_SECRET_ARN"])
        secret = derive_hook_secret(key["SecretString"].encode("utf-8"), "sub-iam")
        delivery = str(uuid.uuid4())
        headers = bitbucket_headers("cloud", "repo:push", PUSH, secret, delivery_id=delivery)
        response = requests.post(f"{stack.api}/hooks/p-1/sub-iam", data=PUSH, headers=headers, timeout=15)
        # A 5xx, so Bitbucket retries once the policy is fixed; nothing stored.
        assert response.status_code >= 500
        items = stack.aws("dynamodb").scan(TableName=env["BITBRIDGE_DELIVERIES_TABLE"])["Items"]
        assert items == []
        table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{env['BITBRIDGE_DELIVERIES_TABLE']}"
        assert (
            f"IAM denied: function=WebhookReceiverFunction action=dynamodb:PutItem resource={table_arn}" in stack.log()
        )
        # The same stack still serves what the policy allows.
        assert requests.get(f"{stack.api}/health", timeout=10).status_code == 200
    finally:
        stop_stack(stack)
