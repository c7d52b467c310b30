"""service.idempotency on moto, as ServiceApiFunction (its policy enforced): one run per key, the first answer
kept and replayed, another request under the same key refused, a running call not run twice, a refusal kept,
a failure without an answer released."""

from __future__ import annotations

import pytest

from bitbridge.bitbucket.actions import refused
from bitbridge.errors import Problem
from bitbridge.service.errors import ServiceRefused
from bitbridge.service.idempotency import Answer, check_key, once
from infra.local import iam

pytestmark = pytest.mark.usefixtures("aws")


def test_a_key_runs_once_and_its_answer_is_replayed() -> None:
    runs: list[int] = []

    def act() -> Answer:
        runs.append(1)
        return Answer(201, {"id": len(runs)})

    with iam.acting_as("ServiceApiFunction"):
        first = once("prod", "k-1", "request-a", act)
        again = once("prod", "k-1", "request-a", act)
        other_client = once("someone-else", "k-1", "request-a", act)
    assert (first.status, first.body, first.replayed) == (201, {"id": 1}, False)
    assert (again.status, again.body, again.replayed) == (201, {"id": 1}, True)
    assert other_client.body == {"id": 2}  # keys are per client
    assert len(runs) == 2


def test_another_request_under_the_same_key_is_refused() -> None:
    with iam.acting_as("ServiceApiFunction"):
        once("prod", "k-2", "request-a", lambda: Answer(200, {}))
        with pytest.raises(ServiceRefused) as reused:
            once("prod", "k-2", "request-b", lambda: Answer(200, {}))
    assert reused.value.code == "idempotency_key_reused"


def test_a_call_still_running_is_not_run_again() -> None:
    def act() -> Answer:
        with pytest.raises(ServiceRefused) as running:
            once("prod", "k-3", "request-a", lambda: Answer(200, {"twice": True}))
        assert running.value.code == "idempotency_in_progress"
        return Answer(200, {"once": True})

    with iam.acting_as("ServiceApiFunction"):
        assert once("prod", "k-3", "request-a", act).body == {"once": True}


def test_bitbuckets_refusal_is_kept_and_a_failure_without_an_answer_is_released() -> None:
    def refuses() -> Answer:
        raise refused("merge_conflict", "conflicts", paths=["a.txt"])

    def fails() -> Answer:
        raise ConnectionError("Bitbucket did not answer")

    with iam.acting_as("ServiceApiFunction"):
        for _ in range(2):
            with pytest.raises(Problem) as conflict:
                once("prod", "k-4", "merge", refuses)
            assert conflict.value.code == "merge_conflict" and conflict.value.details == {"paths": ["a.txt"]}
        with pytest.raises(ConnectionError):
            once("prod", "k-5", "comment", fails)
        assert once("prod", "k-5", "comment", lambda: Answer(201, {"id": 9})).body == {"id": 9}  # ran again


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 256, "é"])
def test_malformed_keys_are_a_clear_400(key: str) -> None:
    with pytest.raises(ServiceRefused) as bad:
        check_key(key)
    assert bad.value.code == "invalid_idempotency_key"
