"""Emit reconciliation events through the deliveries outbox: one conditional put per event.

The item is a delivery (``origin = "reconciliation"``, the finished event as ``body``), so the event
publisher puts it on the bus exactly as it publishes deliveries - in order, retried, failures to the
publish-failure queue - and records it in the observed state. The put is conditional on the event id,
which derives from the change id: a run that crashed after some puts and runs again, or two runs that
overlap, write each event once.
"""

from __future__ import annotations

import json
from typing import Any

from bitbridge.store import deliveries
from bitbridge.webhooks.normalise import ORIGIN_RECONCILIATION


def emit(subscription_id: str, event: dict[str, Any]) -> bool:
    """True when this call wrote the event; False when it was already emitted."""
    return deliveries.put_new(
        provider_id=event["provider"]["id"],
        subscription_id=subscription_id,
        delivery_id=event["id"],
        event_key=event["event_key"],
        status=deliveries.RECEIVED,
        attempt=1,
        headers={},
        body=json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        origin=ORIGIN_RECONCILIATION,
    )
