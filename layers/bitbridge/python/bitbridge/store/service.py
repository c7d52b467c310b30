"""What the service API stores: its clients, their keys, end-user links, connect sessions and the audit trail.

One table (ServiceTable, TTL on `expires_at`), six item kinds:
  CLIENT#{client_id} / PROFILE               a product's backend: scopes, registered origins, status, key ids
  KEY#{key_id}       / KEY                   one credential: salt + SHA-256 of the secret, never the secret
  CLIENT#{client_id} / ENDUSER#{end_user_id} the product's end user -> the bitbridge user (unique per client)
  CONNECT#{sha256}   / SESSION               a one-time connect session (the URL's token is never stored)
  AUDIT#{client_id}  / {time}#{request id}   one record per service call, deleted by TTL after the retention
  IDEMPOTENCY#{client_id} / KEY#{sha256}     a write's Idempotency-Key and its first answer, deleted by TTL
"""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta
from bitbridge.timestamps import iso

CLIENT_PROFILE = "PROFILE"
KEY_SK = "KEY"
SESSION_SK = "SESSION"


def client_pk(client_id: str) -> str:
    return f"CLIENT#{client_id}"


def key_pk(key_id: str) -> str:
    return f"KEY#{key_id}"


def connect_session_pk(token_digest: str) -> str:
    return f"CONNECT#{token_digest}"


def audit_pk(client_id: str) -> str:
    return f"AUDIT#{client_id}"


def idempotency_pk(client_id: str) -> str:
    return f"IDEMPOTENCY#{client_id}"


def idempotency_sk(key_digest: str) -> str:
    return f"KEY#{key_digest}"


@register
class ServiceClientRecord(Model):
    Meta = table_meta("service_table")

    pk = UnicodeAttribute(hash_key=True)  # CLIENT#{client_id}
    sk = UnicodeAttribute(range_key=True, default=CLIENT_PROFILE)
    client_id = UnicodeAttribute()
    label = UnicodeAttribute(null=True)
    scopes = UnicodeSetAttribute()
    origins = UnicodeSetAttribute(null=True)  # where connect sessions may send the end user back to
    status = UnicodeAttribute(default="active")  # active | revoked
    key_ids = UnicodeSetAttribute(null=True)
    created_at = UnicodeAttribute(default=iso)
    revoked_at = UnicodeAttribute(null=True)


@register
class ServiceKeyRecord(Model):
    Meta = table_meta("service_table")

    pk = UnicodeAttribute(hash_key=True)  # KEY#{key_id}
    sk = UnicodeAttribute(range_key=True, default=KEY_SK)
    key_id = UnicodeAttribute()
    client_id = UnicodeAttribute()
    salt = UnicodeAttribute()
    secret_hash = UnicodeAttribute()  # hex SHA-256(salt + secret)
    created_at = UnicodeAttribute(default=iso)
    revoked = BooleanAttribute(default=False)
    # Set when the key is rotated away: it works until then (the overlap), and TTL removes it later.
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key(key_id: str) -> str:
        return key_pk(key_id)


@register
class EndUserLinkRecord(Model):
    Meta = table_meta("service_table")

    pk = UnicodeAttribute(hash_key=True)  # CLIENT#{client_id}
    sk = UnicodeAttribute(range_key=True)  # ENDUSER#{end_user_id}
    client_id = UnicodeAttribute()
    end_user_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    created_at = UnicodeAttribute(default=iso)
    updated_at = UnicodeAttribute(default=iso)

    @staticmethod
    def sort_key(end_user_id: str) -> str:
        return f"ENDUSER#{end_user_id}"


@register
class ConnectSessionRecord(Model):
    Meta = table_meta("service_table")

    pk = UnicodeAttribute(hash_key=True)  # CONNECT#{sha256(token)}
    sk = UnicodeAttribute(range_key=True, default=SESSION_SK)
    client_id = UnicodeAttribute()
    end_user_id = UnicodeAttribute()
    provider_id = UnicodeAttribute(null=True)  # None: the end user picks one
    return_to = UnicodeAttribute()
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()


@register
class AuditRecord(Model):
    Meta = table_meta("service_table")

    pk = UnicodeAttribute(hash_key=True)  # AUDIT#{client_id}
    sk = UnicodeAttribute(range_key=True)  # {ISO time with ms}#{request id}: ordered by time
    client_id = UnicodeAttribute()
    key_id = UnicodeAttribute()
    action = UnicodeAttribute()  # token | proxy | connect_session | connection | import
    end_user_id = UnicodeAttribute(null=True)
    provider_id = UnicodeAttribute(null=True)
    method = UnicodeAttribute()
    path = UnicodeAttribute()  # secrets in the query string are redacted before this is written
    status = NumberAttribute()
    duration_ms = NumberAttribute()
    at = UnicodeAttribute()
    detail = UnicodeAttribute(null=True)  # a typed action's ids and states, JSON (service.actions.audit_detail)
    expires_at = NumberAttribute()


@register
class IdempotencyRecord(Model):
    """One Idempotency-Key of a client's write: held while the first call runs (`lease_until`), then its answer
    (`status` and `body`, or the refusal's `error`) for the retention; a call with the same key and request is
    answered from here, never run twice."""

    Meta = table_meta("service_table")

    pk = UnicodeAttribute(hash_key=True)  # IDEMPOTENCY#{client_id}
    sk = UnicodeAttribute(range_key=True)  # KEY#{sha256 of the key}: any key the header allows fits
    fingerprint = UnicodeAttribute()  # sha256 of what was asked (route, end user, parameters, body)
    state = UnicodeAttribute()  # running | done
    lease_until = NumberAttribute()  # epoch seconds: a running call older than this crashed; it can be run again
    status = NumberAttribute(null=True)
    body = UnicodeAttribute(null=True)  # the answer, JSON (never a token: actions answer ids and states)
    error = UnicodeAttribute(null=True)  # a refusal's {code, message, details}, JSON
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()
