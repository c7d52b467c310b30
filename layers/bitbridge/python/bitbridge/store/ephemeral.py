"""Short-lived items: one-time OAuth states and sessions. DynamoDB's TTL deletes them;
readers also check `expires_at` because TTL deletion can lag by hours."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from bitbridge.store.base import iso, register, table_meta


def state_key(state_digest: str) -> str:
    return f"STATE#{state_digest}"


def session_key(session_id: str) -> str:
    return f"SESSION#{session_id}"


@register
class OAuthStateRecord(Model):
    Meta = table_meta("ephemeral_table")

    pk = UnicodeAttribute(hash_key=True)  # STATE#{sha256(state)}: the state itself is never stored
    provider_id = UnicodeAttribute()
    browser_binding = UnicodeAttribute()  # sha256 of the random value in the browser's cookie
    purpose = UnicodeAttribute()  # sign_in | connect | verify
    return_to = UnicodeAttribute()
    redirect_uri = UnicodeAttribute()
    code_verifier = UnicodeAttribute(null=True)  # PKCE (Data Center)
    user_id = UnicodeAttribute(null=True)  # connect: the signed-in user
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()


@register
class SessionRecord(Model):
    Meta = table_meta("ephemeral_table")

    pk = UnicodeAttribute(hash_key=True)  # SESSION#{session id}
    user_id = UnicodeAttribute()
    created_at = UnicodeAttribute(default=iso)
    expires_at = NumberAttribute()
