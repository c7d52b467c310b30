"""moto's conditional writes made atomic, as DynamoDB's are: of threads racing the same condition,
exactly one wins."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models import table as moto_table

from infra.local import atomic


@pytest.fixture
def wide_race_window(monkeypatch):
    """moto reads the current item, then evaluates the condition, then writes: a pause in the middle makes
    every racing thread read the item before any writes it, unless the write is atomic."""
    evaluate = moto_table.get_filter_expression

    def slow(*args, **kwargs):
        time.sleep(0.02)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(moto_table, "get_filter_expression", slow)


def _racing_puts(claimants: int) -> int:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

        def claim(n: int) -> int:
            try:
                ddb.put_item(
                    TableName="t",
                    Item={"pk": {"S": "job"}, "by": {"N": str(n)}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return 1
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
                return 0

        with ThreadPoolExecutor(claimants) as pool:
            return sum(pool.map(claim, range(claimants)))


def test_with_atomic_writes_one_of_the_racing_conditional_puts_wins(wide_race_window):
    atomic.install()
    atomic.install()  # idempotent
    assert atomic.installed()
    assert _racing_puts(8) == 1  # moto alone lets all eight win (seen before install() existed)
