"""The template as CloudFormation runs it: SAM-translated, created as a stack on a moto server.

The zips SAM would upload are uploaded to moto's S3 and the functions and layers are created from
them. What moto created is then compared with what the template asks for. Resource types moto's
CloudFormation cannot create are printed by name; the core types compared here must be created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import moto.events.models
import pytest
from moto.server import ThreadedMotoServer

from infra.local.template import NO_VALUE, Resolver
from tests.deploy import artifacts

STACK = "bitbridge-rehearsal"
REGION = artifacts.LAMBDA_ENV["AWS_REGION"]
PARAMETERS = {"Stage": "rehearsal"}
CORE_TYPES = {
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::Events::EventBus",
    "AWS::S3::Bucket",
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::EventSourceMapping",
    "AWS::KMS::Key",
    "AWS::IAM::Role",
}


class Stack:
    def __init__(self, endpoint: str, template: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.template = template
        cfn = self.client("cloudformation")
        summaries = cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
        self.physical = {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="rehearsal",
            aws_secret_access_key="rehearsal",
        )

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for lid, resource in self.template["Resources"].items():
            if resource["Type"] == resource_type:
                yield lid, resource.get("Properties", {})

    def refers_to_missing(self, value: Any) -> bool:
        """Whether a property value references a resource moto did not create."""
        text = json.dumps(value)
        return any(
            f'"{lid}"' in text or "${" + lid in text for lid in self.template["Resources"] if lid not in self.physical
        )

    def queue_url(self, lid: str) -> str:
        return self.client("sqs").get_queue_url(QueueName=self.physical[lid].rsplit("/", 1)[-1])["QueueUrl"]

    def get_att(self, lid: str, attribute: str) -> str:
        kind = self.template["Resources"][lid]["Type"]
        if kind == "AWS::DynamoDB::Table":
            table = self.client("dynamodb").describe_table(TableName=self.physical[lid])["Table"]
            return table["LatestStreamArn" if attribute == "StreamArn" else "TableArn"]
        if kind == "AWS::SQS::Queue":
            attrs = self.client("sqs").get_queue_attributes(QueueUrl=self.queue_url(lid), AttributeNames=["QueueArn"])
            return attrs["Attributes"]["QueueArn"]
        raise NotImplementedError(f"{kind}.{attribute}")

    def resolve(self, value: Any) -> Any:
        """Intrinsics in the compared properties -> what moto created (conditions, parameters' defaults
        and pseudo parameters as CloudFormation resolves them; AWS::NoValue -> None, i.e. not set)."""
        pseudo = {
            "AWS::StackName": STACK,
            "AWS::Region": REGION,
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        defaults = {name: p.get("Default", "") for name, p in self.template.get("Parameters", {}).items()}
        resolver = Resolver(
            self.template,
            {**defaults, **PARAMETERS},
            ref=self.physical.__getitem__,
            get_att=self.get_att,
            pseudo=pseudo,
        )
        resolved = resolver.resolve(value)
        return None if resolved is NO_VALUE else resolved


class Expect:
    """Collects every mismatch of a comparison, so one run shows them all."""

    # Properties moto's CloudFormation accepts but does not apply: printed by name where they differ,
    # never skipped silently (every other compared property must match).
    MOTO_DROPS = frozenset(
        {
            "PointInTimeRecoverySpecification",
            "TimeToLiveSpecification",
            "Architectures",
            "Layers",
            "VersioningConfiguration",
            "PublicAccessBlockConfiguration",
        }
    )

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, label: str, actual: Any, wanted: Any, *, moto_drops: bool = False) -> None:
        if moto_drops and label.rsplit(" ", 1)[-1] in self.MOTO_DROPS and actual != wanted:
            self.dropped_by_moto(label)
        elif actual != wanted:
            self.problems.append(f"{label}: created {actual!r}, template says {wanted!r}")

    def dropped_by_moto(self, label: str) -> None:
        print(f"not applied by moto: {label}")


@pytest.fixture
def expect() -> Iterator[Expect]:
    checks = Expect()
    yield checks
    assert not checks.problems, "\n".join(checks.problems)


@pytest.fixture(scope="module")
def stack(deployment: artifacts.Deployed) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as patch:
        # moto's EventBus has no physical id, so `!Ref EventBus` resolves to a Python object that breaks
        # every Lambda response; CloudFormation's Ref of a bus is its name.
        patch.setattr(
            moto.events.models.EventBus, "physical_resource_id", property(lambda bus: bus.name), raising=False
        )
        yield from _create_stack(deployment)


def _create_stack(deployment: artifacts.Deployed) -> Iterator[Stack]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3 = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="rehearsal",
            aws_secret_access_key="rehearsal",
        )
        s3.create_bucket(Bucket="sam-artifacts")
        shipped = {lid: z for lid, z in deployment.zips.items() if lid != "DependenciesLayer-host"}
        for zip_path in shipped.values():
            s3.upload_file(str(zip_path), "sam-artifacts", zip_path.name)
        template = artifacts.sam_translate(
            PARAMETERS, {lid: f"s3://sam-artifacts/{z.name}" for lid, z in shipped.items()}
        )
        cfn = boto3.client(
            "cloudformation",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="rehearsal",
            aws_secret_access_key="rehearsal",
        )
        cfn.create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        status = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
        assert status == "CREATE_COMPLETE", status
        yield Stack(endpoint, template)
    finally:
        server.stop()


def test_every_resource_is_created_or_named(stack: Stack) -> None:
    missing = {lid: r["Type"] for lid, r in stack.template["Resources"].items() if lid not in stack.physical}
    for lid, kind in sorted(missing.items(), key=lambda item: item[1]):
        print(f"not created by moto: {kind} {lid}")
    assert not {kind for kind in missing.values()} & CORE_TYPES, missing
    for kind in CORE_TYPES - {"AWS::KMS::Key"}:
        assert any(True for _ in stack.of_type(kind)), f"template has no {kind}: the comparison below would be empty"


def _gsis(indexes: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["IndexName"]: (i["KeySchema"], i["Projection"]["ProjectionType"]) for i in indexes or []}


def test_tables_match_the_template(stack: Stack, expect: Expect) -> None:
    ddb = stack.client("dynamodb")
    for lid, props in stack.of_type("AWS::DynamoDB::Table"):
        name = stack.physical[lid]
        table = ddb.describe_table(TableName=name)["Table"]
        expect(f"{lid} KeySchema", table["KeySchema"], props["KeySchema"])
        expect(
            f"{lid} AttributeDefinitions",
            sorted(table["AttributeDefinitions"], key=str),
            sorted(props["AttributeDefinitions"], key=str),
        )
        expect(
            f"{lid} GlobalSecondaryIndexes",
            _gsis(table.get("GlobalSecondaryIndexes")),
            _gsis(props.get("GlobalSecondaryIndexes")),
        )
        expect(
            f"{lid} BillingMode", table["BillingModeSummary"]["BillingMode"], props.get("BillingMode", "PROVISIONED")
        )
        stream = props.get("StreamSpecification")
        expect(
            f"{lid} StreamSpecification",
            table.get("StreamSpecification", {}).get("StreamViewType"),
            (stream or {}).get("StreamViewType"),
        )
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        wanted_ttl = props.get("TimeToLiveSpecification", {})
        actual_ttl = (ttl.get("TimeToLiveStatus") == "ENABLED", ttl.get("AttributeName"))
        wanted = (bool(wanted_ttl.get("Enabled")), wanted_ttl.get("AttributeName"))
        expect(f"{lid} TimeToLiveSpecification", actual_ttl, wanted, moto_drops=True)
        backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        pitr = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        wanted_pitr = props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False)
        expect(f"{lid} PointInTimeRecoverySpecification", pitr, wanted_pitr, moto_drops=True)


def test_queues_and_redrive_match_the_template(stack: Stack, expect: Expect) -> None:
    sqs = stack.client("sqs")
    for lid, props in stack.of_type("AWS::SQS::Queue"):
        attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url(lid), AttributeNames=["All"])["Attributes"]
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "SqsManagedSseEnabled"):
            if key in props:
                expect(f"{lid}.{key}", attrs[key].lower(), str(props[key]).lower())
        if "RedrivePolicy" in props:
            wanted = stack.resolve(props["RedrivePolicy"])
            actual = json.loads(attrs["RedrivePolicy"])
            expect(
                f"{lid} RedrivePolicy.deadLetterTargetArn", actual["deadLetterTargetArn"], wanted["deadLetterTargetArn"]
            )
            expect(
                f"{lid} RedrivePolicy.maxReceiveCount", int(actual["maxReceiveCount"]), int(wanted["maxReceiveCount"])
            )
        else:
            expect(f"{lid} RedrivePolicy", attrs.get("RedrivePolicy"), None)


def test_event_bus_and_bucket_match_the_template(stack: Stack, expect: Expect) -> None:
    events, s3 = stack.client("events"), stack.client("s3")
    for lid, props in stack.of_type("AWS::Events::EventBus"):
        name = stack.resolve(props["Name"])
        expect(f"{lid} Name", events.describe_event_bus(Name=name)["Name"], name)
    for lid, props in stack.of_type("AWS::S3::Bucket"):
        bucket = stack.physical[lid]
        if "VersioningConfiguration" in props:
            versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
            expect(
                f"{lid} VersioningConfiguration",
                versioning,
                props["VersioningConfiguration"]["Status"],
                moto_drops=True,
            )
        if "BucketEncryption" in props:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            wanted = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            actual = [r["ApplyServerSideEncryptionByDefault"] for r in rules]
            expect(f"{lid} BucketEncryption", actual, [w["ServerSideEncryptionByDefault"] for w in wanted])
        if "PublicAccessBlockConfiguration" in props:
            try:
                block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            except s3.exceptions.ClientError:
                block = None
            wanted_block = props["PublicAccessBlockConfiguration"]
            expect(f"{lid} PublicAccessBlockConfiguration", block, wanted_block, moto_drops=True)


def test_functions_match_the_template(stack: Stack, expect: Expect) -> None:
    lam = stack.client("lambda")
    layer_arns = {lid: stack.physical[lid] for lid, _ in stack.of_type("AWS::Lambda::LayerVersion")}
    for lid, props in stack.of_type("AWS::Lambda::Function"):
        name = stack.physical[lid]
        config = lam.get_function_configuration(FunctionName=name)
        expect(f"{lid} Runtime", config["Runtime"], props["Runtime"])
        expect(f"{lid} Handler", config["Handler"], props["Handler"])
        expect(f"{lid} MemorySize", config["MemorySize"], props.get("MemorySize", 128))
        expect(f"{lid} Timeout", config["Timeout"], props.get("Timeout", 3))
        expect(f"{lid} Architectures", config["Architectures"], props.get("Architectures", ["x86_64"]), moto_drops=True)
        wanted_layers = [layer_arns[ref["Ref"]] for ref in props.get("Layers", [])]
        expect(f"{lid} Layers", [layer["Arn"] for layer in config.get("Layers", [])], wanted_layers, moto_drops=True)
        wanted_env = props["Environment"]["Variables"]
        expect(
            f"{lid} Environment",
            set(config["Environment"]["Variables"]),
            {
                k
                for k, v in wanted_env.items()
                if not stack.refers_to_missing(v)  # named by the test above
            },
        )
        if "ReservedConcurrentExecutions" in props:
            concurrency = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
            wanted = stack.resolve(props["ReservedConcurrentExecutions"])  # the ReservedConcurrency parameter
            expect(f"{lid} ReservedConcurrentExecutions", concurrency, None if wanted is None else int(wanted))
        # The code deployed is SAM's zip of the built function, byte for byte.
        source = props["Code"]
        uploaded = stack.client("s3").head_object(Bucket=source["S3Bucket"], Key=source["S3Key"])
        expect(f"{lid} CodeSize", config["CodeSize"], uploaded["ContentLength"])


def test_event_source_mappings_match_the_template(stack: Stack, expect: Expect) -> None:
    lam = stack.client("lambda")
    for lid, props in stack.of_type("AWS::Lambda::EventSourceMapping"):
        function = stack.physical[props["FunctionName"]["Ref"]]
        source = stack.resolve(props["EventSourceArn"])
        mappings = [
            m
            for m in lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
            if m["EventSourceArn"] == source
        ]
        expect(f"{lid}: {mappings}", len(mappings), 1)
        mapping = mappings[0]
        for key, wanted in props.items():
            if key in {"FunctionName", "EventSourceArn", "StartingPosition", "Enabled"}:
                continue
            if key not in mapping:
                expect.dropped_by_moto(f"{lid} {key}")
                continue
            expect(f"{lid}.{key}", mapping[key], stack.resolve(wanted))
