"""`purpose=verify` through the real authorize and callback handlers on moto, each under its own IAM
policy: only a signed-in admin or the holder of a one-time ticket from `bitbridge providers verify` may
start a verification; anything else is refused with the edge's 401/403 and stores nothing; the failure
text a verification records is one bounded line without control characters."""

from __future__ import annotations

import os
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from bitbridge import accounts, providers, sessions, verification
from bitbridge.aws import reset_caches
from bitbridge.bitbucket.identity import Identity
from bitbridge.edge import SESSION_COOKIE
from bitbridge.safe_text import DETAIL_LIMIT
from bitbridge.store.ephemeral import VerificationTicketRecord, ticket_key
from functions.oauth_authorize.app import handler as authorize_handler
from functions.oauth_callback.app import handler as callback_handler
from infra.local.iam import acting_as
from tests.integration.webhooks.support import Context

PROVIDER = "cloud"
ADMIN, MEMBER = "admin-user", "member-user"
HOST = "api.bitbridge.example"


def _connect(user_id: str, external_id: str) -> None:
    identity = Identity(external_id, user_id, user_id, None)
    token = {"access_token": f"at-{user_id}", "refresh_token": f"rt-{user_id}", "expires_in": 3600}
    accounts.save_tokens_fresh(user_id, PROVIDER, identity, token, f"https://{HOST}/auth/{PROVIDER}/callback")


@pytest.fixture
def edge(aws):
    os.environ["BITBRIDGE_ADMIN_USERS"] = f"{PROVIDER}:{{admin-uuid}}"
    reset_caches()
    providers.add_provider(PROVIDER, "cloud", "key", "secret")
    _connect(ADMIN, "{admin-uuid}")
    _connect(MEMBER, "{member-uuid}")
    return aws


def _event(path: str, query: dict[str, str], cookies: list[str] | None = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "headers": {"host": HOST},
        "cookies": cookies or [],
        "queryStringParameters": query,
        "pathParameters": {"provider": PROVIDER},
        "requestContext": {"domainName": HOST, "http": {"method": "GET"}},
    }


def authorize(query: dict[str, str], user: str | None = None) -> dict[str, Any]:
    cookies = [f"{SESSION_COOKIE}={sessions.issue(user)[0]}"] if user else []
    with acting_as("OAuthAuthorizeFunction"):
        return authorize_handler(_event(f"/auth/{PROVIDER}/authorize", query, cookies), Context())


def callback(query: dict[str, str], cookies: list[str]) -> dict[str, Any]:
    with acting_as("OAuthCallbackFunction"):
        return callback_handler(_event(f"/auth/{PROVIDER}/callback", query, cookies), Context())


def stored(aws) -> list[dict]:
    """Every ephemeral item but sessions and tickets: the OAuth states an authorize left behind."""
    items = boto3.client("dynamodb", region_name="us-east-1").scan(
        TableName=aws.ref("EphemeralTable"), ConsistentRead=True
    )["Items"]
    return [i for i in items if i["pk"]["S"].startswith("STATE#")]


def provider_state() -> tuple[str, str | None]:
    record = providers.get_provider(PROVIDER)
    return record.status, record.status_detail


def started(answer: dict[str, Any]) -> tuple[str, list[str]]:
    """The state in the 302 to Bitbucket, and the binding cookie to send back with the callback."""
    assert answer["statusCode"] == 302, answer.get("body")
    state = parse_qs(urlsplit(answer["headers"]["Location"]).query)["state"][0]
    jar: SimpleCookie = SimpleCookie()
    jar.load(answer["cookies"][0])
    return state, [f"{name}={morsel.value}" for name, morsel in jar.items()]


def test_an_anonymous_verification_is_401_and_stores_nothing(edge):
    before = provider_state()
    answer = authorize({"purpose": "verify"})
    assert answer["statusCode"] == 401
    assert "admin" in answer["body"] and "bitbridge providers verify" in answer["body"]
    assert stored(edge) == [] and provider_state() == before


def test_a_signed_in_member_is_403_and_an_admin_may_verify(edge):
    refused = authorize({"purpose": "verify"}, user=MEMBER)
    assert refused["statusCode"] == 403 and "Only an admin" in refused["body"]
    assert stored(edge) == []
    allowed = authorize({"purpose": "verify"}, user=ADMIN)
    assert allowed["statusCode"] == 302
    assert urlsplit(allowed["headers"]["Location"]).hostname == "bitbucket.org"
    assert [s["purpose"]["S"] for s in stored(edge)] == ["verify"]


def test_a_ticket_works_once_for_its_provider_only_and_is_stored_hashed(edge):
    ticket = verification.mint(PROVIDER)
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=edge.ref("EphemeralTable"))["Items"]
    assert ticket not in str(items)  # only its digest is stored
    first = authorize({"purpose": "verify", "ticket": ticket})
    assert first["statusCode"] == 302
    again = authorize({"purpose": "verify", "ticket": ticket})
    assert again["statusCode"] == 403 and "already used" in again["body"]
    assert len(stored(edge)) == 1

    providers.add_provider("other", "cloud", "key", "secret")
    elsewhere = verification.mint("other")
    assert authorize({"purpose": "verify", "ticket": elsewhere})["statusCode"] == 403  # minted for "other"
    assert authorize({"purpose": "verify", "ticket": "made-up"})["statusCode"] == 403

    expired = verification.mint(PROVIDER)
    record = VerificationTicketRecord.get(ticket_key(verification._digest(expired)))
    record.update(actions=[VerificationTicketRecord.expires_at.set(int(time.time()) - 1)])
    assert authorize({"purpose": "verify", "ticket": expired})["statusCode"] == 403
    assert len(stored(edge)) == 1


def test_a_forged_failure_callback_changes_nothing(edge):
    before = provider_state()
    forged = {"state": "forged-state", "error": "server_error", "error_description": "\x1b[31mPWNED"}
    assert callback(forged, [])["statusCode"] == 400
    # An outsider's own (sign-in) attempt, answered with an error, is no verification either.
    state, binding = started(authorize({"purpose": "sign_in"}))
    answer = callback({"state": state, "error": "server_error", "error_description": "provider broken"}, binding)
    assert answer["statusCode"] == 400
    assert provider_state() == before


def test_a_verification_failure_is_stored_as_one_bounded_line_and_reaches_the_ticket(edge):
    ticket = verification.mint(PROVIDER)
    state, binding = started(authorize({"purpose": "verify", "ticket": ticket}))
    hostile = "\x1b[2J\x1b]0;owned\x07evil\r\nline\x00\u202e" + "x" * 2000
    answer = callback({"state": state, "error": hostile, "error_description": "\x1b[31mred\x1b[0m"}, binding)
    assert answer["statusCode"] == 400
    status, detail = provider_state()
    assert status == "failed" and detail is not None
    assert len(detail) <= DETAIL_LIMIT
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch == "\u202e" for ch in detail)
    assert detail.startswith("Bitbucket answered with an error: evil line") and "owned" not in detail
    assert verification.outcome(ticket) == "failed"
    # The same state cannot be replayed to write another text.
    assert callback({"state": state, "error": "again"}, binding)["statusCode"] == 400
    assert provider_state() == (status, detail)
