"""A valid access token for a connection, refreshed ahead of expiry, once, under a lock.

Bitbucket Cloud rotates refresh tokens: whoever refreshes first gets the new pair and the old
refresh token dies minutes later. So exactly one caller per connection refreshes - the one whose
conditional write takes the lease at the current version - and every other caller waits and
adopts the token the winner stores, rather than spending the rotated-away refresh token.
"""

from __future__ import annotations

import random
import time
from typing import Any

from authlib.integrations.base_client.errors import OAuthError

from bitbridge import providers
from bitbridge.accounts import connection_key
from bitbridge.bitbucket.http import TIMEOUT
from bitbridge.crypto import decrypt_tokens, encrypt_tokens
from bitbridge.errors import ConnectionNeeded, Problem
from bitbridge.store.accounts import ConnectionRecord, user_pk
from bitbridge.store.base import condition_failed, iso

REFRESH_AHEAD_SECONDS = 300  # refresh when less than this is left
LEASE_SECONDS = 30  # a crashed refresher blocks others for at most this long
WAIT_SECONDS = 35


class NotConnected(ConnectionNeeded):
    """The user has no connection to this provider yet."""

    code = "not_connected"

    def __init__(self, provider_id: str) -> None:
        super().__init__(provider_id, f"You have not connected {provider_id} yet; connect it first.")


class ReauthRequired(ConnectionNeeded):
    """The connection's refresh token no longer works (or Bitbucket refuses it): connect again."""

    code = "reauth_required"

    def __init__(self, provider_id: str) -> None:
        super().__init__(provider_id, f"The connection to {provider_id} has expired; connect again.")


class TokenUnavailable(Problem):
    """A transient failure (Bitbucket down, lock held too long); worth retrying later."""

    code = "bitbucket_unavailable"


def _load(user_id: str, provider_id: str) -> ConnectionRecord:
    try:
        return ConnectionRecord.get(user_pk(user_id), ConnectionRecord.sort_key(provider_id), consistent_read=True)
    except ConnectionRecord.DoesNotExist:
        raise NotConnected(provider_id) from None


def access_token(
    user_id: str, provider_id: str, *, refresh_ahead: int = REFRESH_AHEAD_SECONDS, stale: str | None = None
) -> str:
    """A usable access token. Pass `stale` when Bitbucket just refused that token (expired or
    revoked early): it is then refreshed even if its recorded expiry says it is still good."""
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.05
    while True:
        conn = _load(user_id, provider_id)
        if conn.status == "reauth_required":
            raise ReauthRequired(provider_id)
        now = time.time()
        current = _access(conn) if stale is not None else None
        needs_refresh = conn.expires_at - now <= refresh_ahead or (stale is not None and current == stale)
        if not needs_refresh:
            return current if current is not None else _access(conn)
        lease_free = conn.refreshing_until is None or conn.refreshing_until < now
        if lease_free and _take_lease(conn, now):
            return _refresh(conn)
        if not lease_free and conn.expires_at - now > 5 and current != stale:
            return current if current is not None else _access(conn)  # still good while another refreshes
        if time.monotonic() > deadline:
            raise TokenUnavailable(f"timed out waiting for the {provider_id} token refresh")
        time.sleep(delay + random.uniform(0, delay))  # noqa: S311 - jitter, not security
        delay = min(delay * 1.5, 0.5)


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


def _refresh(conn: ConnectionRecord) -> str:
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
                timeout=TIMEOUT,
                **extra,
            )
        )
    except OAuthError as exc:
        if exc.error in ("invalid_grant", "invalid_token", "unauthorized_client"):
            _release(conn, [ConnectionRecord.status.set("reauth_required"), ConnectionRecord.updated_at.set(iso())])
            raise ReauthRequired(conn.provider_id) from None
        _release(conn, [])
        raise TokenUnavailable(f"refreshing the {conn.provider_id} token failed: {exc.error}") from None
    except Exception as exc:
        _release(conn, [])
        raise TokenUnavailable(f"refreshing the {conn.provider_id} token failed: {type(exc).__name__}") from None
    new = {
        "access_token": token["access_token"],
        # Keep the old refresh token only if the provider did not send a new one.
        "refresh_token": token.get("refresh_token") or stored.get("refresh_token"),
    }
    expires_at = int(token.get("expires_at") or time.time() + float(token.get("expires_in") or 3600))
    conn.update(
        actions=[
            ConnectionRecord.tokens.set(encrypt_tokens(key, new)),
            ConnectionRecord.expires_at.set(expires_at),
            ConnectionRecord.version.add(1),
            ConnectionRecord.refreshing_until.remove(),
            ConnectionRecord.status.set("active"),
            ConnectionRecord.updated_at.set(iso()),
        ],
        condition=ConnectionRecord.version == conn.version,
    )
    return str(new["access_token"])
