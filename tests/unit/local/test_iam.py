"""The local IAM evaluator: IAM's semantics where moto's matcher alone would be wrong or too lenient."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.local import iam
from infra.local.template import Resolver, load_template

REGION, ACCOUNT = "us-east-1", "123456789012"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t.1"


def _enforcer(*statements: dict) -> iam.Enforcer:
    return iam.Enforcer({"Fn": list(statements)}, REGION, ACCOUNT)


def _context(connection: str | None) -> dict:
    params = {"KeyId": "k-1", "Plaintext": b"x"}
    if connection is not None:
        params["EncryptionContext"] = {"bitbridge:connection": connection}
    (call,) = iam.describe_call("kms", "Encrypt", params, REGION, ACCOUNT)
    assert call.action == "kms:Encrypt" and call.resources == (KEY,)
    return call.context


def test_kms_encryption_context_conditions_are_evaluated():
    enforcer = _enforcer(
        {
            "Effect": "Allow",
            "Action": ["kms:Encrypt"],
            "Resource": KEY,
            "Condition": {"StringLike": {"kms:EncryptionContext:bitbridge:connection": "acct#*"}},
        }
    )
    assert enforcer.allowed("Fn", "kms:Encrypt", KEY, _context("acct#alice"))
    assert not enforcer.allowed("Fn", "kms:Encrypt", KEY, _context("other#alice"))
    # A missing key fails a condition (moto's own evaluator lets it pass).
    assert not enforcer.allowed("Fn", "kms:Encrypt", KEY, _context(None))
    strict = _enforcer(
        {
            "Effect": "Allow",
            "Action": "kms:Encrypt",
            "Resource": KEY,
            "Condition": {"StringEquals": {"kms:EncryptionContextKeys": "bitbridge:connection"}},
        }
    )
    assert strict.allowed("Fn", "kms:Encrypt", KEY, _context("acct#alice"))
    assert not strict.allowed("Fn", "kms:Encrypt", KEY, _context(None))


def test_a_failed_condition_only_voids_its_statement_and_an_explicit_deny_wins():
    conditional = {
        "Effect": "Allow",
        "Action": "kms:Encrypt",
        "Resource": KEY,
        "Condition": {"StringEquals": {"kms:EncryptionContext:bitbridge:connection": "a"}},
    }
    plain = {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}
    assert _enforcer(conditional, plain).allowed("Fn", "kms:Encrypt", KEY, _context("b"))
    deny = {"Effect": "Deny", "Action": "kms:*", "Resource": KEY}
    assert not _enforcer(plain, deny).allowed("Fn", "kms:Encrypt", KEY, _context("b"))


def test_wildcards_are_iam_wildcards_and_actions_ignore_case():
    enforcer = _enforcer({"Effect": "Allow", "Action": "DynamoDB:getitem", "Resource": TABLE})
    assert enforcer.allowed("Fn", "dynamodb:GetItem", TABLE, {})
    assert not enforcer.allowed("Fn", "dynamodb:GetItem", TABLE.replace("t.1", "tx1"), {})  # '.' is literal
    assert not enforcer.allowed("Fn", "dynamodb:PutItem", TABLE, {})
    assert not enforcer.allowed("Other", "dynamodb:GetItem", TABLE, {})  # no policy: nothing allowed
    secrets = _enforcer({"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "arn:*:secret:app/p-??????"})
    assert secrets.allowed("Fn", "secretsmanager:GetSecretValue", "arn:aws:secret:app/p-Ab12Cd", {})
    assert not secrets.allowed("Fn", "secretsmanager:GetSecretValue", "arn:aws:secret:app/p-Ab12C", {})


def test_unsupported_condition_operators_are_refused_not_ignored():
    with pytest.raises(NotImplementedError, match="IpAddress"):
        iam._checked("Fn", {"Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}})


@pytest.mark.parametrize(
    ("service", "operation", "params", "action", "resource"),
    [
        ("dynamodb", "Query", {"TableName": "t", "IndexName": "by_x"}, "dynamodb:Query", "table/t/index/by_x"),
        ("dynamodb", "GetRecords", {"ShardIterator": f"{TABLE}/stream/1|1|abc"}, "dynamodb:GetRecords", "stream/1"),
        ("sqs", "SendMessage", {"QueueUrl": "http://h:1/123456789012/q-1"}, "sqs:SendMessage", ":q-1"),
        ("sqs", "DeleteMessageBatch", {"QueueUrl": "http://h/1/q"}, "sqs:DeleteMessage", "123456789012:q"),
        ("secretsmanager", "GetSecretValue", {"SecretId": "app/p"}, "secretsmanager:GetSecretValue", "app/p-??????"),
        ("events", "PutEvents", {"Entries": [{"EventBusName": "bus"}]}, "events:PutEvents", "event-bus/bus"),
        ("s3", "HeadObject", {"Bucket": "b", "Key": "k/1"}, "s3:GetObject", "arn:aws:s3:::b/k/1"),
        ("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "k/"}, "s3:ListBucket", "arn:aws:s3:::b"),
    ],
)
def test_calls_are_described_as_iam_authorises_them(service, operation, params, action, resource):
    (call,) = iam.describe_call(service, operation, params, REGION, ACCOUNT)
    assert call.action == action
    assert call.resources[0].endswith(resource)


def test_a_transaction_is_authorised_item_by_item():
    params = {"TransactItems": [{"Put": {"TableName": "a"}}, {"Delete": {"TableName": "b"}}]}
    calls = iam.describe_call("dynamodb", "TransactWriteItems", params, REGION, ACCOUNT)
    assert {c.action for c in calls} == {"dynamodb:PutItem", "dynamodb:DeleteItem"}


def test_threads_started_during_an_invocation_act_as_its_function():
    iam.install(None)  # the audit hook that follows thread starts
    seen: list[str | None] = []

    def who() -> None:
        invocation = iam.current_invocation()
        seen.append(invocation.function if invocation else None)

    with iam.acting_as("ImportWorkerFunction"):
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda _: who(), range(4)))
        nested = threading.Thread(target=lambda: threading.Thread(target=who).start())
        nested.start()
        nested.join()
    outside = threading.Thread(target=who)
    outside.start()
    outside.join()
    assert seen.count("ImportWorkerFunction") == 5 and seen.count(None) == 1


def test_sam_event_source_grants_are_part_of_each_function_policy():
    template = load_template()
    resolver = Resolver(
        template,
        {"Stage": "local"},
        ref=lambda lid: f"ref:{lid}",
        get_att=lambda lid, attr: f"arn:{lid}.{attr}",
        pseudo={"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT},
    )
    enforcer = iam.Enforcer(iam.function_policies(template, resolver), REGION, ACCOUNT)
    queue = "arn:aws:sqs:us-east-1:123456789012:any"
    assert enforcer.allowed("ImportWorkerFunction", "sqs:ReceiveMessage", queue, {})
    assert enforcer.allowed("ImportWorkerFunction", "sqs:DeleteMessage", queue, {})
    assert not enforcer.allowed("ApiFunction", "sqs:ReceiveMessage", queue, {})
    stream = "arn:DeliveriesTable.StreamArn"
    assert enforcer.allowed("EventPublisherFunction", "dynamodb:GetRecords", stream, {})
    assert enforcer.allowed("EventPublisherFunction", "sqs:SendMessage", "arn:PublishFailureQueue.Arn", {})
    assert not enforcer.allowed("EventPublisherFunction", "sqs:SendMessage", "arn:ImportQueue.Arn", {})


def test_a_denied_call_raises_what_aws_raises_and_is_not_sent():
    enforcer = _enforcer({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::snaps/imports/*"})
    with mock_aws():
        iam.install(enforcer)  # before any client: a client copies its session's hooks when it is made
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="snaps")  # outside any function: not checked
        try:
            with iam.acting_as("Fn"):
                s3.put_object(Bucket="snaps", Key="imports/1", Body=b"ok")
                with pytest.raises(ClientError) as denied:
                    s3.put_object(Bucket="snaps", Key="other/1", Body=b"no")
                sqs = boto3.client("sqs", region_name=REGION)
                with pytest.raises(ClientError) as denied_sqs:
                    sqs.list_queues()
        finally:
            iam.install(None)
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        assert denied_sqs.value.response["Error"]["Code"] == "AccessDeniedException"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="snaps")["Contents"]] == ["imports/1"]
