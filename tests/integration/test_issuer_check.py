"""RFC 9207 through the real authorize and callback handlers on moto, under their IAM policies: an `iss`
naming another server, or none from a provider whose metadata says it sends one, is refused with a 400
before the code is exchanged, and nothing is stored (the end to end test, tests/e2e/test_token_refresh.py,
signs in through the emulator with a right and a wrong `iss`)."""

from __future__ import annotations

import boto3
import pytest

from bitbridge import providers
from tests.integration.test_verify_authorisation import PROVIDER, authorize, callback, started


@pytest.fixture
def edge(aws):
    providers.add_provider(PROVIDER, "cloud", "key", "secret")
    return aws


def _people(aws) -> list[dict]:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=aws.ref("AccountsTable"))["Items"]


@pytest.mark.parametrize("sends_iss", [False, True])
def test_an_issuer_naming_another_server_is_refused_before_the_exchange(edge, sends_iss):
    providers.update_provider(PROVIDER, sends_iss=sends_iss)
    state, binding = started(authorize({"purpose": "sign_in"}))
    answer = callback({"state": state, "code": "c0de", "iss": "https://bitbucket.evil.example"}, binding)
    assert answer["statusCode"] == 400
    assert "bitbucket.evil.example" in answer["body"] and "https://bitbucket.org" in answer["body"]
    assert "another server" in answer["body"] and _people(edge) == []


def test_a_provider_that_says_it_sends_iss_must_send_it(edge):
    providers.update_provider(PROVIDER, sends_iss=True)
    state, binding = started(authorize({"purpose": "sign_in"}))
    answer = callback({"state": state, "code": "c0de"}, binding)
    assert answer["statusCode"] == 400 and "did not name its issuer" in answer["body"]
    assert _people(edge) == []


def test_an_error_response_naming_another_server_is_refused_as_such(edge):
    state, binding = started(authorize({"purpose": "sign_in"}))
    answer = callback({"state": state, "error": "access_denied", "iss": "https://elsewhere.example"}, binding)
    assert answer["statusCode"] == 400 and "elsewhere.example" in answer["body"]
    assert "denied" not in answer["body"]  # the mix-up is what the person is told, not the other server's word
