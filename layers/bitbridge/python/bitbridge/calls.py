"""Calling Bitbucket as a person: every REST call bitbridge makes goes through one function, `Caller.send`.

Imports, the reconciler, the console's listing and connection check, the kickoff's access checks, hook
install and repair, the service proxy and the sign-in's identity read all build a `Caller` and call
through it. `send` is where a call's cost is known - whose allowance it spends (the caller's person and
provider), which resource class (Cloud: repositories, webhooks, raw, git) and whose priority (a person
waiting, or background work) - and where Bitbucket's answer is first seen, so a shared rate-limit budget
is acquired before the HTTP request and recorded after it there, and nowhere else.

What `send` does for every caller, by one rule:
- the token comes from the sign-in core (`tokens.fresh`, read again once it is due for a refresh, so
  refresh-ahead happens, and at least every minute) or from the caller's own source (the service API's
  token cache); a refresh never outlives the invocation that made the caller (`deadlines`);
- a 401 refreshes the token once (`stale=`: refreshed even when its recorded expiry says it is good) and
  the call is sent again; a second 401 is Bitbucket's answer;
- 5xx and network failures of idempotent methods are retried `Patience.transient_retries` times with
  backoff; 429s are waited out in line up to `Patience.rate_limit_seconds` (Retry-After, else 1, 2, 4,
  8 s), after which Bitbucket's 429 is the answer (the worker defers, the API answers 429).
The decision is the pure `plan_retry`; every attempt is counted (`Caller.calls`, and the metering of
`bitbucket.http.send`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from bitbridge import deadlines, tokens
from bitbridge.bitbucket.http import BitbucketError, raise_for_status, send
from bitbridge.store.providers import ProviderRecord

#: Whose call it is, for a budget that serves people before background work.
INTERACTIVE = "interactive"  # a person waits on the answer: console, kickoff, service API, command line
BACKGROUND = "background"  # nobody waits: the import worker, the reconciler
#: Resource classes a call names where its caller knows it (the rest are judged from the URL).
WEBHOOKS = "webhooks"
GIT = "git"  # git over HTTPS (Cloud counts it in its own allowance: 60,000 an hour)

TOKEN_REUSE_SECONDS = 60  # re-read the stored token at least this often
TOKEN_RECHECK_SECONDS = 2  # while its refresh runs elsewhere, re-read a token no more often than this
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
DEFAULT_RATE_LIMIT_WAIT = 1.0  # Cloud's 429 may carry no Retry-After: 1, 2, 4, 8 s


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half (attempt counts from 1)."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security


@dataclass(frozen=True)
class Patience:
    """How long a caller waits out Bitbucket's transient answers before they become its answer."""

    transient_retries: int = 2  # 5xx and network failures, idempotent methods only
    retry_base: float = 0.5  # backoff(attempt, retry_base, retry_cap) between them
    retry_cap: float = 8.0
    rate_limit_seconds: float = 0.0  # 429s waited in line, in all (0: the 429 is answered at once)


@dataclass
class Attempts:
    refreshed: bool = False
    transient: int = 0
    rate_limited: int = 0
    waited: float = 0.0


@dataclass(frozen=True)
class Decision:
    retry: bool
    wait: float = 0.0
    refresh: bool = False


def retry_after_seconds(header: str | None) -> float | None:
    if header and header.strip().replace(".", "", 1).isdigit():
        return float(header.strip())
    return None


def plan_retry(
    method: str, status: int, retry_after: str | None, attempts: Attempts, patience: Patience, can_refresh: bool = True
) -> Decision:
    """What to do after Bitbucket answered `status` (pure: the caller sleeps and counts)."""
    if status == 401 and can_refresh and not attempts.refreshed:
        return Decision(True, refresh=True)
    if status == 429:
        wait = retry_after_seconds(retry_after)
        wait = DEFAULT_RATE_LIMIT_WAIT * (2 ** min(attempts.rate_limited, 3)) if wait is None else wait
        if attempts.waited + wait <= patience.rate_limit_seconds:
            return Decision(True, wait=wait)
        return Decision(False)  # the caller gets the 429 and its Retry-After
    if status >= 500 and method in IDEMPOTENT and attempts.transient < patience.transient_retries:
        return Decision(True, wait=backoff(attempts.transient + 1, patience.retry_base, patience.retry_cap))
    return Decision(False)


#: A caller's own token source: `source(None)` is the token to use, `source(refused)` a refreshed one.
TokenSource = Callable[[str | None], str]


class Caller:
    """One person's calls to one provider (`user_id` None: a bare token, as at sign-in before the
    person is known; it cannot be refreshed)."""

    def __init__(
        self,
        user_id: str | None,
        provider: ProviderRecord,
        *,
        priority: str,
        patience: Patience = Patience(),
        token_source: TokenSource | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.user_id = user_id
        self.provider = provider
        self.priority = priority
        self.patience = patience
        self.sleep = sleep
        self.calls = 0
        self._source = token_source
        self._lock = threading.Lock()
        self._token: str | None = None
        self._reuse_until = 0.0  # epoch seconds: read the token again from then on
        self._ends = deadlines.ends()  # the invocation this caller works for: no refresh outlives it

    @classmethod
    def with_token(cls, provider: ProviderRecord, token: str, *, priority: str = INTERACTIVE) -> Caller:
        """A caller for a token that belongs to nobody bitbridge knows yet (sign-in's identity read)."""
        caller = cls(None, provider, priority=priority, patience=Patience(transient_retries=0))
        caller._token, caller._reuse_until = token, float("inf")
        return caller

    def fork(self) -> Caller:
        """A caller with its own call count that starts from this one's token (one token read for many)."""
        other = Caller(
            self.user_id,
            self.provider,
            priority=self.priority,
            patience=self.patience,
            token_source=self._source,
            sleep=self.sleep,
        )
        other._token, other._reuse_until, other._ends = self._token, self._reuse_until, self._ends
        return other

    def prime(self) -> None:
        """Read the token now (so forks share it)."""
        self.token()

    @property
    def api(self) -> str:
        return str(self.provider.api_url).rstrip("/")

    # -- tokens ------------------------------------------------------------------------------------
    def token(self) -> str:
        """The token this caller uses now (read again once due for a refresh, so it is refreshed ahead of
        expiry under the connection's lease as for any call)."""
        if self._token is None or time.time() >= self._reuse_until:
            self._token = self._read(None)
        return self._token

    def _can_refresh(self) -> bool:
        return self._source is not None or self.user_id is not None

    def _refreshed(self, refused: str) -> str:
        """Bitbucket refused `refused` before its recorded expiry (expired early or revoked): refresh once."""
        self._token = self._read(refused)
        return self._token

    def _read(self, stale: str | None) -> str:
        now = time.time()
        if self._source is not None:
            self._reuse_until = now + TOKEN_REUSE_SECONDS
            return self._source(stale)
        assert self.user_id is not None, "a bare-token caller has no connection to read"
        got = tokens.fresh(self.user_id, self.provider.provider_id, stale=stale, ends=self._ends)
        # Until it is due for a refresh (while one runs elsewhere, a moment), and never past its promise.
        due = max(got.refresh_due_at, now + TOKEN_RECHECK_SECONDS)
        self._reuse_until = min(now + TOKEN_REUSE_SECONDS, due, got.expires_at - tokens.STILL_GOOD_SECONDS)
        return got.access_token

    # -- the one call ------------------------------------------------------------------------------
    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        resource: str | None = None,
        refresh_on_401: bool = True,
        **request: Any,
    ) -> requests.Response:
        """Every REST call to Bitbucket, as this caller: Bitbucket's final answer, whatever its status.
        `request`: what `bitbucket.http.send` takes (params, json, data, headers, stream, allow_redirects).

        `resource` names the call's rate-limit class where the caller knows it (Cloud: "repositories",
        "webhooks", "raw", "git"; None: judged from the URL when a budget needs it). A shared budget
        acquires here, before each attempt (`self.user_id`, `self.provider`, `resource`, `self.priority`),
        and records Bitbucket's answer (status, rate-limit headers) right after it.
        `refresh_on_401=False` where a 401 means "not allowed" rather than "stale token" (Data Center's
        hook endpoints answer 401 to a user without admin rights). Raises BitbucketError (transient)
        when Bitbucket could not be reached after the retries."""
        attempts = Attempts()
        token = self.token()
        can_refresh = refresh_on_401 and self._can_refresh()
        while True:
            with self._lock:
                self.calls += 1
            try:
                response = send(method, url, token, **request)
            except requests.RequestException as exc:
                if method in IDEMPOTENT and attempts.transient < self.patience.transient_retries:
                    attempts.transient += 1
                    self.sleep(backoff(attempts.transient, self.patience.retry_base, self.patience.retry_cap))
                    continue
                raise BitbucketError(f"{what}: {type(exc).__name__} talking to Bitbucket") from None
            decision = plan_retry(
                method, response.status_code, response.headers.get("Retry-After"), attempts, self.patience, can_refresh
            )
            if not decision.retry:
                return response
            response.close()
            if decision.refresh:
                attempts.refreshed = True
                token = self._refreshed(token)
                continue
            if response.status_code == 429:
                attempts.rate_limited += 1
                attempts.waited += decision.wait
            else:
                attempts.transient += 1
            self.sleep(decision.wait)

    # -- what callers use ---------------------------------------------------------------------------
    def call(self, method: str, url: str, what: str, **options: Any) -> requests.Response:
        """`send` (the same options), with Bitbucket's errors raised (`bitbucket.http.raise_for_status`): a 401
        that a refresh did not cure is `tokens.ReauthRequired` for a person's connection."""
        response = self.send(method, url, what=what, **options)
        if response.status_code == 401 and options.get("refresh_on_401", True) and self.user_id is not None:
            # Refused again after a refresh: final, the user must connect again.
            raise tokens.ReauthRequired(self.provider.provider_id)
        raise_for_status(response, what)
        return response

    def get(self, url: str, what: str, params: dict[str, Any] | None = None) -> requests.Response:
        return self.call("GET", url, what, params=params)

    def fetch(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """GET JSON (`bitbucket.repos.Fetch`): what the flavors' listing and paging functions take."""
        try:
            return self.get(url, "reading from Bitbucket", params).json()
        except ValueError:
            raise BitbucketError("reading from Bitbucket: the answer was not JSON") from None
