"""template.yaml describes the whole system, least-privilege, and lints clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.local.template import TEMPLATE_PATH, functions, load_template, resources_of_type, routes

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


def test_outputs_give_the_urls_an_admin_needs(template):
    outputs = template["Outputs"]
    for name in ("ApiUrl", "CallbackUrlPattern", "WebhookUrlPattern", "EventBusName", "SnapshotsBucketName"):
        assert name in outputs
    assert outputs["CallbackUrlPattern"]["Value"]["Fn::Sub"].endswith("/auth/{provider}/callback")


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
