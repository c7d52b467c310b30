"""Token refreshes through the local stack's runtime (in-process: moto with each function's IAM policy, the
API Gateway emulation over HTTP, the Lambda runtime's Timeouts, TokenRefreshFunction on its SQS event source)
against the Data Center emulator over real HTTP.

- A caller whose token keeps its promise gets it at once, whatever the token endpoint's delay and its own
  function's Timeout; the refresh is carried out once, by TokenRefreshFunction.
- A rotation whose answer came after the refresher stopped reading is named `refresh_answer_lost` on the
  service path and the console's path alike, and so is one whose refresher was stopped mid-way (the
  write-ahead mark); a refresh token refused without either says `refresh_token_refused`; a refresh that
  timed out but was never carried out recovers without a reconnect.
- Widening the provider's scopes: refreshes keep the grant's scopes (no 503), the connection is marked
  `scopes_outdated` and announced once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests

from bitbridge import providers, sessions, tokens
from infra.emulator import Emulator
from infra.local.lambda_runtime import FunctionRunner, FunctionTimedOut
from tests.integration.token_stack import Connected, TokenStack, events_queue

LATE_MS = 2500  # the token endpoint's answer comes this late...
REFRESHER_TIMEOUT = 5  # ...after a refresher this short stops reading (its read timeout: about 1 s)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(cloud_port=0, dc_port=0, seed=True)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def stack(aws, emulator) -> Iterator[TokenStack]:
    emulator.reset(seed=True)
    running = TokenStack(aws, emulator)
    running.emulator_config(rate_limits_enabled=False)
    yield running
    running.stop()


def _console(stack: TokenStack, person: Connected) -> requests.Response:
    """The console's connection check (ApiFunction): a fresh token, then who Bitbucket says it is."""
    cookie = f"bitbridge_session={sessions.issue(person.user_id)[0]}"
    url = f"{stack.api}/api/connections/{person.provider}"
    return requests.get(url, headers={"Cookie": cookie}, timeout=60)


CALLS = {"service": TokenStack.vend, "console": _console}


def test_callers_with_a_valid_token_get_it_at_once_while_a_slower_refresh_runs_elsewhere(stack):
    stack.set_timeout("ServiceApiFunction", 3)  # shorter than the token endpoint's answer
    person = stack.connect()
    stack.token_endpoint(latency_ms=6000)  # every refresh from now on, not the code exchange above
    stack.age(person, 500)  # due (promise 300 s + window 300 s), still good for its promise
    before = stack.token_requests()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stack.vend(person), range(8)))
    took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 8, [a.text[:200] for a in answers]
    (held,) = {a.json()["access_token"] for a in answers}
    # A caller that waited for the refresh would take at least the endpoint's 6 s, whatever the load.
    assert took < 6, f"callers waited for the refresh ({took:.1f} s)"

    record = stack.wait_until(person, lambda r: r.expires_at > time.time() + 3000, timeout=20)
    assert record.expires_at > time.time() + 3000 and record.status == "active"
    assert stack.token_requests() == before + 1
    assert stack.vend(person).json()["access_token"] != held


@pytest.mark.parametrize("path", sorted(CALLS))
def test_a_rotation_answered_after_the_refresher_stopped_reading_is_named_on_every_path(stack, aws, path):
    call = CALLS[path]
    received = events_queue(aws, ["connection.reauth_required"])
    stack.set_timeout("TokenRefreshFunction", REFRESHER_TIMEOUT)
    person = stack.connect()
    stack.age(person, 500 if path == "service" else 200)  # due for the path's caller, still keeps its promise
    stack.token_endpoint(latency_ms=LATE_MS, late_answer=True, count=1)

    assert call(stack, person).status_code == 200  # the valid token answers; the refresh was handed over
    record = stack.wait_until(person, lambda r: r.refresh_unanswered_at is not None, timeout=15)
    assert record.refresh_unanswered_at is not None and record.status == "active"
    assert stack.token_requests() == 2  # the code exchange, and the refresh the emulator carried out
    time.sleep(LATE_MS / 1000 + tokens.RETRY_SECONDS)  # rotated by now; the failed refresh's pause is over

    assert call(stack, person).status_code == 200  # still valid: answers while the next refresh is refused
    record = stack.wait_until(person, lambda r: r.status != "active", timeout=15)
    assert record.status == "reauth_required" and record.status_reason == tokens.LOST_ROTATION
    assert "never reached bitbridge" in record.status_detail

    refused = call(stack, person)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "reauth_required" and error["reason"] == tokens.LOST_ROTATION
    assert error["detail"] == record.status_detail and error["connect_url"]
    (event,) = [e["detail"] for e in received()]
    assert event["reason"] == tokens.LOST_ROTATION and event["user_id"] == person.user_id


def refresh_without_a_deadline(event, context):
    """A refresher that ignores its invocation's end (never `deadlines.within`): Lambda stops it mid-way."""
    asked = json.loads(event["body"])
    tokens.fresh(asked["user_id"], asked["provider_id"])


def test_a_refresher_stopped_mid_way_leaves_the_rotation_explained(stack, aws):
    """The outcome is recorded before the function can be killed: the write-ahead mark survives the kill,
    so the next refresh's invalid_grant is a lost rotation, not a refusal."""
    received = events_queue(aws, ["connection.reauth_required"])
    person = stack.connect()
    stack.age(person, -10)  # expired: the caller refreshes itself (no deadline known to it)
    stack.token_endpoint(latency_ms=LATE_MS, late_answer=True, count=1)
    doomed = replace(stack.functions["TokenRefreshFunction"], module=__name__, handler="refresh_without_a_deadline")
    runner = FunctionRunner({"TokenRefreshFunction": replace(doomed, timeout=1.5)})  # its own policy still
    body = json.dumps({"user_id": person.user_id, "provider_id": person.provider})
    with pytest.raises(FunctionTimedOut):
        runner.invoke("TokenRefreshFunction", {"body": body})
    time.sleep(LATE_MS / 1000)  # Bitbucket rotated; the abandoned thread is stopped at its next AWS call
    record = stack.wait_until(person, lambda r: False, timeout=1)
    assert record.refresh_sent_at is not None and record.refresh_unanswered_at is None
    assert record.expires_at < time.time()  # nothing of the answer was stored

    stack.end_lease(person)  # as the 45 s the stopped refresher's lease still had would
    refused = stack.vend(person)  # no valid token: waits for the handed-over refresh, which is refused
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["reason"] == tokens.LOST_ROTATION
    record = person.record()
    assert record.status_reason == tokens.LOST_ROTATION and record.refresh_sent_at is None
    (event,) = [e["detail"] for e in received()]
    assert event["reason"] == tokens.LOST_ROTATION


def test_a_refresh_token_refused_without_a_timeout_says_so(stack, aws):
    received = events_queue(aws, ["connection.reauth_required"])
    person = stack.connect()
    control = f"{stack.emulator.dc_url}/_emulator/tokens/revoke"
    requests.post(control, json={"user": "carol", "flavor": "datacenter"}, timeout=5).raise_for_status()
    stack.age(person, -10)
    refused = stack.vend(person)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["reason"] == tokens.REFRESH_REFUSED and "revoked" in error["detail"]
    assert "never reached" not in error["detail"]
    (event,) = [e["detail"] for e in received()]
    assert event["reason"] == tokens.REFRESH_REFUSED


def test_a_refresh_that_timed_out_but_was_never_carried_out_recovers(stack):
    stack.set_timeout("TokenRefreshFunction", REFRESHER_TIMEOUT)
    person = stack.connect()
    stack.age(person, 500)
    # The connection drops before the emulator handles the request: nothing rotated.
    stack.token_endpoint(latency_ms=LATE_MS, drop_connection=True, count=1)
    assert stack.vend(person).status_code == 200
    assert stack.wait_until(person, lambda r: r.refresh_unanswered_at is not None, 15).refresh_unanswered_at
    time.sleep(LATE_MS / 1000 + tokens.RETRY_SECONDS)
    assert stack.vend(person).status_code == 200
    record = stack.wait_until(person, lambda r: r.expires_at > time.time() + 3000, timeout=15)
    assert record.status == "active" and record.expires_at > time.time() + 3000
    assert record.refresh_unanswered_at is None and record.status_detail is None


def test_widened_scopes_keep_refreshing_with_the_grant_and_mark_the_connection(stack, aws):
    received = events_queue(aws, ["connection.scopes_outdated"])
    person = stack.connect()
    providers.update_provider(stack.provider, scopes="REPO_ADMIN PROJECT_ADMIN")
    stack.age(person, -10)  # expired: the vend waits for the refresh

    answer = stack.vend(person)
    assert answer.status_code == 200, answer.text  # not 503: the refresh asked for no new scope
    record = person.record()
    assert record.status == "active" and record.missing_scopes == "PROJECT_ADMIN"
    assert record.scopes == "REPO_ADMIN"
    shown = requests.get(
        f"{stack.api}/service/v1/connections/{person.provider}/{person.end_user}",
        headers={"Authorization": f"Bearer {person.key}"},
        timeout=10,
    ).json()
    assert shown["scopes_outdated"] is True and shown["missing_scopes"] == ["PROJECT_ADMIN"]

    stack.age(person, -10)  # a second refresh finds it still outdated: announced once
    assert stack.vend(person).status_code == 200
    (event,) = [e["detail"] for e in received()]
    assert event["type"] == "connection.scopes_outdated" and event["missing_scopes"] == ["PROJECT_ADMIN"]
    assert event["granted_scopes"] == ["REPO_ADMIN"] and event["end_user_id"] == person.end_user
