"""`connection.created | reauth_required | scopes_outdated | deleted` on the event bus (Source "bitbridge").

Each event names the connection (bitbridge user, provider) and, when a service client's end user is
linked to that user, the client and end user id: one event per link, so a product filters on its own
`detail.client_id`. Best effort, as import events are: the connection in DynamoDB is the truth.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aws_lambda_powertools import Logger

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.store.accounts import PROFILE, UserRecord, user_pk
from bitbridge.timestamps import iso

logger = Logger(child=True)

SOURCE = "bitbridge"
KINDS = ("connection.created", "connection.reauth_required", "connection.scopes_outdated", "connection.deleted")


def links_of(user_id: str) -> list[tuple[str, str]]:
    """(client id, end user id) of every service end user linked to this bitbridge user."""
    try:
        user = UserRecord.get(user_pk(user_id), PROFILE)
    except UserRecord.DoesNotExist:
        return []
    return sorted(tuple(link.split(":", 1)) for link in user.service_links or ())  # type: ignore[misc]


def details(kind: str, user_id: str, provider_id: str, links: list[tuple[str, str]], **extra: Any) -> list[dict]:
    base = {
        "schema_version": "1",
        "type": kind,
        "provider": provider_id,
        "user_id": user_id,
        "occurred_at": iso(),
        **extra,
    }
    if not links:
        return [{**base, "id": uuid.uuid4().hex, "client_id": None, "end_user_id": None}]
    return [{**base, "id": uuid.uuid4().hex, "client_id": c, "end_user_id": e} for c, e in links]


def publish(kind: str, user_id: str, provider_id: str, **extra: Any) -> None:
    assert kind in KINDS
    try:
        entries = [
            {
                "Source": SOURCE,
                "DetailType": kind,
                "Detail": json.dumps(detail),
                "EventBusName": settings().event_bus_name,
            }
            for detail in details(kind, user_id, provider_id, links_of(user_id), **extra)
        ]
        for start in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
            result = client("events").put_events(Entries=entries[start : start + 10])
            if result.get("FailedEntryCount"):
                logger.warning("connection event not published", extra={"event": kind, "provider": provider_id})
    except Exception:
        logger.warning("connection event not published", extra={"event": kind, "provider": provider_id}, exc_info=True)
