"""template.yaml describes the whole system, least-privilege, and lints clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.local.template import TEMPLATE_PATH, Resolver, functions, load_template, resources_of_type, routes

REQUIRED_ROUTES = {
    "GET /auth/{provider}/authorize": "OAuthAuthorizeFunction",
    "GET /auth/{provider}/callback": "OAuthCallbackFunction",
    "POST /hooks/{provider}/{subscription}": "WebhookReceiverFunction",
    "POST /api/imports": "ImportKickoffFunction",
    "GET /health": "ApiFunction",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_every_required_handler_has_its_own_route(template):
    by_key = {route.route_key: route.function for route in routes(template)}
    for route_key, function in REQUIRED_ROUTES.items():
        assert by_key.get(route_key) == function, route_key
    # The four required handlers are separate functions with their own code.
    code_dirs = {fn.module for fn in functions(template).values()}
    assert len(code_dirs) == len(functions(template))


def test_functions_run_python313_on_arm64(template):
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "bitbridge"
    for _, fn in resources_of_type(template, "AWS::Serverless::Function"):
        assert "Runtime" not in fn["Properties"] and "Architectures" not in fn["Properties"]
        assert "Environment" not in fn["Properties"], "set variables in Globals (one environment)"


def test_import_queue_visibility_is_at_least_six_worker_timeouts(template):
    worker = functions(template)["ImportWorkerFunction"]
    queue = template["Resources"]["ImportQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker.timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ImportDeadLetterQueue", "Arn"]}
    assert worker.sqs_sources[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_tables_are_on_demand_with_pitr_and_ttl_where_short_lived(template):
    tables = dict(resources_of_type(template, "AWS::DynamoDB::Table"))
    for name, table in tables.items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
    for short_lived in ("EphemeralTable", "DeliveriesTable"):
        assert tables[short_lived]["Properties"]["TimeToLiveSpecification"]["Enabled"] is True
    assert tables["DeliveriesTable"]["Properties"]["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"


def test_secrets_are_generated_never_written_in_the_template(template):
    secrets = dict(resources_of_type(template, "AWS::SecretsManager::Secret"))
    assert {"SessionSigningKeySecret", "WebhookMasterKeySecret"} <= set(secrets)
    for secret in secrets.values():
        assert "SecretString" not in secret["Properties"]
        assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32


def _statements(fn: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in fn["Properties"].get("Policies", []) for s in policy.get("Statement", [])]


def test_policies_name_exact_actions_on_exact_resources(template):
    for name, fn in resources_of_type(template, "AWS::Serverless::Function"):
        statements = _statements(fn)
        assert statements, f"{name} has no inline least-privilege policy"
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                assert "*" not in action, f"{name}: wildcard action {action}"
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in resources, f"{name}: wildcard resource"


def test_webhook_receiver_can_only_store_deliveries(template):
    fn = template["Resources"]["WebhookReceiverFunction"]
    actions = {a for s in _statements(fn) for a in s["Action"]}
    # Nothing on the receipt path may call Bitbucket, EventBridge or read other tables.
    assert actions == {"dynamodb:PutItem", "secretsmanager:GetSecretValue"}


def test_every_function_logs_to_a_group_with_retention(template):
    for name, fn in resources_of_type(template, "AWS::Serverless::Function"):
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert template["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_snapshot_bucket_is_private_encrypted_and_tls_only(template):
    bucket = template["Resources"]["SnapshotsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policy = template["Resources"]["SnapshotsBucketPolicy"]["Properties"]["PolicyDocument"]
    deny = policy["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _resolver(template: dict[str, Any], **parameters: str) -> Resolver:
    """Evaluates the template's conditions and intrinsics as CloudFormation would, for given parameters."""
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(parameters)
    return Resolver(
        template,
        values,
        ref=lambda logical_id: f"<{logical_id}>",
        get_att=lambda logical_id, attribute: f"<{logical_id}.{attribute}>",
        pseudo={"AWS::Region": "eu-west-1", "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "bitbridge-prod"},
    )


def test_outputs_give_the_urls_an_admin_needs(template):
    outputs = template["Outputs"]
    for name in ("ApiUrl", "CallbackUrlPattern", "WebhookUrlPattern", "EventBusName", "SnapshotsBucketName"):
        assert name in outputs
    execute_api = "https://<HttpApi>.execute-api.eu-west-1.amazonaws.com"
    default = _resolver(template)
    assert default.resolve(outputs["ApiUrl"]["Value"]) == execute_api
    assert default.resolve(outputs["CallbackUrlPattern"]["Value"]) == f"{execute_api}/auth/{{provider}}/callback"
    assert (
        default.resolve(outputs["WebhookUrlPattern"]["Value"]) == f"{execute_api}/hooks/{{provider}}/{{subscription}}"
    )


def test_outputs_use_the_custom_domain_when_there_is_one(template):
    outputs = template["Outputs"]
    domain = _resolver(template, PublicBaseUrl="https://git.example.com")
    assert domain.resolve(outputs["ApiUrl"]["Value"]) == "https://git.example.com"
    assert domain.resolve(outputs["CallbackUrlPattern"]["Value"]) == "https://git.example.com/auth/{provider}/callback"
    assert (
        domain.resolve(outputs["WebhookUrlPattern"]["Value"])
        == "https://git.example.com/hooks/{provider}/{subscription}"
    )
    # The raw endpoint stays available (to map the domain to, or to test with).
    assert domain.resolve(outputs["ExecuteApiUrl"]["Value"]) == "https://<HttpApi>.execute-api.eu-west-1.amazonaws.com"
    pattern = re.compile(template["Parameters"]["PublicBaseUrl"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("https://git.example.com/bitbridge")
    for refused in ("https://git.example.com/", "http://git.example.com", "git.example.com"):
        assert not pattern.fullmatch(refused), refused  # a trailing slash would give "//auth/..." URLs


# ---------------------------------------------------------------- deploy blockers (issue 9)


def _reserved(template: dict[str, Any], resolver: Resolver) -> dict[str, int]:
    out = {}
    for name, fn in resources_of_type(template, "AWS::Serverless::Function"):
        props = resolver.resolve({"R": fn["Properties"].get("ReservedConcurrentExecutions", {"Ref": "AWS::NoValue"})})
        if "R" in props:
            out[name] = int(props["R"])
    return out


def test_no_reserved_concurrency_unless_the_parameter_turns_it_on(template):
    # Reserved concurrency that adds up past the account's quota fails stack creation (new accounts
    # have 10 or 50), and a second stack in the region could never fit.
    assert template["Parameters"]["ReservedConcurrency"]["Default"] == "off"
    assert _reserved(template, _resolver(template)) == {}
    reserved = _reserved(template, _resolver(template, ReservedConcurrency="on"))
    assert set(reserved) == {name for name, _ in resources_of_type(template, "AWS::Serverless::Function")}
    assert sum(reserved.values()) + 100 <= 500  # Lambda keeps 100 unreserved; documented as "~500"


def test_import_worker_never_runs_more_than_its_maximum_concurrency(template):
    worker = functions(template)["ImportWorkerFunction"]
    limit = worker.sqs_sources[0]["ScalingConfig"]["MaximumConcurrency"]
    assert limit == {"Ref": "ImportWorkerMaximumConcurrency"}
    spec = template["Parameters"]["ImportWorkerMaximumConcurrency"]
    assert 2 <= spec["Default"] <= 1000 and spec["MinValue"] >= 2  # SQS's own bounds
    # With reservation on, the worker's reserved concurrency is exactly its MaximumConcurrency:
    # the poller never invokes a worker that would be throttled (and burn a receive).
    on = _reserved(template, _resolver(template, ReservedConcurrency="on", ImportWorkerMaximumConcurrency="7"))
    assert on["ImportWorkerFunction"] == 7


# API Gateway's default account-level throttle per region; a route limit below it only adds 429s.
ACCOUNT_RATE_LIMIT, ACCOUNT_BURST_LIMIT = 10_000, 5_000


def _route_throttle(template: dict[str, Any], function: str, event: str) -> tuple[float, float]:
    default = template["Resources"]["HttpApi"]["Properties"].get("DefaultRouteSettings", {})
    own = template["Resources"][function]["Properties"]["Events"][event]["Properties"].get("RouteSettings", {})
    settings = {**default, **own}
    return settings.get("ThrottlingRateLimit", float("inf")), settings.get("ThrottlingBurstLimit", float("inf"))


def test_webhook_route_is_never_throttled_below_the_account_limit(template):
    # A throttled route answers 429, which Bitbucket Cloud never retries: the delivery is lost.
    rate, burst = _route_throttle(template, "WebhookReceiverFunction", "Delivery")
    assert rate >= ACCOUNT_RATE_LIMIT and burst >= ACCOUNT_BURST_LIMIT
    # The browser routes keep a modest limit.
    assert _route_throttle(template, "OAuthAuthorizeFunction", "Authorize") == (100, 200)


def test_resource_names_are_scoped_by_the_stack(template):
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert "${Stage}" not in text  # the stage is a label; names must differ per stack
    named = 0
    for name, resource in template["Resources"].items():
        for key in ("Name", "LogGroupName", "AliasName", "TableName", "QueueName", "BucketName", "TopicName"):
            value = resource.get("Properties", {}).get(key)
            if value is not None:
                named += 1
                assert "${AWS::StackName}" in value.get("Fn::Sub", ""), f"{name}.{key}"
    assert named >= 11  # 8 log groups, 2 secrets, the bus, the alias
    prefix = template["Globals"]["Function"]["Environment"]["Variables"]["BITBRIDGE_PROVIDER_SECRET_PREFIX"]
    assert prefix == {"Fn::Sub": "bitbridge/${AWS::StackName}/providers/"}
    # Each policy's provider-secret ARN follows the same prefix.
    for name, fn in resources_of_type(template, "AWS::Serverless::Function"):
        for statement in _statements(fn):
            for resource in (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            ):
                if "providers/" in str(resource):
                    assert ":secret:bitbridge/${AWS::StackName}/providers/*" in resource["Fn::Sub"], name


def test_every_alarm_notifies_the_alarm_topic(template):
    alarms = dict(resources_of_type(template, "AWS::CloudWatch::Alarm"))
    assert alarms
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}], name
    assert template["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    assert _resolver(template).condition("HasAlarmEmail") is False
    assert _resolver(template, AlarmEmail="ops@example.com").condition("HasAlarmEmail") is True


def test_every_function_has_errors_and_throttles_alarms_and_each_dlq_one(template):
    watched: set[tuple[str, str]] = set()
    for _, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm"):
        props = alarm["Properties"]
        for dimension in props["Dimensions"]:
            target = dimension["Value"].get("Ref") or dimension["Value"].get("Fn::GetAtt", [None])[0]
            watched.add((target, props["MetricName"]))
            if props["Namespace"] == "AWS/Lambda":
                assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    for name, _ in resources_of_type(template, "AWS::Serverless::Function"):
        assert {(name, "Errors"), (name, "Throttles")} <= watched, name
    assert ("ImportDeadLetterQueue", "ApproximateNumberOfMessagesVisible") in watched
    # Parked deliveries heal themselves (PublishRedriveFunction): a human is called only when they stay parked.
    assert ("PublishFailureQueue", "ApproximateAgeOfOldestMessage") in watched


def test_stateful_resources_outlive_the_stack(template):
    stateful = [
        *resources_of_type(template, "AWS::DynamoDB::Table"),
        *resources_of_type(template, "AWS::KMS::Key"),
        *resources_of_type(template, "AWS::S3::Bucket"),
    ]
    assert len(stateful) == 10
    for name, resource in stateful:
        assert resource.get("DeletionPolicy") == "Retain", name
        assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_checkov_skips_each_carry_a_reason(template):
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip.get("comment", "").strip(), f"{name}: skip {skip['id']} has no reason"


def test_cfn_lint_reports_nothing():
    # The same command `make scan` runs (and what `sam validate --lint` wraps).
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(TEMPLATE_PATH)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def _stream_record(event_name: str, image: dict[str, Any] | None) -> dict[str, Any]:
    """A DynamoDB stream record as Lambda's filter sees it (NEW_IMAGE view: REMOVE has no NewImage)."""
    dynamodb: dict[str, Any] = {"Keys": {"pk": {"S": "p#d"}}, "SequenceNumber": "1", "StreamViewType": "NEW_IMAGE"}
    if image is not None:
        dynamodb["NewImage"] = image
    return {"eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb}


def test_publisher_is_invoked_only_for_deliveries_it_must_publish(template):
    from moto.events.models import EventPattern

    from bitbridge.store import deliveries as receipt

    source = functions(template)["EventPublisherFunction"].stream_sources[0]
    patterns = [EventPattern.load(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]

    def invoked(record: dict[str, Any]) -> bool:  # Lambda invokes when any filter matches
        return any(p.matches_event(record) for p in patterns)

    def stored(status: str, **extra: dict[str, str]) -> dict[str, Any]:
        # Exactly the item the receiver writes (bitbridge.store.deliveries), with the publisher's changes.
        headers = {"x-event-key": "repo:push", "x-request-uuid": "d-1"}
        item = receipt.new_item(
            provider_id="bitbucket-cloud",
            subscription_id="sub-1",
            delivery_id="d-1",
            event_key="repo:push",
            status=status,
            attempt=1,
            headers=headers,
            body="{}",
        )
        return {**item, "status": {"S": status}, **extra}

    assert invoked(_stream_record("INSERT", stored(receipt.RECEIVED)))
    assert not invoked(_stream_record("INSERT", stored(receipt.IGNORED)))  # recorded, never published
    # The publisher's own updates, whatever they record.
    published = stored(
        receipt.PUBLISHED, event_type={"S": "repository.push"}, published_at={"S": "2024-01-01T00:00:00Z"}
    )
    for image in (published, stored(receipt.MALFORMED), stored(receipt.UNPUBLISHABLE), stored(receipt.IGNORED)):
        assert not invoked(_stream_record("MODIFY", image))
    assert not invoked(_stream_record("REMOVE", None))  # TTL expiry
    # What the publisher handles is exactly what passes the filter (it skips the rest anyway).
    for status in (receipt.RECEIVED, receipt.IGNORED, receipt.PUBLISHED, receipt.MALFORMED, receipt.UNPUBLISHABLE):
        for event_name in ("INSERT", "MODIFY"):
            record = _stream_record(event_name, stored(status))
            assert invoked(record) == (event_name == "INSERT" and status == receipt.RECEIVED), (event_name, status)


def test_every_route_is_defined_once(template):
    # SAM refuses a template where two events declare the same method and path (the deploy rehearsal
    # found one); the local gateway would silently serve just one of them.
    keys = [route.route_key for route in routes(template)]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []
