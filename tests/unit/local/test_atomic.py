"""moto's conditional writes made atomic, as DynamoDB's are: of threads racing the same condition,
exactly one wins; and a read racing an update answers one version of the item, as DynamoDB's does."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb import responses as moto_responses
from moto.dynamodb.models import table as moto_table
from moto.dynamodb.models import utilities as moto_utilities

from infra.local import atomic
from tests.unit.local import table_t


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
        ddb = table_t()

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


@pytest.fixture
def slow_answers(monkeypatch):
    """moto turns the live item into its answer value by value: a pause per value lets an update add keys
    meanwhile, unless the read holds the item still."""
    convert = moto_utilities.dynamo_to_dict

    def slow(obj):
        time.sleep(0.0002)
        return convert(obj)

    monkeypatch.setattr(moto_utilities, "dynamo_to_dict", slow)  # its recursion looks itself up here
    monkeypatch.setattr(moto_responses, "dynamo_to_dict", slow)


def _reads_racing_updates() -> list[str]:
    """Errors seen by readers of one item, and its writers, while the writers add keys to its map."""
    with mock_aws():
        ddb = table_t()
        ddb.put_item(TableName="t", Item={"pk": {"S": "item"}, "m": {"M": {}}})
        errors: list[str] = []

        def write(n: int) -> None:
            for i in range(15):
                try:
                    ddb.update_item(
                        TableName="t",
                        Key={"pk": {"S": "item"}},
                        UpdateExpression="SET m.#k = :v",
                        ExpressionAttributeNames={"#k": f"k{n}-{i}"},
                        ExpressionAttributeValues={":v": {"S": "x"}},
                    )
                except Exception as exc:  # a writer copying the item while a reader walks it fails too
                    errors.append(repr(exc))

        def read(_: int) -> None:
            for _ in range(15):
                try:
                    ddb.get_item(TableName="t", Key={"pk": {"S": "item"}})
                except Exception as exc:  # any failure is what the test counts
                    errors.append(repr(exc))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: write(n) if n % 2 else read(n), range(8)))
        return errors


def test_without_the_lock_a_read_racing_an_update_can_fail(slow_answers, monkeypatch):
    atomic.install()  # writes atomic (each worker process starts without), reads left unlocked below
    handler = moto_responses.DynamoHandler
    monkeypatch.setattr(handler, "call_action", _unwrapped(handler.call_action))
    # What the in-process stack showed under load: a 500 to a reader (a race: a few tries to see it once).
    assert any(_reads_racing_updates() for _ in range(5))


def test_with_the_lock_reads_racing_updates_all_answer(slow_answers):
    atomic.install()
    assert _reads_racing_updates() == []


def _unwrapped(method):
    return getattr(method, "__wrapped__", method)
