"""Emit reconciliation events through the deliveries outbox: one conditional put per event.

The item is a delivery (``origin = "reconciliation"``) whose body is the observation and its event
(bitbridge.reconcile.events.outbox_body), so the event publisher claims and publishes it exactly as it
publishes deliveries - in stream order, retried, failures to the publish-failure queue. The put is
conditional on the event id, which derives from the observation: a run that crashed after some puts and
runs again, or two runs that overlap, write each observation once.
"""

from __future__ import annotations

from typing import Any

from bitbridge.change_ids import Observation
from bitbridge.reconcile.events import outbox_body
from bitbridge.store import deliveries
from bitbridge.webhooks.normalise import ORIGIN_RECONCILIATION


def emit(subscription_id: str, event: dict[str, Any], observation: Observation | None = None) -> bool:
    """True when this call wrote the event; False when it was already emitted."""
    return deliveries.put_new(
        provider_id=event["provider"]["id"],
        subscription_id=subscription_id,
        delivery_id=event["id"],
        event_key=event["event_key"],
        status=deliveries.RECEIVED,
        attempt=1,
        headers={},
        body=outbox_body(event, observation),
        origin=ORIGIN_RECONCILIATION,
    )
