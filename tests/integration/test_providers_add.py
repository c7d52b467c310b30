"""`bitbridge providers add` right after a first deploy, on moto: the public URL comes from the stack's
outputs, and a failure at any step leaves no half-registered provider (or a retry completes it)."""

from __future__ import annotations

import json

import boto3
import pytest

from bitbridge import providers
from bitbridge.cli import main
from infra.local.resources import REGION

API_URL = "https://abc123def4.execute-api.us-east-1.amazonaws.com"


def _deployed_stack(name: str, api_url: str = API_URL) -> None:
    """A CloudFormation stack with the Outputs a deployed bitbridge has (PublicBaseUrl left empty)."""
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "ApiUrl": {"Value": api_url},
            "CallbackUrlPattern": {"Value": f"{api_url}/auth/{{provider}}/callback"},
        },
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=name, TemplateBody=json.dumps(template))


def _secret_names() -> set[str]:
    sm = boto3.client("secretsmanager", region_name=REGION)
    return {s["Name"] for s in sm.list_secrets()["SecretList"]}


def _stored(provider_id: str) -> dict[str, str]:
    return json.loads(
        boto3.client("secretsmanager", region_name=REGION).get_secret_value(
            SecretId=providers.secret_name(provider_id)
        )["SecretString"]
    )


@pytest.fixture
def first_deploy(aws):
    assert aws.environment["BITBRIDGE_PUBLIC_BASE_URL"] == ""  # the template's default
    _deployed_stack("bitbridge-prod")
    return aws


def test_add_right_after_the_first_deploy_prints_the_callback_url_from_the_stack_outputs(first_deploy, capsys):
    add = ["providers", "add", "bitbucket-cloud", "--flavor", "cloud", "--key", "key-1", "--secret", "s3cret"]
    code = main(["--stack", "bitbridge-prod", *add])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"{API_URL}/auth/bitbucket-cloud/callback" in out.out
    assert providers.get_provider("bitbucket-cloud").status == "pending"
    assert _stored("bitbucket-cloud") == {"client_id": "key-1", "client_secret": "s3cret"}


def test_an_unknown_public_url_fails_before_anything_is_created_and_a_retry_succeeds(first_deploy, capsys):
    args = ["providers", "add", "acme", "--flavor", "cloud", "--key", "k", "--secret", "s"]
    assert main(args) == 2  # no --stack, no --base-url, no PublicBaseUrl: the URL is unknown
    assert "public URL is unknown" in capsys.readouterr().err
    assert providers.list_providers() == [] and _secret_names().isdisjoint({providers.secret_name("acme")})
    assert main(["--stack", "bitbridge-missing", *args]) == 2  # a stack that does not exist
    assert "cannot read the outputs" in capsys.readouterr().err
    assert providers.list_providers() == []
    assert main(["--stack", "bitbridge-prod", *args]) == 0  # not "already exists"
    assert [p.provider_id for p in providers.list_providers()] == ["acme"]


def test_a_failed_record_write_leaves_no_secret_behind(first_deploy):
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=first_deploy.ref("ProvidersTable"))
    with pytest.raises(Exception, match=r"ResourceNotFound|not found|Requested resource"):
        providers.add_provider("bitbucket-cloud", "cloud", "k", "s")
    assert providers.secret_name("bitbucket-cloud") not in _secret_names()


def test_a_retry_completes_an_interrupted_add(first_deploy):
    sm = boto3.client("secretsmanager", region_name=REGION)
    # Interrupted after the secret was written: the secret exists, the record does not.
    sm.create_secret(Name=providers.secret_name("half-a"), SecretString=json.dumps({"client_id": "old"}))
    providers.add_provider("half-a", "cloud", "new-key", "new-secret")
    assert providers.get_provider("half-a").flavor == "cloud"
    assert _stored("half-a") == {"client_id": "new-key", "client_secret": "new-secret"}
    # The older order's leftover: a record without its secret.
    providers.ProviderRecord(
        "half-b",
        flavor="cloud",
        label="x",
        web_url="https://bitbucket.org",
        api_url="https://api.bitbucket.org/2.0",
        scopes="account",
    ).save()
    providers.add_provider("half-b", "cloud", "key-b", "secret-b")
    assert _stored("half-b") == {"client_id": "key-b", "client_secret": "secret-b"}
    assert providers.get_provider("half-b").label == "Bitbucket"


def test_a_complete_provider_is_never_overwritten(first_deploy):
    providers.add_provider("taken", "cloud", "k1", "s1")
    with pytest.raises(providers.ProviderError, match="already exists"):
        providers.add_provider("taken", "datacenter", "k2", "s2", web_url="https://bitbucket.example.com")
    assert _stored("taken") == {"client_id": "k1", "client_secret": "s1"}
    assert providers.get_provider("taken").flavor == "cloud"


def test_invalid_input_creates_nothing(first_deploy):
    with pytest.raises(providers.ProviderError, match="HTTPS"):
        providers.add_provider("dc", "datacenter", "k", "s", web_url="http://bitbucket.example.com")
    assert providers.list_providers() == [] and providers.secret_name("dc") not in _secret_names()
