"""The token refresh's arithmetic (`bitbridge.tokens`): the promise capped by the provider's lifetime, the
refresh window, a refresh's timeouts within its invocation and its lease, and who may refresh in place."""

from __future__ import annotations

import time

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from bitbridge import deadlines, tokens
from bitbridge.bitbucket.api import for_flavor
from bitbridge.service.api import TOKEN_MIN_VALIDITY_SECONDS
from infra.local.template import functions, load_template


@pytest.mark.parametrize(
    ("asked", "lifetime", "promise", "refresh_at"),
    [
        (300, 7200, 300, 600),  # Cloud's 2 h tokens: the whole ask, refreshed 10 minutes ahead
        (300, 3600, 300, 600),  # Data Center's hour
        (300, 300, 150, 250),  # issue 24: 300 s tokens were refreshed on every call
        (300, 240, 120, 200),
        (300, 60, 30, 50),
        (5, 3600, 5, 305),  # the console, the worker, the reconciler
        (5, 60, 5, 25),
        (300, None, 300, 600),  # the provider did not say: an hour
    ],
)
def test_the_promise_is_capped_by_half_the_lifetime_and_refreshed_a_window_ahead(asked, lifetime, promise, refresh_at):
    assert tokens.term(asked, lifetime) == tokens.Term(promise, refresh_at)


@settings(max_examples=500, deadline=None, database=None)
@given(asked=st.floats(0, 4000), lifetime=st.floats(10, 100_000))
def test_a_new_token_keeps_any_promise_and_serves_a_window_before_its_refresh(asked, lifetime):
    term = tokens.term(asked, lifetime)
    assert term.promise <= max(tokens.STILL_GOOD_SECONDS, asked, lifetime / 2)
    assert term.promise <= max(tokens.STILL_GOOD_SECONDS, lifetime / 2)
    assert term.promise >= min(asked, lifetime / 2, tokens.STILL_GOOD_SECONDS)
    # A refresh is due a window before the token falls short of its promise: callers never wait for it...
    assert 0 < term.refresh_at - term.promise <= tokens.REFRESH_AHEAD_SECONDS + 1e-9
    # ...and a token just refreshed is not due again at once (one refresh per window).
    assert lifetime > term.refresh_at


def test_the_service_promise_is_what_the_docs_say():
    assert TOKEN_MIN_VALIDITY_SECONDS == 300 and tokens.PROMISE_FRACTION == 1 / 2


def test_a_refresh_waits_as_long_as_its_lease_and_stores_the_answer_inside_it():
    connect, read = tokens.token_timeout(None)
    assert connect + read + tokens.STORE_SECONDS + tokens.ANSWER_MARGIN <= tokens.LEASE_SECONDS
    assert read >= 30  # far beyond a healthy token endpoint: what Bitbucket answers within the lease is read


@settings(max_examples=500, deadline=None, database=None)
@given(time_left=st.floats(3.5, 900))
def test_a_refresh_never_outlives_its_invocation(time_left):
    connect, read = tokens.token_timeout(time_left)
    assert connect > 0 and read > 0
    assert connect + read + tokens.STORE_SECONDS + tokens.ANSWER_MARGIN <= time_left + 1e-9
    assert (connect, read) <= tokens.token_timeout(None)


def test_only_an_invocation_that_outlives_a_whole_lease_refreshes_in_place():
    assert tokens.outlives_lease(None)  # the command line: nothing stops it
    assert tokens.outlives_lease(time.monotonic() + 300)
    assert not tokens.outlives_lease(time.monotonic() + 29)
    assert not tokens.outlives_lease(time.monotonic() + 10)


def test_the_functions_that_hand_refreshes_over_and_the_one_that_takes_them():
    fns = functions(load_template())
    whole_lease = tokens.LEASE_SECONDS + tokens.ANSWER_MARGIN
    assert fns["TokenRefreshFunction"].timeout >= whole_lease  # every refresh handed over fits
    for short in ("ApiFunction", "ImportKickoffFunction", "ServiceApiFunction"):
        assert fns[short].timeout < whole_lease, short  # they hand over (and never wait past their end)
    for long in ("ImportWorkerFunction", "ReconcilerFunction", "GitSyncFunction"):
        assert fns[long].timeout >= whole_lease, long


class _Context:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_the_invocation_end_is_known_inside_a_handler_only():
    assert deadlines.ends() is None
    with deadlines.within(_Context(10_000)):
        left = deadlines.left(deadlines.ends())
        assert left is not None and 9 < left <= 10
        with deadlines.within(object()):  # no Lambda context: unbounded
            assert deadlines.ends() is None
        assert deadlines.ends() is not None
    assert deadlines.ends() is None


@pytest.mark.parametrize(
    ("failure", "carried_out"),
    [
        (requests.ConnectTimeout(), False),
        (requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))), False),
        (requests.ReadTimeout(), True),  # sent: Bitbucket may have rotated in an answer we never read
        (requests.ConnectionError(ProtocolError("Connection aborted.")), True),
        (requests.exceptions.ChunkedEncodingError(), True),
    ],
)
def test_a_refresh_that_may_have_reached_bitbucket_is_recorded_as_unanswered(failure, carried_out):
    assert tokens._may_have_been_carried_out(failure) is carried_out


@pytest.mark.parametrize(
    ("wanted", "granted", "missing"),
    [
        (["REPO_ADMIN"], {"REPO_ADMIN"}, []),
        (["REPO_READ"], {"REPO_ADMIN"}, []),  # hierarchical: admin implies read
        (["REPO_ADMIN", "PROJECT_ADMIN"], {"REPO_ADMIN"}, ["PROJECT_ADMIN"]),  # widened: marked
        (["REPO_ADMIN"], {"PROJECT_ADMIN"}, []),
        (["REPO_ADMIN"], set(), ["REPO_ADMIN"]),
        (["ACCOUNT_WRITE"], {"PROJECT_ADMIN"}, ["ACCOUNT_WRITE"]),  # outside the chain: only itself
    ],
)
def test_data_center_scopes_imply_the_ones_below_them(wanted, granted, missing):
    assert for_flavor("datacenter").missing_scopes(wanted, granted) == missing


def test_cloud_scopes_widened_are_missing_from_an_older_grant():
    cloud = for_flavor("cloud")
    granted = {"account", "email", "repository", "pullrequest", "issue", "webhook"}
    assert cloud.missing_scopes([*granted, "pipeline"], granted) == ["pipeline"]
    assert cloud.missing_scopes(["repository:write"], {"repository:write"}) == []
