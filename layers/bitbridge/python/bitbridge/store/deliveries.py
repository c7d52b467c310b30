"""Webhook deliveries: the outbox the receiver writes once and the publisher reads from the stream.

The receiver (cold path) and the publisher write these items with the low-level DynamoDB client; this
model is the same shape for the command line and tests. Attribute names are the contract:
``bitbridge.webhooks.receipt`` writes them.
"""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta


@register
class DeliveryRecord(Model):
    Meta = table_meta("deliveries_table")

    pk = UnicodeAttribute(hash_key=True)  # {provider_id}#{delivery_id}
    delivery_id = UnicodeAttribute()  # X-Request-UUID / X-Request-Id / hook id + body hash; the event id
    provider_id = UnicodeAttribute()
    subscription_id = UnicodeAttribute()
    event_key = UnicodeAttribute()
    # received | ignored (key not handled) | published | malformed | unpublishable (unknown provider)
    status = UnicodeAttribute()
    received_at = UnicodeAttribute()  # RFC 3339 UTC, milliseconds
    attempt = NumberAttribute(default=1)  # X-Attempt-Number
    headers = JSONAttribute(default=dict)  # the headers that matter (a JSON object); never the signature
    body = UnicodeAttribute()  # the raw body, exactly as verified (UTF-8 JSON)
    expires_at = NumberAttribute()  # TTL, epoch seconds
    event_type = UnicodeAttribute(null=True)  # set when published
    published_at = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)  # why it is malformed / unpublishable (a field name, never a value)
