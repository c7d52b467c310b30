"""Calling Bitbucket as one user: the token comes from the sign-in core and is refreshed once when
Bitbucket refuses it before its recorded expiry; 5xx and network errors are retried a bounded number of
times with backoff; every HTTP attempt is counted (the import reports the API calls it used)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from bitbridge import tokens
from bitbridge.bitbucket.http import BitbucketError, RateLimited, Unauthorized, get_json
from bitbridge.store.providers import ProviderRecord

TOKEN_REUSE_SECONDS = 60  # re-read the stored token this often, so refresh-ahead still happens


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half (attempt counts from 1)."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security


class Caller:
    def __init__(
        self,
        user_id: str,
        provider: ProviderRecord,
        *,
        retries: int = 2,
        retry_base: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.user_id = user_id
        self.provider = provider
        self.retries = retries
        self.retry_base = retry_base
        self.sleep = sleep
        self.calls = 0
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_read_at = 0.0

    def fork(self) -> Caller:
        """A caller with its own call count that starts from this one's token (one token read for many)."""
        other = Caller(self.user_id, self.provider, retries=self.retries, retry_base=self.retry_base, sleep=self.sleep)
        other._token, other._token_read_at = self._token, self._token_read_at
        return other

    def prime(self) -> None:
        """Read the token now (so forks share it)."""
        self._current_token()

    @property
    def api(self) -> str:
        return str(self.provider.api_url).rstrip("/")

    def _current_token(self) -> str:
        if self._token is None or time.monotonic() - self._token_read_at > TOKEN_REUSE_SECONDS:
            self._token = tokens.access_token(self.user_id, self.provider.provider_id)
            self._token_read_at = time.monotonic()
        return self._token

    def _get(self, url: str, token: str, params: dict[str, Any] | None) -> Any:
        with self._lock:
            self.calls += 1
        try:
            return get_json(url, token, "reading from Bitbucket", params)
        except ValueError:
            raise BitbucketError("reading from Bitbucket: the answer was not JSON") from None

    def _authorized(self, url: str, params: dict[str, Any] | None) -> Any:
        token = self._current_token()
        try:
            return self._get(url, token, params)
        except Unauthorized:
            # Refused before its recorded expiry (expired early or revoked): refresh once and retry;
            # a second refusal is final: the user must connect again.
            self._token = tokens.access_token(self.user_id, self.provider.provider_id, stale=token)
            self._token_read_at = time.monotonic()
            try:
                return self._get(url, self._token, params)
            except Unauthorized:
                raise tokens.ReauthRequired(self.provider.provider_id) from None

    def fetch(self, url: str, params: dict[str, Any] | None = None) -> Any:
        attempt = 0
        while True:
            try:
                return self._authorized(url, params)
            except RateLimited:
                raise  # waiting is the caller's decision (the worker defers, the API answers 429)
            except BitbucketError as exc:
                attempt += 1
                if exc.permanent or attempt > self.retries:
                    raise
                self.sleep(backoff(attempt, self.retry_base, 8.0))
