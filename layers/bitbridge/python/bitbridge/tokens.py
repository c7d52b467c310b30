"""A valid access token for a connection, refreshed ahead of expiry, once, under a lock.

Bitbucket Cloud rotates refresh tokens: whoever refreshes first gets the new pair and the old
refresh token dies minutes later. So exactly one caller per connection refreshes - the one whose
conditional write takes the lease at the current version - and every other caller waits and
adopts the token the winner stores, rather than spending the rotated-away refresh token.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError

from bitbridge import connection_events, providers
from bitbridge.accounts import connection_key
from bitbridge.crypto import decrypt_tokens, encrypt_tokens
from bitbridge.errors import ConnectionNeeded, Problem
from bitbridge.safe_text import one_line
from bitbridge.store.accounts import ConnectionRecord, user_pk
from bitbridge.store.base import condition_failed
from bitbridge.timestamps import from_epoch, iso

log = logging.getLogger(__name__)

REFRESH_AHEAD_SECONDS = 300  # refresh when less than this is left...
REFRESH_AHEAD_FRACTION = 1 / 3  # ...or than a third of the token's lifetime, whichever is less
STILL_GOOD_SECONDS = 5  # a token with less left is not handed out
#: The token endpoint's own timeout (connect, read): long enough that Bitbucket finishes a rotation
#: before we give up on it (a rotation completed after we stopped waiting loses the new refresh token).
TOKEN_TIMEOUT = (3.05, 25)
LEASE_SECONDS = 45  # above TOKEN_TIMEOUT's total: no second refresher while the first may still succeed
WAIT_SECONDS = 50


class NotConnected(ConnectionNeeded):
    """The user has no connection to this provider yet."""

    code = "not_connected"

    def __init__(self, provider_id: str) -> None:
        super().__init__(provider_id, f"You have not connected {provider_id} yet; connect it first.")


class ReauthRequired(ConnectionNeeded):
    """The connection's refresh token no longer works (or Bitbucket refuses it): connect again."""

    code = "reauth_required"

    def __init__(self, provider_id: str, detail: str | None = None) -> None:
        super().__init__(provider_id, detail or f"The connection to {provider_id} has expired; connect again.")


#: `reason` of `connection.reauth_required` (docs/events.md): the refresh token was spent by a refresh
#: whose answer never reached bitbridge, or Bitbucket refused it for its own reasons (revoked, expired).
LOST_ROTATION = "refresh_answer_lost"
REFRESH_REFUSED = "refresh_token_refused"


class TokenUnavailable(Problem):
    """A transient failure (Bitbucket down, lock held too long); worth retrying later."""

    code = "bitbucket_unavailable"


def _load(user_id: str, provider_id: str) -> ConnectionRecord:
    try:
        return ConnectionRecord.get(user_pk(user_id), ConnectionRecord.sort_key(provider_id), consistent_read=True)
    except ConnectionRecord.DoesNotExist:
        raise NotConnected(provider_id) from None


def refresh_window(lifetime: float | None) -> float:
    """How long before expiry a token is refreshed: proportional to its lifetime, at most 300 s, so a
    60 s token refreshes in its last 20 s, not on every call."""
    if not lifetime or lifetime <= 0:
        return REFRESH_AHEAD_SECONDS
    return min(REFRESH_AHEAD_SECONDS, lifetime * REFRESH_AHEAD_FRACTION)


@dataclass(frozen=True)
class Fresh:
    """A usable access token and what the service API tells about it (never logged)."""

    access_token: str
    expires_at: int
    scopes: str | None
    username: str | None

    def __repr__(self) -> str:  # never print the token by accident
        return f"Fresh(expires_at={self.expires_at}, scopes={self.scopes!r}, username={self.username!r})"


def access_token(
    user_id: str, provider_id: str, *, refresh_ahead: float | None = None, stale: str | None = None
) -> str:
    """A usable access token. Pass `stale` when Bitbucket just refused that token (expired or
    revoked early): it is then refreshed even if its recorded expiry says it is still good."""
    return fresh(user_id, provider_id, refresh_ahead=refresh_ahead, stale=stale).access_token


def fresh(
    user_id: str,
    provider_id: str,
    *,
    refresh_ahead: float | None = None,
    stale: str | None = None,
    min_validity: float = STILL_GOOD_SECONDS,
) -> Fresh:
    """A token with its expiry, good for `min_validity` more seconds where the provider's lifetime allows.

    Inside the refresh window one caller refreshes; every other caller whose token is still good uses it
    at once, and a refresh that fails or times out still answers the refresher with the good token."""
    still_good = max(STILL_GOOD_SECONDS, min_validity)
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.05
    while True:
        conn = _load(user_id, provider_id)
        if conn.status == "reauth_required":
            raise ReauthRequired(provider_id, conn.status_detail)
        now = time.time()
        left = conn.expires_at - now
        window = refresh_ahead if refresh_ahead is not None else refresh_window(conn.token_lifetime)
        current = _access(conn)
        usable = left > still_good and current != stale
        if usable and left > window:
            return _fresh(conn, current)
        lease_free = conn.refreshing_until is None or conn.refreshing_until < now
        if lease_free and _take_lease(conn, now):
            return _refresh(conn, fallback=_fresh(conn, current) if usable else None)
        if usable:
            return _fresh(conn, current)  # still good while another caller refreshes
        if time.monotonic() > deadline:
            raise TokenUnavailable(f"timed out waiting for the {provider_id} token refresh")
        time.sleep(delay + random.uniform(0, delay))  # noqa: S311 - jitter, not security
        delay = min(delay * 1.5, 0.5)


def _fresh(conn: ConnectionRecord, token: str, expires_at: int | None = None) -> Fresh:
    expires = int(expires_at if expires_at is not None else conn.expires_at)
    return Fresh(token, expires, conn.scopes or None, conn.username or None)


def _access(conn: ConnectionRecord) -> str:
    return str(decrypt_tokens(connection_key(conn.user_id, conn.provider_id), conn.tokens)["access_token"])


def _take_lease(conn: ConnectionRecord, now: float) -> bool:
    try:
        conn.update(
            actions=[ConnectionRecord.refreshing_until.set(int(now + LEASE_SECONDS))],
            condition=(ConnectionRecord.version == conn.version)
            & (ConnectionRecord.refreshing_until.does_not_exist() | (ConnectionRecord.refreshing_until < int(now))),
        )
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise


def _release(conn: ConnectionRecord, extra: list[Any]) -> None:
    conn.update(
        actions=[ConnectionRecord.refreshing_until.remove(), *extra],
        condition=ConnectionRecord.version == conn.version,
    )


def _refresh(conn: ConnectionRecord, fallback: Fresh | None = None) -> Fresh:
    """Refresh under the lease; on a transient failure, `fallback` (a still-valid token) if given."""
    try:
        return _refresh_now(conn)
    except TokenUnavailable as exc:
        if fallback is None:
            raise
        log.warning("token refresh for %s failed (%s); the current token is still valid", conn.provider_id, exc)
        return fallback


def _refresh_now(conn: ConnectionRecord) -> Fresh:
    key = connection_key(conn.user_id, conn.provider_id)
    stored = decrypt_tokens(key, conn.tokens)
    provider = providers.get_provider(conn.provider_id)
    creds = providers.credentials(conn.provider_id)
    session = providers.oauth_session(provider, creds)
    extra = providers.bitbucket(provider).refresh_parameters(conn.redirect_uri)
    try:
        token = dict(
            session.refresh_token(
                providers.endpoints(provider).token_url,
                refresh_token=stored.get("refresh_token"),
                timeout=TOKEN_TIMEOUT,
                **extra,
            )
        )
    except OAuthError as exc:
        if exc.error in ("invalid_grant", "invalid_token", "unauthorized_client"):
            raise _reauth_required(conn) from None
        _release(conn, [])
        raise TokenUnavailable(f"refreshing the {conn.provider_id} token failed: {exc.error}") from None
    except Exception as exc:
        # Sent but unanswered: Bitbucket may have rotated the refresh token in a reply we never read.
        lost = isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError)
        _release(conn, [ConnectionRecord.refresh_unanswered_at.set(int(time.time()))] if lost else [])
        raise TokenUnavailable(f"refreshing the {conn.provider_id} token failed: {type(exc).__name__}") from None
    new = {
        "access_token": token["access_token"],
        # Keep the old refresh token only if the provider did not send a new one.
        "refresh_token": token.get("refresh_token") or stored.get("refresh_token"),
    }
    lifetime = float(token.get("expires_in") or 0) or None
    expires_at = int(token.get("expires_at") or time.time() + (lifetime or 3600))
    conn.update(
        actions=[
            ConnectionRecord.token_lifetime.set(int(lifetime))
            if lifetime
            else ConnectionRecord.token_lifetime.remove(),
            ConnectionRecord.tokens.set(encrypt_tokens(key, new)),
            ConnectionRecord.expires_at.set(expires_at),
            ConnectionRecord.version.add(1),
            ConnectionRecord.refreshing_until.remove(),
            ConnectionRecord.status.set("active"),
            ConnectionRecord.status_detail.remove(),
            ConnectionRecord.refresh_unanswered_at.remove(),  # the refresh token still worked: nothing lost
            ConnectionRecord.updated_at.set(iso()),
        ],
        condition=ConnectionRecord.version == conn.version,
    )
    return _fresh(conn, str(new["access_token"]), expires_at)


def _reauth_required(conn: ConnectionRecord) -> ReauthRequired:
    """Bitbucket refused the refresh token: record why on the connection, announce it, and say what to do."""
    provider = conn.provider_id
    if conn.refresh_unanswered_at is not None:
        reason = LOST_ROTATION
        detail = (
            f"Bitbucket refused the refresh token: it was used by an earlier refresh "
            f"({iso(from_epoch(conn.refresh_unanswered_at))}) whose answer, carrying the "
            f"new one, never reached bitbridge (timed out). Connect {provider} again to get a new pair."
        )
    else:
        reason = REFRESH_REFUSED
        detail = (
            f"Bitbucket refused the refresh token (revoked, expired, or the app's access was removed). "
            f"Connect {provider} again."
        )
    _release(
        conn,
        [
            ConnectionRecord.status.set("reauth_required"),
            ConnectionRecord.status_detail.set(one_line(detail)),
            ConnectionRecord.refresh_unanswered_at.remove(),
            ConnectionRecord.updated_at.set(iso()),
        ],
    )
    log.warning("connection %s#%s needs re-authorisation: %s", conn.user_id, provider, reason)
    connection_events.publish("connection.reauth_required", conn.user_id, provider, reason=reason)
    return ReauthRequired(provider, one_line(detail))
