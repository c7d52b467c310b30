"""The events a reconciliation emits (schema 1.2, ``origin: "reconciliation"``).

Each has every key a delivery's event has, the same sections a delivery of that type would give (built
by the normaliser from Bitbucket's REST objects, which have the payloads' shape) and the same
``change_id`` (bitbridge.webhooks.change_ids). Its ``id`` is derived from the change id, so emitting a
change twice gives the same id and the outbox keeps one. ``actor`` is null (Bitbucket's reads do not
say who), ``occurred_at`` / ``received_at`` are when the reconciler found the change.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bitbridge.reconcile.diff import PullRequestChange, RefChange
from bitbridge.webhooks.change_ids import assign_change_ids
from bitbridge.webhooks.normalise import (
    ORIGIN_RECONCILIATION,
    SCHEMA_MINOR,
    SCHEMA_VERSION,
    event_key_for,
    pull_request_section,
)

UNHEALTHY = "subscription.unhealthy"


def _envelope(
    event_type: str, event_key: str, provider_id: str, flavor: str, repository: dict[str, Any], at: str
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "schema_minor": SCHEMA_MINOR,
        "id": "",
        "origin": ORIGIN_RECONCILIATION,
        "type": event_type,
        "event_key": event_key,
        "provider": {"id": provider_id, "flavor": flavor},
        "repository": repository,
        "actor": None,
        "ref_changes": [],
        "pull_request": None,
        "comment": None,
        "review": None,
        "issue": None,
        "commit_status": None,
        "fork": None,
        "changes": None,
        "occurred_at": at,
        "received_at": at,
        "subscription": None,
    }


def _with_id(event: dict[str, Any]) -> dict[str, Any]:
    assign_change_ids(event)
    event["id"] = "rec-" + event["change_id"].removeprefix("chg-")
    return event


def push_event(provider_id: str, flavor: str, repository: dict[str, Any], change: RefChange, at: str) -> dict[str, Any]:
    event = _envelope("repository.push", event_key_for(flavor, "repository.push"), provider_id, flavor, repository, at)
    event["ref_changes"] = [{"name": change.name, "kind": change.kind, "old": change.old, "new": change.new}]
    return _with_id(event)


def pull_request_event(
    provider_id: str, flavor: str, repository: dict[str, Any], change: PullRequestChange, at: str
) -> dict[str, Any]:
    event = _envelope(change.event_type, event_key_for(flavor, change.event_type), provider_id, flavor, repository, at)
    event["pull_request"] = pull_request_section(flavor, change.raw, change.event_type)
    return _with_id(event)


def unhealthy_event(
    provider_id: str,
    flavor: str,
    repository: dict[str, Any],
    subscription_id: str,
    reason: str,
    occurrence: int,
    at: str,
) -> dict[str, Any]:
    """One event per time a subscription becomes unhealthy (`occurrence` counts them)."""
    event = _envelope(UNHEALTHY, "bitbridge:subscription_unhealthy", provider_id, flavor, repository, at)
    event["subscription"] = {"id": subscription_id, "state": "needs_attention", "reason": reason}
    digest = hashlib.sha256(f"{provider_id}\x1f{subscription_id}\x1funhealthy\x1f{occurrence}".encode()).hexdigest()
    event["id"] = event["change_id"] = f"rec-{digest[:40]}"
    return event
