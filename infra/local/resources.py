"""Create template.yaml's AWS resources on moto, from the template's own definitions.

Used by the local stack (against moto server) and by the tests (inside mock_aws), so both
get exactly the key schemas, TTLs, streams, redrive policies and secrets that deploy.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local.template import Resolver, functions, load_template

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


def local_stack_name(stage: str) -> str:
    """The local stand-in for `AWS::StackName` ("bitbridge-local" for `make dev`)."""
    return f"bitbridge-{stage}"


# Resource types that exist only for AWS (monitoring, logs, layers) and need nothing locally.
_NOT_EMULATED = {
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::Serverless::LayerVersion",
    "AWS::Serverless::HttpApi",
    "AWS::Serverless::Function",
}

ClientFactory = Callable[[str], Any]


@dataclass
class LocalResources:
    """What was created: physical ids and attributes by logical id, and the function environment."""

    stage: str
    parameters: dict[str, str]
    stack_name: str = ""
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    resolver: Resolver | None = None  # resolves the template's intrinsics against what was created

    def ref(self, logical_id: str) -> str:
        return self.refs[logical_id]


def local_parameters(stage: str = "local", template: dict[str, Any] | None = None, **overrides: str) -> dict[str, str]:
    """Each parameter's Default (from `template`, the one the stack runs: a test's copy may change them)."""
    template = template or load_template()
    params = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    params["Stage"] = stage
    params.update(overrides)
    return params


def create_resources(
    client: ClientFactory,
    *,
    stage: str = "local",
    parameters: dict[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    template: dict[str, Any] | None = None,
    stack_name: str | None = None,
    existing: tuple[dict[str, str], dict[tuple[str, str], str]] | None = None,
) -> LocalResources:
    """Create every emulated resource in the template and resolve the functions' environment.

    `overrides` replaces properties per logical id (tests shorten a queue's visibility timeout);
    everything else comes from the template as written. Names CloudFormation would generate
    derive from the stack name, as on AWS, so two stacks with the same stage coexist.
    `existing` (refs, attributes) are resources a restored moto already holds (the local stack's
    saved state, made from this same template): they are adopted, not created again.
    """
    template = template or load_template()
    params = parameters or local_parameters(stage, template)
    out = LocalResources(stage=stage, parameters=params, stack_name=stack_name or local_stack_name(stage))
    if existing is not None:
        out.refs.update(existing[0])
        out.attributes.update(existing[1])
    creating: set[str] = set()
    resolver: Resolver

    def ensure(logical_id: str) -> None:
        if logical_id in out.refs or logical_id in creating:
            return
        creating.add(logical_id)
        resource = template["Resources"][logical_id]
        props = {**resource.get("Properties", {}), **(overrides or {}).get(logical_id, {})}
        _CREATORS.get(resource["Type"], _create_nothing)(client, resolver, out, logical_id, props)
        out.refs.setdefault(logical_id, f"{stage}-{logical_id}")

    def ref(logical_id: str) -> str:
        ensure(logical_id)
        return out.refs[logical_id]

    def get_att(logical_id: str, attribute: str) -> str:
        ensure(logical_id)
        return out.attributes[(logical_id, attribute)]

    resolver = Resolver(
        template,
        params,
        ref,
        get_att,
        pseudo={
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": out.stack_name,
        },
    )
    out.resolver = resolver
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] not in _NOT_EMULATED and resolver.creates(resource):
            ensure(logical_id)

    # All functions share Globals' environment; the local stack runs them in one process,
    # so a per-function difference would be silently lost. Refuse it instead.
    envs = [resolver.resolve(fn.environment) for fn in functions(template).values()]
    for env in envs[1:]:
        if env != envs[0]:
            raise ValueError("functions must share one environment (set variables in Globals)")
    out.environment = {k: str(v) for k, v in (envs[0] if envs else {}).items()}
    return out


def _physical_name(stack_name: str, logical_id: str) -> str:
    return f"{stack_name}-{logical_id}"


def _create_nothing(*_: Any) -> None:
    return None


def _create_table(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    ddb = client("dynamodb")
    name = props.get("TableName") or _physical_name(out.stack_name, lid)
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("LocalSecondaryIndexes"):
        args["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
    if "StreamSpecification" in props:
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if props.get("SSESpecification", {}).get("SSEEnabled"):
        args["SSESpecification"] = {"Enabled": True}
    description = ddb.create_table(**args)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    out.refs[lid] = name
    out.attributes[(lid, "Arn")] = description["TableArn"]
    if "LatestStreamArn" in description:
        out.attributes[(lid, "StreamArn")] = description["LatestStreamArn"]


def _create_queue(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    sqs = client("sqs")
    name = props.get("QueueName") or _physical_name(out.stack_name, lid)
    attributes = {
        key: json.dumps(value)
        if isinstance(value, dict)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in props.items()
        if key not in {"QueueName", "Tags"}
    }
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    out.refs[lid] = url
    out.attributes[(lid, "QueueName")] = name
    out.attributes[(lid, "QueueUrl")] = url
    out.attributes[(lid, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


def _create_key(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    kms = client("kms")
    args: dict[str, Any] = {"Description": props.get("Description", lid)}
    if "KeyPolicy" in props:
        args["Policy"] = json.dumps(props["KeyPolicy"])
    metadata = kms.create_key(**args)["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=metadata["KeyId"])
    out.refs[lid] = metadata["KeyId"]
    out.attributes[(lid, "Arn")] = metadata["Arn"]
    out.attributes[(lid, "KeyId")] = metadata["KeyId"]


def _create_alias(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    out.refs[lid] = props["AliasName"]


def _generate_secret(spec: dict[str, Any]) -> str:
    """What CloudFormation's GenerateSecretString produces: a random string of the given shape."""
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    for excluded in spec.get("ExcludeCharacters", ""):
        alphabet = alphabet.replace(excluded, "")
    return "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))


def _create_secret(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    name = props.get("Name") or _physical_name(out.stack_name, lid)
    value = props.get("SecretString") or _generate_secret(props.get("GenerateSecretString", {}))
    arn = client("secretsmanager").create_secret(
        Name=name, Description=props.get("Description", ""), SecretString=value
    )["ARN"]
    out.refs[lid] = arn
    out.attributes[(lid, "Id")] = arn


def _create_bus(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    arn = client("events").create_event_bus(Name=props["Name"])["EventBusArn"]
    out.refs[lid] = props["Name"]
    out.attributes[(lid, "Arn")] = arn
    out.attributes[(lid, "Name")] = props["Name"]


def _create_rule(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    """An EventBridge rule and its targets (moto delivers matching events to SQS targets, as EventBridge does)."""
    props = r.resolve(props)
    events = client("events")
    name = props.get("Name") or _physical_name(out.stack_name, lid)
    bus = props.get("EventBusName", "default")
    arn = events.put_rule(
        Name=name,
        EventBusName=bus,
        EventPattern=json.dumps(props["EventPattern"]),
        State=props.get("State", "ENABLED"),
        Description=props.get("Description", ""),
    )["RuleArn"]
    targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    out.refs[lid] = name
    out.attributes[(lid, "Arn")] = arn


def _create_queue_policy(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    policy = json.dumps(props["PolicyDocument"])
    for url in props["Queues"]:
        client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})


def _create_bucket(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    s3 = client("s3")
    name = props.get("BucketName") or _physical_name(out.stack_name, lid).lower()
    s3.create_bucket(Bucket=name)
    if "BucketEncryption" in props:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                # CloudFormation and the S3 API name the same setting differently.
                "Rules": [
                    {("Apply" + k if k == "ServerSideEncryptionByDefault" else k): v for k, v in rule.items()}
                    for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]
            },
        )
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
    out.refs[lid] = name
    out.attributes[(lid, "Arn")] = f"arn:aws:s3:::{name}"


def _create_bucket_policy(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    document = dict(props["PolicyDocument"])
    # moto is reached over plain HTTP here, and it enforces bucket policies: a statement that denies
    # insecure transport would deny every request. TLS is AWS's to enforce; keep everything else.
    document["Statement"] = [
        s for s in document.get("Statement", []) if "aws:SecureTransport" not in json.dumps(s.get("Condition", {}))
    ]
    if document["Statement"]:
        client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))


def _create_topic(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    name = props.get("TopicName") or _physical_name(out.stack_name, lid)
    attributes = {"DisplayName": props["DisplayName"]} if "DisplayName" in props else {}
    arn = client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    out.refs[lid] = arn
    out.attributes[(lid, "TopicArn")] = arn
    out.attributes[(lid, "TopicName")] = name


def _create_subscription(client: ClientFactory, r: Resolver, out: LocalResources, lid: str, props: dict) -> None:
    props = r.resolve(props)
    arn = client("sns").subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"])[
        "SubscriptionArn"
    ]
    out.refs[lid] = arn


_CREATORS: dict[str, Callable[[ClientFactory, Resolver, LocalResources, str, dict], None]] = {
    "AWS::DynamoDB::Table": _create_table,
    "AWS::SQS::Queue": _create_queue,
    "AWS::KMS::Key": _create_key,
    "AWS::KMS::Alias": _create_alias,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::Events::EventBus": _create_bus,
    "AWS::Events::Rule": _create_rule,
    "AWS::SQS::QueuePolicy": _create_queue_policy,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::S3::BucketPolicy": _create_bucket_policy,
    "AWS::SNS::Topic": _create_topic,
    "AWS::SNS::Subscription": _create_subscription,
}
