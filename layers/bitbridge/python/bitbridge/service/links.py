"""End users and connect sessions: how a product's user becomes a bitbridge connection.

The product's backend creates a connect session for its `end_user_id`; the URL it gets back is one-time and
short-lived (its token is stored only as a SHA-256). The end user opens it, reads which product asks for
which of its users and presses Continue (a POST from that page), connects a provider through the ordinary
OAuth flow (oauth.begin with purpose `service_connect`), and lands back on the session's `return_to` with a
one-time `connect_code`. Nothing is linked yet: the product's backend, at that page, confirms the code for
the end user *signed in to the product there* (`confirm`), and only a code confirmed for the end user the
session was made for links (client, end user) to the bitbridge user the Bitbucket identity belongs to. So a
link forwarded to, or opened by, someone else links nobody (docs/service-api.md, "Security of connect
links"). One end user id per client names one bitbridge user (connecting again with another Bitbucket
account moves the link); one bitbridge user may be several clients' end users.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bitbridge import providers
from bitbridge.errors import Problem
from bitbridge.service.cache import TtlCache
from bitbridge.service.credentials import Caller
from bitbridge.service.errors import ServiceRefused, refuse
from bitbridge.store.accounts import PROFILE, UserRecord, user_pk
from bitbridge.store.base import condition_failed
from bitbridge.store.service import (
    CLIENT_PROFILE,
    RESULT_SK,
    SESSION_SK,
    ConnectResultRecord,
    ConnectSessionRecord,
    EndUserLinkRecord,
    ServiceClientRecord,
    client_pk,
    connect_result_pk,
    connect_session_pk,
)
from bitbridge.timestamps import epoch, from_epoch, iso

CONNECT_SESSION_SECONDS = 600
CONNECT_CODE_SECONDS = 600  # from the end user's return to the product's confirm call
CONNECT_CODE_PARAM = "connect_code"  # the query parameter return_to receives
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


def product_label(client_id: str) -> str:
    """How the connect page names the product: the client's label, else its id (a revoked client's links
    are dead)."""
    try:
        client = ServiceClientRecord.get(client_pk(client_id), CLIENT_PROFILE)
    except ServiceClientRecord.DoesNotExist:
        client = None
    if client is None or client.status != "active":
        raise ConnectSessionInvalid("This connect link's app is no longer registered; ask the app for a new one.")
    return str(client.label or client.client_id)


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


def await_confirmation(client_id: str, end_user_id: str, return_to: str, user_id: str, provider_id: str) -> str:
    """The end user finished a connect session of `client_id` for `end_user_id` as `user_id`: keep that
    result for the client to confirm, and return where to send the browser - the session's `return_to`
    with a one-time `connect_code`."""
    code = secrets.token_urlsafe(32)
    ConnectResultRecord(
        connect_result_pk(_digest(code)),
        RESULT_SK,
        client_id=client_id,
        end_user_id=end_user_id,
        user_id=user_id,
        provider_id=provider_id,
        expires_at=epoch(CONNECT_CODE_SECONDS),
    ).save()
    parts = urlsplit(return_to)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), (CONNECT_CODE_PARAM, code)])
    return urlunsplit(parts._replace(query=query))


def confirm(caller: Caller, end_user_id: str, code: object) -> ConnectResultRecord:
    """Link the end user a connect code was made for, when the client confirms it for that same end user.

    The code is used up by the first confirm, whatever it says: a code confirmed for another end user (the
    browser that came back is not signed in to the product as the user the link was made for) links nobody,
    and that connect must start again. A code of another client is an unknown code."""
    if not isinstance(code, str) or not 20 <= len(code) <= 100:
        raise _invalid_code()
    try:
        result = ConnectResultRecord.get(connect_result_pk(_digest(code)), RESULT_SK, consistent_read=True)
    except ConnectResultRecord.DoesNotExist:
        raise _invalid_code() from None
    if result.client_id != caller.client_id or result.expires_at < time.time():
        raise _invalid_code()
    try:
        result.delete(condition=ConnectResultRecord.pk.exists())
    except Exception as exc:
        if condition_failed(exc):
            raise _invalid_code() from None
        raise
    if result.end_user_id != end_user_id:
        raise refuse(
            "end_user_mismatch",
            f"This connect code comes from a connect link made for end user {result.end_user_id}, not "
            f"{end_user_id}: nothing was linked. Confirm a code only for the user signed in where it arrived.",
        )
    link(result.client_id, result.end_user_id, result.user_id)
    return result


def _invalid_code() -> ServiceRefused:
    return refuse(
        "connect_code_invalid",
        "Unknown, used or expired connect code: create a new connect session for the end user.",
    )


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


def unlink(client_id: str, end_user_id: str, user_id: str) -> None:
    """(client, end user) -> user no more: the client's end user no longer reaches that user's connections."""
    EndUserLinkRecord(client_pk(client_id), EndUserLinkRecord.sort_key(end_user_id)).delete()
    _users.drop((client_id, end_user_id))
    name = f"{client_id}:{end_user_id}"
    UserRecord(user_pk(user_id), PROFILE).update(actions=[UserRecord.service_links.delete({name})])


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
