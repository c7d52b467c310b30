"""The moto resources the local stack and tests use are the template's own definitions."""

from __future__ import annotations

import json

import boto3
import pytest

from infra.local.template import load_template, resources_of_type

TEMPLATE = load_template()
TABLES = dict(resources_of_type(TEMPLATE, "AWS::DynamoDB::Table"))


@pytest.mark.parametrize("logical_id", sorted(TABLES))
def test_table_matches_template(aws, logical_id):
    expected = TABLES[logical_id]["Properties"]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = ddb.describe_table(TableName=aws.ref(logical_id))["Table"]

    assert table["KeySchema"] == expected["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        expected["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    assert table["BillingModeSummary"]["BillingMode"] == expected["BillingMode"]
    assert {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])} == {
        i["IndexName"]: i["KeySchema"] for i in expected.get("GlobalSecondaryIndexes", [])
    }
    stream = table.get("StreamSpecification", {})
    if "StreamSpecification" in expected:
        assert stream == {"StreamEnabled": True, **expected["StreamSpecification"]}
    else:
        assert not stream.get("StreamEnabled")
    ttl = ddb.describe_time_to_live(TableName=aws.ref(logical_id))["TimeToLiveDescription"]
    if "TimeToLiveSpecification" in expected:
        assert ttl == {
            "TimeToLiveStatus": "ENABLED",
            "AttributeName": expected["TimeToLiveSpecification"]["AttributeName"],
        }
    else:
        assert ttl["TimeToLiveStatus"] == "DISABLED"
    pitr = ddb.describe_continuous_backups(TableName=aws.ref(logical_id))["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_import_queue_redrive_and_visibility_match_template(aws):
    props = TEMPLATE["Resources"]["ImportQueue"]["Properties"]
    sqs = boto3.client("sqs", region_name="us-east-1")
    attributes = sqs.get_queue_attributes(QueueUrl=aws.ref("ImportQueue"), AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == props["VisibilityTimeout"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == props["RedrivePolicy"]["maxReceiveCount"]
    assert redrive["deadLetterTargetArn"] == aws.attributes[("ImportDeadLetterQueue", "Arn")]


def test_secrets_are_generated_with_the_templates_shape(aws):
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    for logical_id in ("SessionSigningKeySecret", "WebhookMasterKeySecret"):
        spec = TEMPLATE["Resources"][logical_id]["Properties"]["GenerateSecretString"]
        value = sm.get_secret_value(SecretId=aws.ref(logical_id))["SecretString"]
        assert len(value) == spec["PasswordLength"] and value.isalnum()
    first = sm.get_secret_value(SecretId=aws.ref("SessionSigningKeySecret"))["SecretString"]
    second = sm.get_secret_value(SecretId=aws.ref("WebhookMasterKeySecret"))["SecretString"]
    assert first != second


def test_function_environment_points_at_the_created_resources(aws):
    env = aws.environment
    assert env["BITBRIDGE_DELIVERIES_TABLE"] == aws.ref("DeliveriesTable")
    assert env["BITBRIDGE_IMPORT_QUEUE_URL"] == aws.ref("ImportQueue")
    assert env["BITBRIDGE_PROVIDER_SECRET_PREFIX"] == "bitbridge/bitbridge-local/providers/"
    kms = boto3.client("kms", region_name="us-east-1")
    assert kms.describe_key(KeyId=env["BITBRIDGE_TOKEN_KEY_ID"])["KeyMetadata"]["Enabled"]
    events = boto3.client("events", region_name="us-east-1")
    assert events.describe_event_bus(Name=env["BITBRIDGE_EVENT_BUS_NAME"])["Name"] == "bitbridge-local-events"
    s3 = boto3.client("s3", region_name="us-east-1")
    block = s3.get_public_access_block(Bucket=env["BITBRIDGE_SNAPSHOTS_BUCKET"])["PublicAccessBlockConfiguration"]
    assert all(block.values())
