"""The one way to Bitbucket (`bitbridge.calls`): what is retried, refreshed or answered, for every caller."""

from __future__ import annotations

from bitbridge import calls
from bitbridge.service import proxy

PROXY = proxy.PATIENCE
IMPORTS = calls.Patience()  # the import worker's and the reconciler's


def test_401_is_refreshed_once_then_answered():
    attempts = calls.Attempts()
    first = calls.plan_retry("POST", 401, None, attempts, PROXY)
    assert first.retry and first.refresh
    attempts.refreshed = True
    assert not calls.plan_retry("POST", 401, None, attempts, PROXY).retry


def test_a_caller_that_cannot_refresh_answers_the_first_401():
    assert not calls.plan_retry("GET", 401, None, calls.Attempts(), PROXY, can_refresh=False).retry


def test_429_waits_retry_after_within_the_proxy_budget_for_any_method():
    attempts = calls.Attempts()
    decision = calls.plan_retry("POST", 429, "3", attempts, PROXY)
    assert decision.retry and decision.wait == 3.0
    attempts.waited = 8.0
    assert not calls.plan_retry("GET", 429, "3", attempts, PROXY).retry  # over the budget: the 429 goes back
    no_header = calls.plan_retry("GET", 429, None, calls.Attempts(), PROXY)
    assert no_header.retry and no_header.wait == calls.DEFAULT_RATE_LIMIT_WAIT


def test_background_callers_answer_a_429_at_once_their_owner_defers():
    assert not calls.plan_retry("GET", 429, "1", calls.Attempts(), IMPORTS).retry


def test_5xx_retried_a_bounded_number_of_times_for_idempotent_methods_only():
    for patience in (PROXY, IMPORTS):
        attempts = calls.Attempts()
        for _ in range(patience.transient_retries):
            decision = calls.plan_retry("GET", 503, None, attempts, patience)
            assert decision.retry and 0 < decision.wait <= patience.retry_cap
            attempts.transient += 1
        assert not calls.plan_retry("GET", 503, None, attempts, patience).retry
        assert not calls.plan_retry("POST", 503, None, calls.Attempts(), patience).retry
        assert calls.plan_retry("DELETE", 500, None, calls.Attempts(), patience).retry
        assert not calls.plan_retry("GET", 404, None, calls.Attempts(), patience).retry


def test_backoff_grows_and_stays_under_its_cap():
    for attempt in range(1, 8):
        delay = calls.backoff(attempt, 0.5, 8.0)
        assert min(8.0, 0.5 * 2 ** (attempt - 1)) / 2 <= delay <= min(8.0, 0.5 * 2 ** (attempt - 1))
