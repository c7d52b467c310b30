"""End users and connect sessions: how a product's user becomes a bitbridge connection.

The product's backend creates a connect session for its `end_user_id`; the URL it gets back is one-time and
short-lived (its token is stored only as a SHA-256). The end user opens it, connects a provider through the
ordinary OAuth flow (oauth.begin with purpose `service_connect`), and the callback links (client, end user)
to the bitbridge user that the Bitbucket identity belongs to. One end user id per client names one bitbridge
user (connecting again with another Bitbucket account moves the link); one bitbridge user may be several
clients' end users.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from bitbridge import providers
from bitbridge.errors import Problem
from bitbridge.service.cache import TtlCache
from bitbridge.service.credentials import Caller
from bitbridge.service.errors import refuse
from bitbridge.store.accounts import PROFILE, UserRecord, user_pk
from bitbridge.store.base import condition_failed
from bitbridge.store.service import SESSION_SK, ConnectSessionRecord, EndUserLinkRecord, client_pk, connect_session_pk
from bitbridge.timestamps import epoch, from_epoch, iso

CONNECT_SESSION_SECONDS = 600
_END_USER = re.compile(r"^[A-Za-z0-9._@+=-]{1,200}$")


class ConnectSessionInvalid(Problem):
    """The connect link is unknown, used or expired: the product must create a new one."""

    code = "connect_session_invalid"
    title = "Connect link not valid"


def check_end_user_id(value: object) -> str:
    if not isinstance(value, str) or not _END_USER.match(value):
        raise refuse("invalid_end_user_id", "`end_user_id`: 1-200 characters among letters, digits and . _ @ + = -")
    return value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def connect_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/connect/{token}"


def create_session(
    caller: Caller, end_user_id: str, provider_id: str | None, return_to: str, base_url: str
) -> dict[str, Any]:
    """A one-time connect URL for `end_user_id` (return_to already checked against the client's origins)."""
    if provider_id is not None:
        provider = providers.get_provider(provider_id)  # UnknownProvider -> 404
        if not provider.imports:
            raise refuse("provider_disabled", f"Connecting {provider_id} is turned off by the admin.")
    token = secrets.token_urlsafe(32)
    expires_at = epoch(CONNECT_SESSION_SECONDS)
    ConnectSessionRecord(
        connect_session_pk(_digest(token)),
        SESSION_SK,
        client_id=caller.client_id,
        end_user_id=end_user_id,
        provider_id=provider_id,
        return_to=return_to,
        expires_at=expires_at,
    ).save()
    return {
        "connect_url": connect_url(base_url, token),
        "expires_at": iso(from_epoch(expires_at)),
        "end_user_id": end_user_id,
        "provider": provider_id,
    }


def peek_session(token: str) -> ConnectSessionRecord:
    """The session behind a connect URL, without using it up (the provider chooser page)."""
    try:
        record = ConnectSessionRecord.get(connect_session_pk(_digest(token)), SESSION_SK, consistent_read=True)
    except ConnectSessionRecord.DoesNotExist:
        raise ConnectSessionInvalid(
            "This connect link is unknown, used or expired; ask the app for a new one."
        ) from None
    if record.expires_at < time.time():
        raise ConnectSessionInvalid("This connect link has expired; ask the app for a new one.")
    return record


def consume_session(token: str) -> ConnectSessionRecord:
    """Use the connect session up: only the first caller gets past the conditional delete."""
    record = peek_session(token)
    try:
        record.delete(condition=ConnectSessionRecord.pk.exists())
    except Exception as exc:
        if condition_failed(exc):
            raise ConnectSessionInvalid("This connect link was already used; ask the app for a new one.") from None
        raise
    return record


def link(client_id: str, end_user_id: str, user_id: str) -> None:
    """(client, end user) -> user; the user's record lists its links for connection events."""
    sk = EndUserLinkRecord.sort_key(end_user_id)
    previous = _linked(client_id, end_user_id)
    now = iso()
    EndUserLinkRecord(client_pk(client_id), sk).update(
        actions=[
            EndUserLinkRecord.client_id.set(client_id),
            EndUserLinkRecord.end_user_id.set(end_user_id),
            EndUserLinkRecord.user_id.set(user_id),
            EndUserLinkRecord.created_at.set(EndUserLinkRecord.created_at | now),
            EndUserLinkRecord.updated_at.set(now),
        ]
    )
    _users.drop((client_id, end_user_id))
    name = f"{client_id}:{end_user_id}"
    UserRecord(user_pk(user_id), PROFILE).update(actions=[UserRecord.service_links.add({name})])
    if previous is not None and previous != user_id:
        UserRecord(user_pk(previous), PROFILE).update(actions=[UserRecord.service_links.delete({name})])


def _linked(client_id: str, end_user_id: str) -> str | None:
    try:
        found = EndUserLinkRecord.get(
            client_pk(client_id), EndUserLinkRecord.sort_key(end_user_id), consistent_read=True
        )
    except EndUserLinkRecord.DoesNotExist:
        return None
    return str(found.user_id)


_users: TtlCache[str] = TtlCache()


def user_for(client_id: str, end_user_id: str) -> str | None:
    """The bitbridge user a client's end user is linked to, if any (cached briefly: see service.cache)."""
    found = _users.get((client_id, end_user_id))
    if found is None:
        found = _linked(client_id, end_user_id)
        if found is not None:
            _users.put((client_id, end_user_id), found)
    return found
