"""A property of the token refresh, over (token lifetime, burst size, token-endpoint delay, the service
function's Timeout, whether the token is still good or already expired), through the local stack's runtime
in-process (moto with IAM, the API Gateway emulation over HTTP, Lambda Timeouts, TokenRefreshFunction on its
queue) and the Data Center emulator over real HTTP:

- at most one refresh per window: a burst of token vends or proxied calls when the token is due makes
  exactly one token request, and calls right after it make none;
- no 500: every caller is answered 200, or - only when its token had expired and the refresh outlasted its
  own function - a clear 503 `bitbucket_unavailable`; a caller whose token was still good gets it;
- no connection lost while Bitbucket answers within the lease: the new tokens are stored, the connection
  stays active, nothing is marked unanswered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bitbridge import tokens
from bitbridge.service.api import TOKEN_MIN_VALIDITY_SECONDS
from infra.emulator import Emulator
from tests.integration.token_stack import TokenStack

EXAMPLES = 15


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(cloud_port=0, dc_port=0, seed=True)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def stack(aws, emulator) -> Iterator[TokenStack]:
    running = TokenStack(aws, emulator)
    running.emulator_config(rate_limits_enabled=False)
    person = running.connect()
    running.vend(person)  # the service function's cold start, outside the examples' Timeouts
    yield running
    running.stop()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],  # an example takes seconds: report it as found, unshrunk
)
@given(
    lifetime=st.integers(60, 7200),
    burst=st.integers(1, 25),
    delay_ms=st.integers(0, 6000),
    timeout=st.integers(5, 12),
    expired=st.booleans(),
    path=st.sampled_from(["vend", "proxy"]),
)
# The token endpoint slower than the caller's function: a still-good token answers; an expired one waits
# for the refresh at most its function's time, then 503, and the refresh lands all the same.
@example(lifetime=300, burst=25, delay_ms=7000, timeout=5, expired=False, path="vend")
@example(lifetime=60, burst=10, delay_ms=7000, timeout=5, expired=True, path="proxy")
def test_one_refresh_per_window_no_500_and_no_connection_lost(stack, lifetime, burst, delay_ms, timeout, expired, path):
    stack.token_endpoint()
    stack.emulator_config(dc_access_token_lifetime=lifetime)
    person = stack.connect()
    stack.set_timeout("ServiceApiFunction", timeout)
    if delay_ms:
        stack.token_endpoint(latency_ms=delay_ms)  # every refresh from now on, not the code exchange above
    term = tokens.term(TOKEN_MIN_VALIDITY_SECONDS, lifetime)
    stack.age(person, -5 if expired else term.refresh_at - 1)  # expired, or due and still keeping its promise
    aged = person.record().expires_at
    call = stack.vend if path == "vend" else stack.proxy
    before = stack.token_requests()

    with ThreadPoolExecutor(burst) as pool:
        answers = list(pool.map(lambda _: call(person), range(burst)))

    statuses = [a.status_code for a in answers]
    if expired:
        assert set(statuses) <= {200, 503}, [a.text[:200] for a in answers]
        assert all(a.json()["error"]["code"] == "bitbucket_unavailable" for a in answers if a.status_code == 503)
    else:
        assert statuses == [200] * burst, [a.text[:200] for a in answers]
    record = stack.wait_until(person, lambda r: r.status != "active" or r.expires_at > aged, delay_ms / 1000 + 20)
    assert record.status == "active" and record.refresh_unanswered_at is None and record.refresh_sent_at is None
    assert record.expires_at > time.time() + lifetime / 2  # the new tokens are stored
    assert stack.token_requests() == before + 1

    again = [call(person).status_code for _ in range(3)]  # the same window: served by the new token
    assert again == [200] * 3
    assert stack.token_requests() == before + 1
