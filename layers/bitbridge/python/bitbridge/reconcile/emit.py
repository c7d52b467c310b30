"""Emit reconciliation events through the deliveries outbox: one conditional put per event.

The item has a delivery's shape (``origin = "reconciliation"``, the finished event as ``body``), so the
event publisher puts it on the bus exactly as it publishes deliveries - in order, retried, failures to
the publish-failure queue - and records it in the observed state. The put is conditional on the event
id, which derives from the change id: a run that crashed after some puts and runs again, or two runs
that overlap, write each event once.
"""

from __future__ import annotations

import json
from typing import Any

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.webhooks.normalise import ORIGIN_RECONCILIATION
from bitbridge.webhooks.receipt import DELIVERY_TTL_SECONDS, RECEIVED, delivery_key, received_now


def emit(subscription_id: str, event: dict[str, Any]) -> bool:
    """True when this call wrote the event; False when it was already emitted."""
    provider_id = event["provider"]["id"]
    received_at, epoch = received_now()
    ddb = client("dynamodb")
    try:
        ddb.put_item(
            TableName=settings().deliveries_table,
            Item={
                "pk": {"S": delivery_key(provider_id, event["id"])},
                "delivery_id": {"S": event["id"]},
                "provider_id": {"S": provider_id},
                "subscription_id": {"S": subscription_id},
                "event_key": {"S": event["event_key"]},
                "status": {"S": RECEIVED},
                "origin": {"S": ORIGIN_RECONCILIATION},
                "received_at": {"S": received_at},
                "body": {"S": json.dumps(event, separators=(",", ":"), ensure_ascii=False)},
                "expires_at": {"N": str(epoch + DELIVERY_TTL_SECONDS)},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True
