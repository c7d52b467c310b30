"""IAM is enforced: with one statement removed from a copy of the template, the flow that needs it
fails as on AWS (AccessDeniedException), and the denial is logged with function, action and resource."""

from __future__ import annotations

import copy
import logging

import boto3
import pytest
from botocore.exceptions import ClientError

from bitbridge.aws import client
from functions.webhook_receiver.app import handler as receive
from infra.local.iam import acting_as
from infra.local.template import load_template
from tests.integration.webhooks.support import PROVIDERS, Context, api_event, bitbucket_headers, hook_secret

PUSH = b'{"repository": {"full_name": "team/repo"}, "push": {"changes": []}}'


def _receiver_statements(template: dict) -> list[dict]:
    return template["Resources"]["WebhookReceiverFunction"]["Properties"]["Policies"][0]["Statement"]


def _grants_put(template: dict) -> bool:
    return any(s["Action"] == ["dynamodb:PutItem"] for s in _receiver_statements(template))


def _without_deliveries_put(template: dict) -> dict:
    """A copy of the template without the receiver's `dynamodb:PutItem on DeliveriesTable` statement."""
    changed = copy.deepcopy(template)
    statements = _receiver_statements(changed)
    statements[:] = [s for s in statements if s["Action"] != ["dynamodb:PutItem"]]
    assert _grants_put(template) and not _grants_put(changed)
    return changed


@pytest.fixture(params=["template", "without-statement"])
def template(request):
    return load_template() if request.param == "template" else _without_deliveries_put(load_template())


def _deliver(aws) -> int:
    headers = bitbucket_headers("cloud", "repo:push", PUSH, hook_secret(aws.environment, "sub-iam"))
    with acting_as("WebhookReceiverFunction"):
        return receive(api_event(PROVIDERS["cloud"], "sub-iam", PUSH, headers), Context())["statusCode"]


def test_the_receiver_stores_a_delivery_only_when_its_policy_allows_the_put(aws, template, caplog):
    caplog.set_level(logging.WARNING, logger="local.iam")
    table = aws.ref("DeliveriesTable")
    stored = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=table)["Items"]
    assert stored == []
    status = _deliver(aws)
    stored = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=table)["Items"]
    if _grants_put(template):
        assert status == 202 and len(stored) == 1
        assert "IAM denied" not in caplog.text
        return
    # Bitbucket gets a 5xx (and retries); nothing was stored; the log says who was refused what.
    assert status >= 500 and stored == []
    arn = aws.attributes[("DeliveriesTable", "Arn")]
    assert f"IAM denied: function=WebhookReceiverFunction action=dynamodb:PutItem resource={arn}" in caplog.text
    # The SDK raises what AWS raises: its modelled AccessDeniedException, not retried.
    with acting_as("WebhookReceiverFunction"), pytest.raises(ClientError) as denied:
        client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "x"}})
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "is not authorized to perform: dynamodb:PutItem" in str(denied.value)
    # Outside any function (test setup, the admin CLI) nothing is enforced.
    client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "setup"}})
