"""A valid access token for a connection: handed out with the validity its caller was promised, refreshed
ahead of expiry once per window, by an invocation that outlives the refresh.

The promise. `fresh(min_validity=asked)` hands out a token good for at least `Term.promise` more seconds:
what the caller asked, capped by what the provider's tokens can give (half their lifetime, never less than
5 s), so that 300 s or 60 s tokens serve their callers at all. A token is due for a refresh once less than
the promise plus the refresh window (a third of its lifetime, at most 300 s) is left: every caller of that
window shares one refresh.

One refresh at a time. Bitbucket rotates refresh tokens (Cloud after a grace period, Data Center at once),
so only the caller whose conditional write takes the connection's lease refreshes; taking it bumps
`version`, the fence every write of that refresh is conditional on.

Nobody waits who need not. A caller whose token still keeps its promise gets it at once, and the refresh is
handed over to TokenRefreshFunction (TokenRefreshQueue). A caller without a usable token waits for the
refresh, never past its own invocation's end less ANSWER_MARGIN (then TokenUnavailable, a 503). It refreshes
itself when its invocation outlives the lease (the import worker, the reconciler, the command line), else it
hands the refresh over as well (the console's, the kickoff's and the service API's functions: 10 s and 29 s).

No rotation is lost while Bitbucket answers within the lease. A refresh waits for the token endpoint as long
as its lease lasts (READ_TIMEOUT), in a function whose time limit covers that (bounded by what the
invocation has left: `token_timeout`), and it records its outcome first: `refresh_sent_at` before sending (a
refresher stopped mid-way leaves it behind), then the new tokens, or "sent, answer not received"
(`refresh_unanswered_at`). A later `invalid_grant` is then named a lost rotation (`refresh_answer_lost`),
whichever function meets it.

Scopes. A refresh never asks for scopes (RFC 6749 section 6: the grant's own), so widening a provider's
scopes cannot break it; a grant narrower than what the provider asks for now is marked (`missing_scopes`) and
announced once (`connection.scopes_outdated`): the connection keeps working until the person reconnects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from urllib3.exceptions import NewConnectionError

from bitbridge import connection_events, deadlines, providers
from bitbridge.accounts import connection_key, granted_scopes
from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.crypto import decrypt_tokens, encrypt_tokens
from bitbridge.errors import ConnectionNeeded, Problem
from bitbridge.safe_text import one_line
from bitbridge.store.accounts import ConnectionRecord, user_pk
from bitbridge.store.base import condition_failed
from bitbridge.store.providers import ProviderRecord
from bitbridge.timestamps import from_epoch, iso

log = logging.getLogger(__name__)

STILL_GOOD_SECONDS = 5  # the least a handed-out token is good for
PROMISE_FRACTION = 1 / 2  # a caller's asked validity is capped by this part of the token's lifetime
REFRESH_AHEAD_SECONDS = 300  # the refresh window: at most this...
REFRESH_AHEAD_FRACTION = 1 / 3  # ...or this part of the token's lifetime, whichever is less
DEFAULT_LIFETIME = 3600  # when the provider did not say

LEASE_SECONDS = 45  # one refresh in flight per connection, for at most this long
CONNECT_TIMEOUT = 3.05
STORE_SECONDS = 2.0  # after the answer: encrypt, write, announce
ANSWER_MARGIN = 1.0  # what an invocation keeps to answer its own caller after giving up
#: The token endpoint's read timeout: all the lease leaves, so an answer Bitbucket sends within the lease is
#: read and stored (a rotation answered after we stopped reading would lose the new refresh token).
READ_TIMEOUT = LEASE_SECONDS - CONNECT_TIMEOUT - STORE_SECONDS - ANSWER_MARGIN
RETRY_SECONDS = 2  # a failed refresh keeps the lease this long: no storm against a failing token endpoint
WAIT_SECONDS = 50  # the longest wait for a refresh outside Lambda (no invocation end to bound it)


class NotConnected(ConnectionNeeded):
    """The user has no connection to this provider yet."""

    code = "not_connected"

    def __init__(self, provider_id: str) -> None:
        super().__init__(provider_id, f"You have not connected {provider_id} yet; connect it first.")


class ReauthRequired(ConnectionNeeded):
    """The connection's refresh token no longer works (or Bitbucket refuses it): connect again. `reason` is
    one of REAUTH_REASONS when bitbridge knows why, and goes with `detail` into every 409."""

    code = "reauth_required"

    def __init__(self, provider_id: str, detail: str | None = None, reason: str | None = None) -> None:
        message = detail or f"The connection to {provider_id} has expired; connect again."
        super().__init__(provider_id, message, reason=reason, detail=message)
        self.reason = reason


#: `reason` of `connection.reauth_required` and of a `reauth_required` connection (docs/events.md).
LOST_ROTATION = "refresh_answer_lost"  # spent by a refresh whose answer never reached bitbridge
REFRESH_REFUSED = "refresh_token_refused"  # refused for Bitbucket's own reasons (revoked, expired)
SCOPE_REFUSED = "refresh_scope_refused"  # refused even with the scopes it was granted (invalid_scope)
REAUTH_REASONS = (LOST_ROTATION, REFRESH_REFUSED, SCOPE_REFUSED)
_GRANT_REFUSED = ("invalid_grant", "invalid_token", "unauthorized_client")


class TokenUnavailable(Problem):
    """A transient failure (Bitbucket down or slow, lock held too long); worth retrying later."""

    code = "bitbucket_unavailable"


@dataclass(frozen=True)
class Term:
    """What a caller asking for a token valid `asked` more seconds gets from a provider's tokens."""

    promise: float  # a handed-out token is good for at least this many more seconds
    refresh_at: float  # and is refreshed once less than this is left


def refresh_window(lifetime: float | None) -> float:
    """How long a refresh has before the token falls short of its promise: a third of the lifetime, at most
    300 s (a 60 s token gets 20 s, not a refresh on every call)."""
    life = lifetime if lifetime and lifetime > 0 else DEFAULT_LIFETIME
    return min(REFRESH_AHEAD_SECONDS, life * REFRESH_AHEAD_FRACTION)


def term(asked: float, lifetime: float | None) -> Term:
    """`asked` capped by what a token of `lifetime` seconds can give, and when it is due for a refresh."""
    life = lifetime if lifetime and lifetime > 0 else DEFAULT_LIFETIME
    promise = max(float(STILL_GOOD_SECONDS), min(asked, life * PROMISE_FRACTION))
    return Term(promise, promise + refresh_window(life))


def token_timeout(time_left: float | None) -> tuple[float, float]:
    """(connect, read) timeouts of a refresh made with `time_left` seconds left in its invocation (None:
    unbounded): all the lease allows, but never past the invocation's end, so the outcome is stored."""
    if time_left is None:
        return CONNECT_TIMEOUT, READ_TIMEOUT
    budget = max(0.2, time_left - ANSWER_MARGIN - STORE_SECONDS)
    connect = min(CONNECT_TIMEOUT, budget / 2)
    return connect, min(READ_TIMEOUT, budget - connect)


def outlives_lease(ends: float | None) -> bool:
    """Whether an invocation ending at `ends` may refresh itself: a whole lease fits before its end."""
    time_left = deadlines.left(ends)
    return time_left is None or time_left >= LEASE_SECONDS + ANSWER_MARGIN


@dataclass(frozen=True)
class Fresh:
    """A usable access token and what the service API tells about it (never logged)."""

    access_token: str
    expires_at: int
    scopes: str | None
    username: str | None
    refresh_due_at: int = 0  # epoch seconds: from then on, a caller with the same promise should ask again

    def __repr__(self) -> str:  # never print the token by accident
        return f"Fresh(expires_at={self.expires_at}, scopes={self.scopes!r}, username={self.username!r})"


def _load(user_id: str, provider_id: str) -> ConnectionRecord:
    try:
        return ConnectionRecord.get(user_pk(user_id), ConnectionRecord.sort_key(provider_id), consistent_read=True)
    except ConnectionRecord.DoesNotExist:
        raise NotConnected(provider_id) from None


def access_token(user_id: str, provider_id: str, *, stale: str | None = None) -> str:
    """A usable access token. Pass `stale` when Bitbucket just refused that token (expired or
    revoked early): it is then refreshed even if its recorded expiry says it is still good."""
    return fresh(user_id, provider_id, stale=stale).access_token


def fresh(
    user_id: str,
    provider_id: str,
    *,
    stale: str | None = None,
    min_validity: float = STILL_GOOD_SECONDS,
    ends: float | None = None,
) -> Fresh:
    """A token good for `min_validity` more seconds, capped by the provider's lifetime (`term`).

    `ends`: when the invocation this call works for ends (default: the current one, `deadlines`); the
    caller never waits past it, and refreshes itself only when a whole lease fits before it."""
    ends = ends if ends is not None else deadlines.ends()
    give_up = time.monotonic() + WAIT_SECONDS if ends is None else ends - ANSWER_MARGIN
    delay = 0.05
    while True:
        conn = _load(user_id, provider_id)
        if conn.status == "reauth_required":
            raise ReauthRequired(provider_id, conn.status_detail, conn.status_reason)
        now = time.time()
        promised = term(min_validity, conn.token_lifetime)
        left = conn.expires_at - now
        current = _access(conn) if left > promised.promise else None
        usable = current is not None and current != stale
        if usable and left > promised.refresh_at:
            return _fresh(conn, str(current), promised)
        if conn.refreshing_until is None or conn.refreshing_until < now:
            if usable or not outlives_lease(ends):
                if _take_lease(conn, now):
                    _hand_over(conn)
            elif _take_lease(conn, now, sending=True):
                return _fresh(conn, _refresh(conn, ends), promised)
        if usable:
            return _fresh(conn, str(current), promised)  # keeps its promise while the refresh runs
        if time.monotonic() >= give_up:
            raise TokenUnavailable(
                f"The {provider_id} token is being refreshed and Bitbucket has not answered yet; try again shortly."
            )
        time.sleep(max(0.0, min(delay + random.uniform(0, delay), give_up - time.monotonic())))  # noqa: S311
        delay = min(delay * 1.5, 0.5)


def _fresh(conn: ConnectionRecord, token: str, promised: Term) -> Fresh:
    expires = int(conn.expires_at)
    return Fresh(
        token,
        expires,
        conn.scopes or None,
        conn.username or None,
        int(expires - promised.refresh_at),
    )


def _access(conn: ConnectionRecord) -> str:
    return str(decrypt_tokens(connection_key(conn.user_id, conn.provider_id), conn.tokens)["access_token"])


# ------------------------------------------------------------------------------------------- the lease


def _sending(conn: ConnectionRecord, now: float) -> list[Any]:
    """The write-ahead mark of a refresh about to be sent; an earlier refresh's mark still there (it never
    recorded its outcome: stopped mid-way) becomes "sent, answer not received"."""
    marks: list[Any] = [ConnectionRecord.refresh_sent_at.set(int(now))]
    if conn.refresh_sent_at is not None:
        earlier = int(conn.refresh_sent_at)
        marks.append(ConnectionRecord.refresh_unanswered_at.set(ConnectionRecord.refresh_unanswered_at | earlier))
    return marks


def _take_lease(conn: ConnectionRecord, now: float, *, sending: bool = False) -> bool:
    actions = [ConnectionRecord.refreshing_until.set(int(now + LEASE_SECONDS)), ConnectionRecord.version.add(1)]
    try:
        conn.update(
            actions=actions + (_sending(conn, now) if sending else []),
            condition=(ConnectionRecord.version == conn.version)
            & (ConnectionRecord.refreshing_until.does_not_exist() | (ConnectionRecord.refreshing_until < int(now))),
        )
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise


def _hand_over(conn: ConnectionRecord) -> None:
    """Ask TokenRefreshFunction to carry out the refresh under this lease (`version` names it)."""
    body = {"user_id": conn.user_id, "provider_id": conn.provider_id, "version": int(conn.version)}
    try:
        client("sqs").send_message(QueueUrl=settings().token_refresh_queue_url, MessageBody=json.dumps(body))
    except Exception:
        log.warning("could not hand the %s token refresh over; released", conn.provider_id, exc_info=True)
        _settle(conn, unanswered=False)


def refresh_handed_over(user_id: str, provider_id: str, version: int, *, ends: float | None = None) -> str:
    """Carry out a refresh another invocation handed over (TokenRefreshFunction), under a whole lease of its
    own, unless the connection moved on since (refreshed, reconnected, or a newer lease taken). Returns what
    happened: refreshed | superseded | not_connected | reauth_required | failed."""
    try:
        conn = _load(user_id, provider_id)
    except NotConnected:
        return "not_connected"
    if conn.version != version or conn.status != "active":
        return "superseded"
    now = time.time()
    try:
        conn.update(
            actions=[
                ConnectionRecord.refreshing_until.set(int(now + LEASE_SECONDS)),
                ConnectionRecord.version.add(1),  # a duplicate of the message finds the lease taken
                *_sending(conn, now),
            ],
            condition=ConnectionRecord.version == version,
        )
    except Exception as exc:
        if condition_failed(exc):
            return "superseded"
        raise
    try:
        _refresh(conn, ends if ends is not None else deadlines.ends())
    except ReauthRequired:
        return "reauth_required"
    except TokenUnavailable:
        return "failed"
    return "refreshed"


class _MovedOn(Exception):
    """The connection changed under a refresh (reconnected): its write was not made."""


def _write(conn: ConnectionRecord, actions: list[Any]) -> None:
    """A write of the refresh holding `conn`'s lease, fenced by its version."""
    try:
        conn.update(actions=actions, condition=ConnectionRecord.version == conn.version)
    except Exception as exc:
        if condition_failed(exc):
            raise _MovedOn from None
        raise


def _settle(conn: ConnectionRecord, *, unanswered: bool) -> None:
    """A refresh that got no new tokens: the lease kept RETRY_SECONDS more, the write-ahead mark resolved -
    kept as "sent, answer not received" when Bitbucket may have carried the refresh out."""
    actions: list[Any] = [
        ConnectionRecord.refreshing_until.set(int(time.time() + RETRY_SECONDS)),
        ConnectionRecord.refresh_sent_at.remove(),
    ]
    if unanswered:
        sent = int(conn.refresh_sent_at) if conn.refresh_sent_at is not None else int(time.time())
        actions.append(ConnectionRecord.refresh_unanswered_at.set(ConnectionRecord.refresh_unanswered_at | sent))
    with contextlib.suppress(_MovedOn):  # reconnected meanwhile: nothing of ours to record
        _write(conn, actions)


# ------------------------------------------------------------------------------------------- the refresh


def _may_have_been_carried_out(exc: Exception) -> bool:
    """Whether a token request that failed may still have been carried out by Bitbucket: anything but a
    connection that was never made."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        return not isinstance(getattr(cause, "reason", cause), NewConnectionError)
    return True


def _refresh(conn: ConnectionRecord, ends: float | None) -> str:
    """Refresh under the lease `conn` holds (its write-ahead mark written): the new access token, stored
    (`conn` updated in place)."""
    try:
        provider = providers.get_provider(conn.provider_id)
        stored = decrypt_tokens(connection_key(conn.user_id, conn.provider_id), conn.tokens)
        session = providers.oauth_session(provider, providers.credentials(conn.provider_id))
        extra = providers.bitbucket(provider).refresh_parameters(conn.redirect_uri)
        url = providers.endpoints(provider).token_url
    except Exception:
        _settle(conn, unanswered=False)  # nothing was sent
        raise
    try:
        # scope=None: never the provider's scopes of today (Authlib would send them), the grant's own.
        answer = session.refresh_token(
            url,
            refresh_token=stored.get("refresh_token"),
            timeout=token_timeout(deadlines.left(ends)),
            scope=None,
            **extra,
        )
        token = dict(answer)
    except OAuthError as exc:
        if exc.error in _GRANT_REFUSED:
            raise _reauth_required(conn) from None
        if exc.error == "invalid_scope":
            raise _reauth_required(conn, scope_refused=True) from None
        _settle(conn, unanswered=False)  # Bitbucket answered: nothing was rotated
        raise TokenUnavailable(f"refreshing the {conn.provider_id} token failed: {exc.error}") from None
    except Exception as exc:
        _settle(conn, unanswered=_may_have_been_carried_out(exc))
        raise TokenUnavailable(f"refreshing the {conn.provider_id} token failed: {type(exc).__name__}") from None
    _store(conn, provider, stored, token)
    return str(token["access_token"])


def _store(conn: ConnectionRecord, provider: ProviderRecord, stored: dict[str, Any], token: dict[str, Any]) -> None:
    key = connection_key(conn.user_id, conn.provider_id)
    new = {
        "access_token": token["access_token"],
        # Keep the old refresh token only if the provider did not send a new one.
        "refresh_token": token.get("refresh_token") or stored.get("refresh_token"),
    }
    lifetime = float(token.get("expires_in") or 0) or None
    expires_at = int(token.get("expires_at") or time.time() + (lifetime or DEFAULT_LIFETIME))
    granted = granted_scopes(token) or conn.scopes or None
    missing = " ".join(providers.missing_scopes(provider, granted)) or None
    previously_missing = conn.missing_scopes
    try:
        _write(
            conn,
            [
                ConnectionRecord.token_lifetime.set(int(lifetime))
                if lifetime
                else ConnectionRecord.token_lifetime.remove(),
                ConnectionRecord.tokens.set(encrypt_tokens(key, new)),
                ConnectionRecord.expires_at.set(expires_at),
                ConnectionRecord.version.add(1),
                ConnectionRecord.refreshing_until.remove(),
                ConnectionRecord.status.set("active"),
                ConnectionRecord.status_reason.remove(),
                ConnectionRecord.status_detail.remove(),
                ConnectionRecord.refresh_sent_at.remove(),
                ConnectionRecord.refresh_unanswered_at.remove(),  # the refresh token still worked: nothing lost
                ConnectionRecord.scopes.set(granted or ""),
                ConnectionRecord.missing_scopes.set(missing) if missing else ConnectionRecord.missing_scopes.remove(),
                ConnectionRecord.updated_at.set(iso()),
            ],
        )
    except _MovedOn:
        return  # reconnected meanwhile: the new connection's tokens stand
    if missing and missing != previously_missing:
        log.info("connection %s#%s lacks scopes the provider asks for now", conn.user_id, conn.provider_id)
        connection_events.publish(
            "connection.scopes_outdated",
            conn.user_id,
            conn.provider_id,
            missing_scopes=missing.split(),
            granted_scopes=(granted or "").split(),
        )


def _reauth_required(conn: ConnectionRecord, *, scope_refused: bool = False) -> ReauthRequired:
    """Bitbucket refused the refresh: record why on the connection, announce it, and say what to do."""
    provider = conn.provider_id
    if scope_refused:
        reason = SCOPE_REFUSED
        detail = (
            "Bitbucket refused to refresh the token even with the permissions it was granted (invalid_scope): "
            f"the app's permissions were probably narrowed on the Bitbucket side. Connect {provider} again."
        )
    elif conn.refresh_unanswered_at is not None:
        reason = LOST_ROTATION
        detail = (
            f"Bitbucket refused the refresh token: it was used by an earlier refresh "
            f"({iso(from_epoch(conn.refresh_unanswered_at))}) whose answer, carrying the "
            f"new one, never reached bitbridge. Connect {provider} again to get a new pair."
        )
    else:
        reason = REFRESH_REFUSED
        detail = (
            f"Bitbucket refused the refresh token (revoked, expired, or the app's access was removed). "
            f"Connect {provider} again."
        )
    detail = one_line(detail)
    try:
        _write(
            conn,
            [
                ConnectionRecord.refreshing_until.remove(),
                ConnectionRecord.status.set("reauth_required"),
                ConnectionRecord.status_reason.set(reason),
                ConnectionRecord.status_detail.set(detail),
                ConnectionRecord.refresh_sent_at.remove(),
                ConnectionRecord.refresh_unanswered_at.remove(),
                ConnectionRecord.updated_at.set(iso()),
            ],
        )
    except _MovedOn:
        return ReauthRequired(provider, detail, reason)  # reconnected meanwhile: nothing to record or announce
    log.warning("connection %s#%s needs re-authorisation: %s", conn.user_id, provider, reason)
    connection_events.publish("connection.reauth_required", conn.user_id, provider, reason=reason)
    return ReauthRequired(provider, detail, reason)
