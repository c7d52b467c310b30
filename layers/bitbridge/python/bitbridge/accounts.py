"""Users and connections: upsert on sign-in, read for the API. Tokens are stored encrypted."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pynamodb.expressions.update import Action

from bitbridge.bitbucket.identity import Identity
from bitbridge.config import settings
from bitbridge.crypto import encrypt_tokens
from bitbridge.errors import Problem
from bitbridge.store.accounts import (
    IDENTITY,
    PROFILE,
    ConnectionRecord,
    IdentityRecord,
    UserRecord,
    connections_of,
    user_pk,
)
from bitbridge.store.base import condition_failed
from bitbridge.timestamps import iso


class IdentityLinkedElsewhere(Problem):
    """This Bitbucket account already belongs to another bitbridge user."""

    code = "identity_linked_elsewhere"
    title = "Sign-in failed"


def connection_key(user_id: str, provider_id: str) -> str:
    return f"{user_id}#{provider_id}"


def _user_for_identity(provider_id: str, identity: Identity, connect_to: str | None) -> str:
    key = IdentityRecord.key(provider_id, identity.external_id)
    for _ in range(3):
        try:
            existing = IdentityRecord.get(key, IDENTITY, consistent_read=True)
        except IdentityRecord.DoesNotExist:
            user_id = connect_to or uuid.uuid4().hex
            try:
                IdentityRecord(key, user_id=user_id).save(condition=IdentityRecord.pk.does_not_exist())
                return user_id
            except Exception as exc:
                if not condition_failed(exc):
                    raise
                continue  # a parallel sign-in of the same account created it: read it again
        if connect_to and existing.user_id != connect_to:
            raise IdentityLinkedElsewhere("this Bitbucket account is already connected to another user")
        return str(existing.user_id)
    raise RuntimeError("could not settle the identity record")


def upsert(
    provider_id: str,
    identity: Identity,
    token: dict[str, Any],
    redirect_uri: str,
    connect_to: str | None = None,
) -> tuple[str, bool]:
    """Create or update the user and their connection to `provider_id`: (user id, whether the connection
    is new or was waiting for re-authorisation - what `connection.created` announces)."""
    user_id = _user_for_identity(provider_id, identity, connect_to)
    now = iso()
    actions: list[Action] = [
        UserRecord.user_id.set(user_id),
        UserRecord.display_name.set(identity.display_name or identity.username or user_id),
        UserRecord.created_at.set(UserRecord.created_at | now),
        UserRecord.last_sign_in_at.set(now),
    ]
    if identity.email:
        actions.append(UserRecord.email.set(identity.email))
    UserRecord(user_pk(user_id), PROFILE).update(actions=actions)
    try:
        before = ConnectionRecord.get(user_pk(user_id), ConnectionRecord.sort_key(provider_id), consistent_read=True)
        usable_before = before.status == "active"
    except ConnectionRecord.DoesNotExist:
        usable_before = False
    save_tokens_fresh(user_id, provider_id, identity, token, redirect_uri)
    return user_id, not usable_before


def _expires_at(token: dict[str, Any]) -> int:
    if token.get("expires_at"):
        return int(token["expires_at"])
    return int(time.time() + float(token.get("expires_in") or 3600))


def granted_scopes(token: dict[str, Any]) -> str | None:
    # Cloud answered `scopes` until May 2026 and `scope` since; Data Center says `scope`.
    value = token.get("scope", token.get("scopes"))
    if isinstance(value, list):
        return " ".join(value)
    return str(value) if value is not None else None


def save_tokens_fresh(
    user_id: str, provider_id: str, identity: Identity, token: dict[str, Any], redirect_uri: str
) -> None:
    """Store a newly granted token pair (sign-in or re-connect), resetting any refresh state."""
    secret = {"access_token": token["access_token"], "refresh_token": token.get("refresh_token")}
    sk = ConnectionRecord.sort_key(provider_id)
    now = iso()
    ConnectionRecord(user_pk(user_id), sk).update(
        actions=[
            ConnectionRecord.user_id.set(user_id),
            ConnectionRecord.provider_id.set(provider_id),
            ConnectionRecord.external_id.set(identity.external_id),
            ConnectionRecord.username.set(identity.username or ""),
            ConnectionRecord.display_name.set(identity.display_name or ""),
            ConnectionRecord.email.set(identity.email or ""),
            ConnectionRecord.scopes.set(granted_scopes(token) or ""),
            ConnectionRecord.redirect_uri.set(redirect_uri),
            ConnectionRecord.tokens.set(encrypt_tokens(connection_key(user_id, provider_id), secret)),
            ConnectionRecord.expires_at.set(_expires_at(token)),
            ConnectionRecord.token_lifetime.set(int(float(token.get("expires_in") or 0)) or 3600),
            ConnectionRecord.status.set("active"),
            ConnectionRecord.status_reason.remove(),
            ConnectionRecord.status_detail.remove(),
            ConnectionRecord.missing_scopes.remove(),
            ConnectionRecord.refresh_sent_at.remove(),
            ConnectionRecord.refresh_unanswered_at.remove(),
            ConnectionRecord.version.add(1),
            ConnectionRecord.refreshing_until.remove(),
            ConnectionRecord.created_at.set(ConnectionRecord.created_at | now),
            ConnectionRecord.updated_at.set(now),
        ]
    )


def get_user(user_id: str) -> UserRecord | None:
    try:
        return UserRecord.get(user_pk(user_id), PROFILE)
    except UserRecord.DoesNotExist:
        return None


def connections(user_id: str) -> list[ConnectionRecord]:
    return list(ConnectionRecord.query(user_pk(user_id), connections_of()))


def public_connection(conn: ConnectionRecord) -> dict[str, Any]:
    """What the API may show of a connection: never a token."""
    return {
        "provider": conn.provider_id,
        "external_id": conn.external_id,
        "username": conn.username or None,
        "display_name": conn.display_name or None,
        "email": conn.email or None,
        "scopes": conn.scopes or None,
        "status": conn.status,
        "reason": conn.status_reason if conn.status == "reauth_required" else None,
        "status_detail": conn.status_detail,
        # Still usable with what was granted; connecting again grants what the provider asks for now.
        "scopes_outdated": bool(conn.missing_scopes),
        "missing_scopes": conn.missing_scopes.split() if conn.missing_scopes else [],
        "access_token_expires_at": int(conn.expires_at),
        "connected_at": conn.created_at,
    }


def is_admin(user_id: str, conns: list[ConnectionRecord] | None = None) -> bool:
    """Admins are named in the deploy parameter AdminUsers as `{provider id}:{Bitbucket account id}`
    (Cloud account uuid, Data Center numeric user id: stable ids, never usernames, which change and
    are reused). A user is an admin while one of their connections is such an account."""
    admins = settings().admin_users
    if not admins:
        return False
    found = conns if conns is not None else connections(user_id)
    return any(f"{c.provider_id}:{c.external_id}" in admins for c in found)


def disconnect(user_id: str, provider_id: str) -> ConnectionRecord | None:
    """Delete the connection (its encrypted tokens with it); the removed record, or None if there was none.
    The identity link stays, so signing in with that account again finds the same user and imports."""
    try:
        conn = ConnectionRecord.get(user_pk(user_id), ConnectionRecord.sort_key(provider_id), consistent_read=True)
    except ConnectionRecord.DoesNotExist:
        return None
    conn.delete()
    return conn
