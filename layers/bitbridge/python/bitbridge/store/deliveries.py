"""Webhook deliveries (DeliveriesTable): the outbox the receiver writes once and the publisher reads.

Plain boto3 (the low-level client), never PynamoDB: the receiver's and the publisher's cold starts pay
for nothing else. This module is the only description of a delivery item:

  pk               {provider_id}#{delivery_id}   (delivery ids are unique per Bitbucket, not across providers)
  delivery_id      X-Request-UUID / X-Request-Id / hook id + body hash; the event id
  provider_id, subscription_id, event_key
  status           received | ignored (key not handled) | published | malformed | unpublishable
                   | rejected (provider or repository not the subscription's)
                   | duplicate (a change the reconciler published first) | superseded (a reconciler's
                   observation a delivery told first, or overtook)
  received_at      RFC 3339 UTC, milliseconds
  attempt          X-Attempt-Number
  headers          the headers that matter, one JSON string; never the signature
  body             the raw body, exactly as verified (UTF-8 JSON)
  expires_at       TTL, epoch seconds
  event_type, published_at   set when published
  error            why it is malformed / unpublishable (a field name, never a value)
  origin           absent for Bitbucket's deliveries; "reconciliation" for a reconciler's observation (body =
                   the event and the observation, bitbridge.reconcile.events)
  change_ids       JSON list: the change id of each change the delivery reported (null: told before), set
                   when its changes were claimed, so a redrive or replay publishes the same ids
"""

from __future__ import annotations

import json
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.timestamps import from_epoch, iso_ms

RECEIVED = "received"
IGNORED = "ignored"
PUBLISHED = "published"
MALFORMED = "malformed"
UNPUBLISHABLE = "unpublishable"
REJECTED = "rejected"
DUPLICATE = "duplicate"
SUPERSEDED = "superseded"
#: Raw deliveries are kept this long for `bitbridge events replay`; DynamoDB's TTL deletes them after.
DELIVERY_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stored delivery, as the publisher and the command line read it."""

    pk: str
    delivery_id: str
    provider_id: str
    subscription_id: str
    event_key: str
    status: str
    received_at: str
    body: str
    attempt: int = 1
    origin: str = "webhook"  # "reconciliation": the body is what bitbridge.reconcile observed
    change_ids: tuple[str | None, ...] | None = None  # recorded when its changes were claimed

    @classmethod
    def from_image(cls, image: dict[str, Any]) -> Delivery:
        """From a DynamoDB-JSON item (a stream record's NewImage or a low-level Scan item)."""

        def text(name: str) -> str:
            return str((image.get(name) or {}).get("S", ""))

        attempt = str((image.get("attempt") or {}).get("N", "1"))
        recorded = text("change_ids")
        return cls(
            pk=text("pk"),
            delivery_id=text("delivery_id"),
            provider_id=text("provider_id"),
            subscription_id=text("subscription_id"),
            event_key=text("event_key"),
            status=text("status"),
            received_at=text("received_at"),
            body=text("body"),
            attempt=int(attempt) if attempt.isdigit() else 1,
            origin=text("origin") or "webhook",
            change_ids=tuple(json.loads(recorded)) if recorded else None,
        )


def delivery_key(provider_id: str, delivery_id: str) -> str:
    return f"{provider_id}#{delivery_id}"


def now() -> tuple[str, int]:
    """Now as RFC 3339 UTC with milliseconds (how `received_at` compares as a string), and as epoch seconds."""
    moment = time.time()
    return iso_ms(from_epoch(moment)), int(moment)


def new_item(
    *,
    provider_id: str,
    subscription_id: str,
    delivery_id: str,
    event_key: str,
    status: str,
    attempt: int,
    headers: dict[str, str],
    body: str,
    origin: str | None = None,
) -> dict[str, Any]:
    """The delivery item as the receiver (or the reconciler, with `origin`) first writes it: what the
    stream, and its filter, see on INSERT."""
    received_at, epoch = now()
    item: dict[str, Any] = {
        "pk": {"S": delivery_key(provider_id, delivery_id)},
        "delivery_id": {"S": delivery_id},
        "provider_id": {"S": provider_id},
        "subscription_id": {"S": subscription_id},
        "event_key": {"S": event_key},
        "status": {"S": status},
        "received_at": {"S": received_at},
        "attempt": {"N": str(attempt)},
        # One JSON string rather than a map: a diagnostic record, and a cheaper item to write.
        "headers": {"S": json.dumps(headers, separators=(",", ":"))},
        "body": {"S": body},
        "expires_at": {"N": str(epoch + DELIVERY_TTL_SECONDS)},
    }
    if origin:
        item["origin"] = {"S": origin}
    return item


def put_new(**fields: Any) -> bool:
    """Store a delivery once (`new_item`'s fields): one conditional put. False for a redelivery."""
    item = new_item(**fields)
    ddb = client("dynamodb")
    try:
        ddb.put_item(TableName=settings().deliveries_table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def mark_published(pk: str, event_type: str, change_ids: list[str | None] | None = None) -> None:
    stamp, _ = now()
    values = {":status": {"S": PUBLISHED}, ":type": {"S": event_type}, ":now": {"S": stamp}}
    expression = "SET #status = :status, event_type = :type, published_at = :now"
    if change_ids is not None:
        values[":ids"] = {"S": json.dumps(change_ids, separators=(",", ":"))}
        expression += ", change_ids = :ids"
    _update(pk, expression + " REMOVE #error", values)


def settle(pk: str, status: str, reason: str, change_ids: list[str | None] | None = None) -> None:
    """Record why a delivery will not be published (malformed, ignored, unpublishable, rejected, duplicate,
    superseded)."""
    values = {":status": {"S": status}, ":error": {"S": reason}}
    expression = "SET #status = :status, #error = :error"
    if change_ids is not None:
        values[":ids"] = {"S": json.dumps(change_ids, separators=(",", ":"))}
        expression += ", change_ids = :ids"
    _update(pk, expression, values)


def record_change_ids(pk: str, change_ids: list[str | None]) -> None:
    """The ids a delivery's changes were claimed with, before it is published (a redrive reuses them)."""
    _update(pk, "SET change_ids = :ids", {":ids": {"S": json.dumps(change_ids, separators=(",", ":"))}})


def _update(pk: str, expression: str, values: dict[str, Any]) -> None:
    names = {"#status": "status"} if "#status" in expression else {}
    if "#error" in expression:
        names["#error"] = "error"
    ddb = client("dynamodb")
    with suppress(ddb.exceptions.ConditionalCheckFailedException):  # never recreate an expired delivery
        ddb.update_item(
            TableName=settings().deliveries_table,
            Key={"pk": {"S": pk}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
        )


def get(provider_id: str, delivery_id: str) -> Delivery | None:
    item = (
        client("dynamodb")
        .get_item(
            TableName=settings().deliveries_table,
            Key={"pk": {"S": delivery_key(provider_id, delivery_id)}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return Delivery.from_image(item) if item else None


def received_between(since: str, until: str, provider_id: str | None = None) -> list[Delivery]:
    """Every delivery received in [since, until] (an admin command: a Scan is fine; TTL bounds it)."""
    condition = "received_at BETWEEN :since AND :until"
    values: dict[str, Any] = {":since": {"S": since}, ":until": {"S": until}}
    if provider_id:
        condition += " AND provider_id = :provider"
        values[":provider"] = {"S": provider_id}
    pages = (
        client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=settings().deliveries_table,
            FilterExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )
    )
    return [Delivery.from_image(item) for page in pages for item in page.get("Items", [])]
