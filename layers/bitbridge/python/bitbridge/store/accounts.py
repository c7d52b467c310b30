"""Users, their provider identities, and their connections (encrypted OAuth tokens).

One table, three item kinds:
  USER#{user_id}               / PROFILE           the bitbridge user
  IDENTITY#{provider}#{ext_id} / IDENTITY          a provider account -> user (stable ids, never usernames)
  USER#{user_id}               / CONN#{provider}   the connection: encrypted tokens, expiry, lock
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta
from bitbridge.timestamps import iso

PROFILE = "PROFILE"
IDENTITY = "IDENTITY"


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def connections_of() -> Any:
    """The sort-key condition that selects a user's connections (a Query on `user_pk`)."""
    return ConnectionRecord.sk.startswith("CONN#")


@register
class UserRecord(Model):
    Meta = table_meta("accounts_table")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=PROFILE)
    user_id = UnicodeAttribute()
    display_name = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=iso)
    last_sign_in_at = UnicodeAttribute(null=True)
    # "{client_id}:{end_user_id}" of every service client's end user linked to this user, so
    # connection events can say whose connection it is without another table (store/service.py).
    service_links = UnicodeSetAttribute(null=True)


@register
class IdentityRecord(Model):
    Meta = table_meta("accounts_table")

    pk = UnicodeAttribute(hash_key=True)  # IDENTITY#{provider}#{external id}
    sk = UnicodeAttribute(range_key=True, default=IDENTITY)
    user_id = UnicodeAttribute()

    @staticmethod
    def key(provider_id: str, external_id: str) -> str:
        return f"IDENTITY#{provider_id}#{external_id}"


@register
class ConnectionRecord(Model):
    Meta = table_meta("accounts_table")

    pk = UnicodeAttribute(hash_key=True)  # USER#{user_id}
    sk = UnicodeAttribute(range_key=True)  # CONN#{provider_id}
    user_id = UnicodeAttribute()
    provider_id = UnicodeAttribute()
    external_id = UnicodeAttribute()  # Cloud uuid / DC numeric id
    username = UnicodeAttribute(null=True)  # display only: usernames change
    display_name = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    scopes = UnicodeAttribute(null=True)
    redirect_uri = UnicodeAttribute(null=True)  # Data Center checks it again on every refresh
    tokens = BinaryAttribute(legacy_encoding=False)  # KMS ciphertext of {"access_token", "refresh_token"}
    expires_at = NumberAttribute()  # epoch seconds when the access token expires
    token_lifetime = NumberAttribute(null=True)  # seconds the access token was granted for (refresh window)
    status = UnicodeAttribute(default="active")  # active | reauth_required
    status_reason = UnicodeAttribute(null=True)  # why reauth_required: a code (tokens.REAUTH_REASONS)
    status_detail = UnicodeAttribute(null=True)  # why reauth_required, and what to do (one bounded line)
    # Scopes the provider asks for now that this connection's grant lacks (space-separated; None: none):
    # it keeps working with what it was granted until the person connects again.
    missing_scopes = UnicodeAttribute(null=True)
    # Written before a refresh is sent and cleared once its outcome is recorded: left behind, it says a
    # refresh may have been carried out by Bitbucket without bitbridge seeing the answer (killed mid-way).
    refresh_sent_at = NumberAttribute(null=True)
    # When a refresh was sent but its answer never came (read timeout, or a refresher stopped mid-way):
    # Bitbucket may have rotated the refresh token in it, so a later invalid_grant is a lost rotation.
    refresh_unanswered_at = NumberAttribute(null=True)
    version = NumberAttribute(default=0)  # bumped by every token write and lease: the refresh lock's fence
    refreshing_until = NumberAttribute(null=True)  # lease held by the refresh in flight now
    created_at = UnicodeAttribute(default=iso)
    updated_at = UnicodeAttribute(default=iso)

    @staticmethod
    def sort_key(provider_id: str) -> str:
        return f"CONN#{provider_id}"
