"""A lost refresh-token rotation, against the emulator over real HTTP and moto in-process, the refresh
made as the API function (its IAM policy enforced): Data Center rotates the refresh token (single use),
but its answer reaches bitbridge after the token endpoint's read timeout. The call still gets the valid
access token; the next refresh's `invalid_grant` is then explained on the connection (reauth_required +
status_detail) and in `connection.reauth_required` (`reason: refresh_answer_lost`). A refresh token
refused without such a timeout says `refresh_token_refused` instead."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import boto3
import pytest
import requests

from bitbridge import accounts, providers, tokens
from bitbridge.calls import Caller
from bitbridge.store.accounts import ConnectionRecord, user_pk
from infra.emulator import Emulator
from infra.local.iam import acting_as

PROVIDER = "acme-dc"
USER = "user-carol"
TOKEN_PATH = "/rest/oauth2/latest/token"
READ_TIMEOUT = 0.5  # the token endpoint's read timeout in this test (25 s in production)
ANSWER_DELAY_MS = 1500  # the emulator's answer comes this late: after our timeout


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(cloud_port=0, dc_port=0, seed=True)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def connected(aws, emulator, monkeypatch):
    """carol connected to a Data Center provider on the emulator (a real code exchange), the token endpoint's
    read timeout shortened so the test runs in seconds."""
    emulator.reset(seed=True)
    monkeypatch.setattr(tokens, "TOKEN_TIMEOUT", (3.05, READ_TIMEOUT))
    redirect = f"https://api.example/auth/{PROVIDER}/callback"
    dc = emulator.dc_url
    control = f"{dc}/_emulator"
    provider = providers.add_provider(PROVIDER, "datacenter", "dc-key", "dc-secret", web_url=dc)
    client = {"flavor": "datacenter", "client_id": "dc-key", "redirect_uri": redirect, "scopes": provider.scope_list}
    requests.post(f"{control}/oauth/clients", json={**client, "client_secret": "dc-secret"}, timeout=5)
    consent = {"flavor": "datacenter", "client_id": "dc-key", "redirect_uri": redirect, "scope": provider.scopes}
    granted = requests.post(f"{control}/oauth/authorize", json={**consent, "user": "carol"}, timeout=5).json()
    session = providers.oauth_session(provider, providers.credentials(PROVIDER), redirect)
    token = dict(session.fetch_token(providers.endpoints(provider).token_url, code=granted["code"], timeout=5))
    identity = providers.identify(provider, Caller.with_token(provider, token["access_token"]).get)
    accounts.save_tokens_fresh(USER, PROVIDER, identity, token, redirect)
    return emulator


@pytest.fixture
def reauth_events(aws) -> Iterator[Callable[[], list[dict]]]:
    """`connection.reauth_required` events as the bus delivers them (a rule to an SQS queue)."""
    events, sqs = boto3.client("events", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    bus = aws.ref("EventBus")
    queue = sqs.create_queue(QueueName="reauth-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["bitbridge"], "detail-type": ["connection.reauth_required"]}
    events.put_rule(Name="reauth", EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="reauth", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"])["detail"] for m in messages]

    yield received


def _connection() -> ConnectionRecord:
    return ConnectionRecord.get(user_pk(USER), ConnectionRecord.sort_key(PROVIDER), consistent_read=True)


def _expire_in(seconds: int) -> None:
    _connection().update(actions=[ConnectionRecord.expires_at.set(int(time.time()) + seconds)])


def _fresh() -> tokens.Fresh:
    with acting_as("ApiFunction"):
        return tokens.fresh(USER, PROVIDER)


def _token_answers(emu: Emulator) -> int:
    return int(emu.stats.snapshot()["flavors"].get("datacenter", {}).get("endpoints", {}).get(f"POST {TOKEN_PATH}", 0))


def test_a_rotation_whose_answer_came_too_late_is_detected_and_explained(connected, reauth_events):
    emu = connected
    valid = _fresh().access_token
    _expire_in(60)  # inside the refresh window (300 s for an hour-long token), still valid
    fault = {"latency_ms": ANSWER_DELAY_MS, "late_answer": True, "path_prefix": TOKEN_PATH, "count": 1}
    requests.post(f"{emu.dc_url}/_emulator/faults", json=fault, timeout=5).raise_for_status()

    started = time.monotonic()
    assert _fresh().access_token == valid  # the refresh timed out: the still-valid token answers the call
    assert time.monotonic() - started < ANSWER_DELAY_MS / 1000
    assert _connection().refresh_unanswered_at is not None and _connection().status == "active"
    assert _token_answers(emu) == 2  # the code exchange, then the refresh Bitbucket carried out
    time.sleep(ANSWER_DELAY_MS / 1000)  # the emulator has rotated the refresh token by now

    with pytest.raises(tokens.ReauthRequired) as refused:
        _fresh()
    conn = _connection()
    assert conn.status == "reauth_required" and conn.refresh_unanswered_at is None
    assert "never reached bitbridge" in conn.status_detail and f"Connect {PROVIDER} again" in conn.status_detail
    assert refused.value.message == conn.status_detail
    # Later calls keep the explanation (the API's 409 carries it).
    with pytest.raises(tokens.ReauthRequired) as again:
        _fresh()
    assert again.value.message == conn.status_detail
    assert accounts.public_connection(conn)["status_detail"] == conn.status_detail

    (event,) = reauth_events()
    assert event["reason"] == tokens.LOST_ROTATION and event["provider"] == PROVIDER and event["user_id"] == USER
    assert "token" not in json.dumps({k: v for k, v in event.items() if k not in ("type", "reason")}).lower()


def test_a_refused_refresh_without_a_timeout_says_so(connected, reauth_events):
    emu = connected
    requests.post(f"{emu.dc_url}/_emulator/tokens/revoke", json={"user": "carol", "flavor": "datacenter"}, timeout=5)
    _expire_in(-10)
    with pytest.raises(tokens.ReauthRequired):
        _fresh()
    conn = _connection()
    assert conn.status == "reauth_required" and "revoked" in conn.status_detail
    assert "never reached" not in conn.status_detail
    (event,) = reauth_events()
    assert event["reason"] == tokens.REFRESH_REFUSED


def test_a_refresh_that_times_out_but_was_not_rotated_recovers_without_reauth(connected):
    # The refresh timed out, but Bitbucket never carried it out (the connection dropped before handling):
    # the refresh token still works, the next refresh succeeds and clears the mark, so a later,
    # unrelated refusal is not blamed on a lost rotation.
    emu = connected
    _expire_in(60)
    fault = {"latency_ms": ANSWER_DELAY_MS, "path_prefix": TOKEN_PATH, "count": 1, "drop_connection": True}
    requests.post(f"{emu.dc_url}/_emulator/faults", json=fault, timeout=5).raise_for_status()
    _fresh()
    assert _connection().refresh_unanswered_at is not None
    time.sleep(ANSWER_DELAY_MS / 1000)
    renewed = _fresh()
    assert renewed.expires_at > time.time() + 3000
    conn = _connection()
    assert conn.status == "active" and conn.refresh_unanswered_at is None and conn.status_detail is None
