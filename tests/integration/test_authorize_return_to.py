"""GET /auth/{provider}/authorize with hostile `return_to` values, through the real handler on moto:
a 302 to Bitbucket whose stored destination stays on an allowed origin, or a 400 that stores nothing."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import boto3
import pytest
from hypothesis import HealthCheck, given, settings

from bitbridge import providers
from bitbridge.aws import reset_caches
from functions.oauth_authorize.app import handler
from tests.integration.webhooks.support import Context
from tests.return_to_strategies import ALLOWED_ORIGINS, RETURN_TO, stays_on_allowed_origin

FUZZ_CASES = 300


@pytest.fixture
def authorize(aws):
    os.environ["BITBRIDGE_ALLOWED_RETURN_TO_ORIGINS"] = ",".join(ALLOWED_ORIGINS)
    reset_caches()
    providers.add_provider("cloud", "cloud", "key", "secret")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = aws.ref("EphemeralTable")

    def call(return_to: str) -> tuple[int, dict, list[dict]]:
        event = {
            "version": "2.0",
            "rawPath": "/auth/cloud/authorize",
            "headers": {"host": "api.bitbridge.example"},
            "queryStringParameters": {"return_to": return_to},
            "pathParameters": {"provider": "cloud"},
            "requestContext": {"domainName": "api.bitbridge.example", "http": {"method": "GET"}},
        }
        response = handler(event, Context())
        states = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
        for item in states:
            ddb.delete_item(TableName=table, Key={"pk": item["pk"]})
        return response["statusCode"], response, states

    return call


@pytest.mark.parametrize(
    "value", ["http://[evil.example", "https://evil.example\uff0fapp.example", "https://evil\uff03.example"]
)
def test_unparseable_return_to_is_400_with_a_message_and_no_state(authorize, value):
    status, response, states = authorize(value)
    assert status == 400
    # A browser route: the edge answers an HTML page that names the problem and links back to sign-in.
    assert response["headers"]["content-type"].startswith("text/html")
    assert "return_to" in response["body"] and "href='/login'" in response["body"]
    assert states == []


def test_hostile_return_to_values_never_5xx_and_never_leave_the_allow_list(authorize):
    seen: list[int] = []

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(RETURN_TO)
    def prop(value: str) -> None:
        status, response, states = authorize(value)
        seen.append(status)
        assert status in (302, 400), (status, value)
        if status == 400:
            assert states == []
            return
        assert urlsplit(response["headers"]["Location"]).hostname == "bitbucket.org"
        (state,) = states
        assert stays_on_allowed_origin(state["return_to"]["S"]), state["return_to"]["S"]

    prop()
    print(f"authorize handler property: {len(seen)} generated return_to values")
    assert len(seen) >= FUZZ_CASES * 0.9
    assert {302, 400} <= set(seen)
