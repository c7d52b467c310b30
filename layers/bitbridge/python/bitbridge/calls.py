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
  8 s), after which Bitbucket's 429 is the answer (the worker defers, the API answers 429);
- every attempt first spends one call of the person's budget for its resource class (`bitbridge.budget`:
  the provider's limits, the caller's priority). A person waits a few seconds at most for room, then gets
  `budget.OverBudget` (bitbridge's own 429 `rate_limited` with `retry_after`); background work gets it at
  once and waits outside the Lambda. A 429 from Bitbucket anyway shrinks the budget and is counted; the
  call is then tried again through the budget (which usually sends it to wait).
The decision is the pure `plan_retry`; every attempt is counted (`Caller.calls`, and the metering of
`bitbucket.http.send`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError

from bitbridge import budget, deadlines, providers, tokens
from bitbridge.bitbucket.http import BitbucketError, raise_for_status, send
from bitbridge.bitbucket.limits import GIT, REPOSITORIES, WEBHOOKS, Limits
from bitbridge.budget import INTERACTIVE, PRIORITIES, Shape
from bitbridge.store.budget import BudgetKey
from bitbridge.store.providers import ProviderRecord

#: Resource classes a call may name where its caller knows it before the URL (the rest are judged from it).
RESOURCES = (REPOSITORIES, WEBHOOKS, GIT)
RATE_LIMITED_RETRIES = 2  # a budgeted call met by Bitbucket's 429 goes back through the budget this often

log = logging.getLogger(__name__)
AWS_FAILURES = (BotoCoreError, ClientError)  # the budget's table unreachable or failing

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
        resuming: bool = False,
        queues: bool = True,
    ) -> None:
        assert priority in PRIORITIES, priority
        self.user_id = user_id
        self.provider = provider
        self.priority = priority
        self.patience = patience
        self.sleep = sleep
        self.resuming = resuming  # background work back from a wait for budget (it leaves the queue)
        self.queues = queues  # refused background work comes back at its slot (False: it gives up)
        self.calls = 0
        self.budget_waited = 0.0  # seconds this caller's calls waited for room in the budget
        self._source = token_source
        self._lock = threading.Lock()
        self._token: str | None = None
        self._reuse_until = 0.0  # epoch seconds: read the token again from then on
        self._ends = deadlines.ends()  # the invocation this caller works for: no refresh outlives it
        self._prepaid: list[float] = [0, 0.0]  # calls reserved at once (`reserve`) and until when; shared with forks
        self._limits: Limits | None = None

    @classmethod
    def with_token(cls, provider: ProviderRecord, token: str, *, priority: str = INTERACTIVE) -> Caller:
        """A caller for a token that belongs to nobody bitbridge knows yet (sign-in's identity read)."""
        caller = cls(None, provider, priority=priority, patience=Patience(transient_retries=0))
        caller._token, caller._reuse_until = token, float("inf")
        return caller

    def fork(self, priority: str | None = None) -> Caller:
        """A caller with its own call count that starts from this one's token (one token read for many) and
        spends this one's reserved calls first; `priority` for work of another kind (a hook repair)."""
        other = Caller(
            self.user_id,
            self.provider,
            priority=priority or self.priority,
            patience=self.patience,
            token_source=self._source,
            sleep=self.sleep,
            queues=self.queues,
        )
        other._token, other._reuse_until, other._ends = self._token, self._reuse_until, self._ends
        if other.priority == self.priority:
            other._prepaid = self._prepaid
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

    # -- the budget --------------------------------------------------------------------------------
    def _budget(self, url: str | None, resource: str | None) -> tuple[BudgetKey, Shape] | None:
        """The budget a call spends (None: not limited, or nobody's allowance is known yet)."""
        if self._limits is None:
            self._limits = providers.limits(self.provider)
        limits = self._limits
        klass = providers.bitbucket(self.provider).rate_limit_class(
            None if resource else url, self.provider.api_url, resource
        )
        shape = budget.shape_of(limits, klass)
        key = budget.key_for(self.provider.provider_id, limits, self.user_id, klass) if shape else None
        return (key, shape) if key and shape else None

    def reserve(self, calls: int, resource: str) -> None:
        """Take `calls` of the budget at once, all or none, for calls about to be made (the kickoff's access
        checks): a person waits a few seconds at most, else `budget.OverBudget` and nothing is spent."""
        found = self._budget(None, resource)
        if found is not None and calls > 0:
            until = budget.ledger().reserve(*found, self.priority, calls, wait_seconds=self._wait_seconds())
            with self._lock:
                self._prepaid[:] = [calls, until]

    def _wait_seconds(self) -> float:
        return budget.INTERACTIVE_WAIT_SECONDS if self.priority == INTERACTIVE else budget.BACKGROUND_WAIT_SECONDS

    def _spend(self, found: tuple[BudgetKey, Shape] | None) -> bool:
        """Spend one call of the budget; True when `_landed` must follow the call (a slot in the air)."""
        if found is None:
            return False
        with self._lock:
            if self._prepaid[0] > 0 and time.time() < self._prepaid[1]:  # reserved, and still in time
                self._prepaid[0] -= 1
                return False
        try:
            waited = budget.ledger().spend(
                *found,
                self.priority,
                wait_seconds=self._wait_seconds(),
                resuming=self.resuming,
                queues=self.queues,
                sleep=self.sleep,
            )
        except AWS_FAILURES as exc:
            if self.priority != INTERACTIVE:
                raise  # background work is retried like any AWS outage
            # A person waits, and the budget's table is down (an AWS outage): their call goes ahead unbudgeted,
            # as a warm proxy does on its caches; a 429 from Bitbucket still reaches them.
            log.warning("rate-limit budget unavailable (%s): an interactive call goes ahead", type(exc).__name__)
            return False
        with self._lock:
            self.budget_waited += waited
            self.resuming = False  # out of the queue of waiters once served
        return True

    def _landed(self, found: tuple[BudgetKey, Shape] | None) -> None:
        if found is not None:
            try:
                budget.ledger().landed(*found, self.priority)
            except AWS_FAILURES:
                if self.priority != INTERACTIVE:
                    raise

    def _told_rate_limited(self, found: tuple[BudgetKey, Shape], retry_after: float | None) -> None:
        """Bitbucket answered 429 anyway: the budget shrinks (an interactive call's answer is Bitbucket's,
        told or not, when the budget's table is down)."""
        try:
            budget.ledger().rate_limited(*found, retry_after)
        except AWS_FAILURES:
            if self.priority != INTERACTIVE:
                raise

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

        `resource` names the call's rate-limit class where the caller knows it (`RESOURCES`; None: judged
        from the URL). The shared budget is spent here, before each attempt (`self.user_id`,
        `self.provider`, the class, `self.priority`), and a 429 Bitbucket serves anyway is recorded on it.
        `refresh_on_401=False` where a 401 means "not allowed" rather than "stale token" (Data Center's
        hook endpoints answer 401 to a user without admin rights). Raises BitbucketError (transient)
        when Bitbucket could not be reached after the retries."""
        attempts = Attempts()
        token = self.token()
        can_refresh = refresh_on_401 and self._can_refresh()
        spends = self._budget(url, resource)
        while True:
            # budget.OverBudget when there is no room (after a short wait for a person)
            in_the_air = self._spend(spends)
            with self._lock:
                self.calls += 1
            try:
                response = send(method, url, token, **request)
                if response.status_code == 429 and spends is not None:
                    # Someone else spends this allowance: the budget shrinks (before the next call in the
                    # air goes), and decides when to try again.
                    self._told_rate_limited(spends, retry_after_seconds(response.headers.get("Retry-After")))
            except requests.RequestException as exc:
                if method in IDEMPOTENT and attempts.transient < self.patience.transient_retries:
                    attempts.transient += 1
                    self.sleep(backoff(attempts.transient, self.patience.retry_base, self.patience.retry_cap))
                    continue
                raise BitbucketError(f"{what}: {type(exc).__name__} talking to Bitbucket") from None
            finally:
                if in_the_air:
                    self._landed(spends)
            retry_after = response.headers.get("Retry-After")
            if response.status_code == 429 and spends is not None:
                # A person waits for the budget (which now knows); background work told when to come back
                # (Retry-After) takes its 429 and waits that out itself (`waiting_rate_limit`), else the
                # budget gives it its slot (`waiting_budget`).
                told = retry_after_seconds(retry_after) is not None
                if attempts.rate_limited < RATE_LIMITED_RETRIES and (self.priority == INTERACTIVE or not told):
                    attempts.rate_limited += 1
                    response.close()
                    continue
                return response
            decision = plan_retry(method, response.status_code, retry_after, attempts, self.patience, can_refresh)
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
