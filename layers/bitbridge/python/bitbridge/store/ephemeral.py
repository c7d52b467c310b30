"""Short-lived items: one-time OAuth states, sessions and provider verification tickets. DynamoDB's TTL deletes them;
readers also check `expires_at` because TTL deletion can lag by hours."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta
from bitbridge.timestamps import iso


def state_key(state_digest: str) -> str:
    return f"STATE#{state_digest}"


def session_key(session_id: str) -> str:
    return f"SESSION#{session_id}"


def ticket_key(ticket_digest: str) -> str:
    return f"VERIFY#{ticket_digest}"


@register
class OAuthStateRecord(Model):
    Meta = table_meta("ephemeral_table")

    pk = UnicodeAttribute(hash_key=True)  # STATE#{sha256(state)}: the state itself is never stored
    provider_id = UnicodeAttribute()
    browser_binding = UnicodeAttribute()  # sha256 of the random value in the browser's cookie
    purpose = UnicodeAttribute()  # sign_in | connect | verify | service_connect
    return_to = UnicodeAttribute()
    redirect_uri = UnicodeAttribute()
    code_verifier = UnicodeAttribute(null=True)  # PKCE (Data Center)
    user_id = UnicodeAttribute(null=True)  # connect: the signed-in user
    service_client_id = UnicodeAttribute(null=True)  # service_connect: whose end user is connecting
    end_user_id = UnicodeAttribute(null=True)
    verify_ticket = UnicodeAttribute(null=True)  # verify begun with a CLI ticket: its digest, for the outcome
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()


@register
class SessionRecord(Model):
    Meta = table_meta("ephemeral_table")

    pk = UnicodeAttribute(hash_key=True)  # SESSION#{session id}
    user_id = UnicodeAttribute()
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()


@register
class VerificationTicketRecord(Model):
    """A one-time ticket `bitbridge providers verify` mints so its URL may start one verification round
    trip without an admin session; the round trip's outcome is written back for the CLI to read."""

    Meta = table_meta("ephemeral_table")

    pk = UnicodeAttribute(hash_key=True)  # VERIFY#{sha256(ticket)}: the ticket itself is never stored
    provider_id = UnicodeAttribute()
    used_at = UnicodeAttribute(null=True)  # set by the one authorize that consumed it
    outcome = UnicodeAttribute(null=True)  # verified | failed, set by the callback
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()
