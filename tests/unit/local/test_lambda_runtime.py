"""Lambda's limits in the local runtime: Timeout, reserved concurrency, the 6 MB response, and how
API Gateway answers each; and one request per invocation, as in a Lambda sandbox."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from moto import mock_aws
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from infra.local import iam
from infra.local.gateway import Gateway
from infra.local.lambda_runtime import (
    MAX_RESPONSE_BYTES,
    FunctionRunner,
    FunctionTimedOut,
    ResponseTooLarge,
    Throttled,
)
from infra.local.template import Function, Route

RELEASE = threading.Event()
AFTER_TIMEOUT: list[str] = []


def slow(event, context):
    time.sleep(event["sleep"])
    try:
        boto3.client("sqs", region_name="us-east-1").list_queues()
        AFTER_TIMEOUT.append("called AWS")
    except iam.InvocationAbandoned:
        AFTER_TIMEOUT.append("stopped")
    return {"statusCode": 200, "body": "late"}


def blocking(event, context):
    RELEASE.wait(5)
    return {"statusCode": 200, "body": "done"}


def big(event, context):
    return {"statusCode": 200, "body": "x" * event["size"]}


def _function(name: str, timeout: int = 3, reserved: int | None = None) -> Function:
    return Function(name, __name__, name, timeout=timeout, memory=128, reserved_concurrency=reserved)


def _get(gateway: Gateway, path: str) -> tuple[int, dict]:
    response = gateway.dispatch(Request(EnvironBuilder(path=path, method="GET").get_environ()))
    return response.status_code, json.loads(response.get_data())


def test_an_invocation_past_its_timeout_is_abandoned_and_stopped_at_its_next_aws_call():
    AFTER_TIMEOUT.clear()
    iam.install(None)
    # 3 s, not less: the in-time call below creates a boto3 client, which takes over a second on a loaded machine.
    runner = FunctionRunner({"slow": _function("slow", timeout=3)})
    with mock_aws():
        started = time.monotonic()
        with pytest.raises(FunctionTimedOut, match=r"Task timed out after 3\.00 seconds"):
            runner.invoke("slow", {"sleep": 5})
        assert time.monotonic() - started < 4.5  # the caller did not wait for the handler
        deadline = time.monotonic() + 15  # the abandoned thread wakes after 5 s (later on a busy machine)
        while not AFTER_TIMEOUT and time.monotonic() < deadline:
            time.sleep(0.05)
    assert AFTER_TIMEOUT == ["stopped"]
    # Within its time the same function answers.
    with mock_aws():
        assert runner.invoke("slow", {"sleep": 0})["body"] == "late"


def test_api_gateway_answers_500_for_a_timeout_and_an_oversized_response():
    runner = FunctionRunner({"slow": _function("slow", timeout=1), "big": _function("big")})
    gateway = Gateway([Route("GET", "/slow", "slow"), Route("GET", "/big", "big")], runner)
    assert _get(gateway, "/slow") == (500, {"message": "Internal Server Error"})
    with pytest.raises(ResponseTooLarge):
        runner.invoke("big", {"size": MAX_RESPONSE_BYTES})
    assert runner.invoke("big", {"size": 5 * 1024 * 1024})["body"].startswith("x")


def test_reserved_concurrency_throttles_the_invocations_beyond_it():
    RELEASE.clear()
    runner = FunctionRunner({"blocking": _function("blocking", reserved=1), "big": _function("big", reserved=0)})
    first = threading.Thread(target=runner.invoke, args=("blocking", {}))
    first.start()
    time.sleep(0.2)
    with pytest.raises(Throttled):
        runner.invoke("blocking", {})
    gateway = Gateway([Route("GET", "/b", "blocking")], runner)
    assert _get(gateway, "/b") == (500, {"message": "Internal Server Error"})  # as API Gateway maps Lambda's 429
    RELEASE.set()
    first.join()
    assert runner.invoke("blocking", {})["body"] == "done"  # the slot is free again
    with pytest.raises(Throttled):  # reserved concurrency 0: the function never runs
        runner.invoke("big", {"size": 1})


# Two HTTP API functions built on Powertools' resolver, as the API's functions are.
FIRST_APP, SECOND_APP = APIGatewayHttpResolver(), APIGatewayHttpResolver()
FIRST_ARRIVED, SECOND_DONE = threading.Event(), threading.Event()


@FIRST_APP.post("/first")
def _first_route() -> dict:
    FIRST_ARRIVED.set()
    SECOND_DONE.wait(5)  # meanwhile the other function resolves a request of its own
    return {"path": FIRST_APP.current_event.path, "body": FIRST_APP.current_event.json_body}


@SECOND_APP.get("/second")
def _second_route() -> dict:
    return {"path": SECOND_APP.current_event.path}


def first_resolver(event, context):
    return FIRST_APP.resolve(event, context)


def second_resolver(event, context):
    return SECOND_APP.resolve(event, context)


def test_concurrent_invocations_each_see_their_own_request():
    """On Lambda a sandbox handles one request at a time; here every function shares one process, so
    Powertools' per-class `current_event` must still be per invocation (a kickoff once read the console's
    concurrent GET and answered "The body must be a JSON object")."""
    runner = FunctionRunner({name: _function(name) for name in ("first_resolver", "second_resolver")})
    gateway = Gateway([Route("POST", "/first", "first_resolver"), Route("GET", "/second", "second_resolver")], runner)
    answers: list = []
    post = EnvironBuilder(path="/first", method="POST", json={"repositories": ["a/b"]}).get_environ()
    posting = threading.Thread(target=lambda: answers.append(gateway.dispatch(Request(post))))
    posting.start()
    assert FIRST_ARRIVED.wait(5)
    assert _get(gateway, "/second") == (200, {"path": "/second"})
    SECOND_DONE.set()
    posting.join(5)
    assert json.loads(answers[0].get_data()) == {"path": "/first", "body": {"repositories": ["a/b"]}}
