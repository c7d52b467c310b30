"""The events a reconciliation emits (``origin: "reconciliation"``).

Each has every key a delivery's event has and the same sections a delivery of that type would give (built
by the normaliser from Bitbucket's REST objects, which have the payloads' shape). It goes into the
deliveries outbox with the observation it stands for (:func:`outbox_body`); the publisher claims the
observation in the repository's ledger and sets the ``change_id``s (a delivery that told the same
transition shares it; one that told it first makes the observation stale, and nothing is published). Its
``id`` derives from the observation, so observing the same difference twice (a rerun after a crash, two
runs that overlap) writes one outbox item. ``actor`` is null (Bitbucket's reads do not say who),
``occurred_at`` / ``received_at`` are when the reconciler found the change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bitbridge.change_ids import Observation, PrObservation, observation_to_dict
from bitbridge.reconcile.diff import PullRequestChange, RefChange, ReviewChange
from bitbridge.webhooks.normalise import (
    ORIGIN_RECONCILIATION,
    SCHEMA_MINOR,
    SCHEMA_VERSION,
    comment_section,
    event_key_for,
    pull_request_section,
    review_section,
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
        "mirror": None,
    }


def observation_id(provider_id: str, repository_id: str, epoch: str, observation: Observation) -> str:
    """The outbox id of an observation: the same difference seen from the same ledger state, one item."""
    seen = json.dumps(observation_to_dict(observation), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{provider_id}\x1f{repository_id}\x1f{epoch}\x1f{seen}".encode()).hexdigest()
    return f"rec-{digest[:40]}"


def push_event(
    provider_id: str, flavor: str, repository: dict[str, Any], epoch: str, change: RefChange, at: str
) -> dict[str, Any]:
    event = _envelope("repository.push", event_key_for(flavor, "repository.push"), provider_id, flavor, repository, at)
    event["ref_changes"] = [{"name": change.name, "kind": change.kind, "old": change.old, "new": change.new}]
    event["id"] = observation_id(provider_id, repository["id"], epoch, change.observation)
    return event


def pull_request_event(
    provider_id: str, flavor: str, repository: dict[str, Any], epoch: str, change: PullRequestChange, at: str
) -> dict[str, Any]:
    event = _envelope(change.event_type, event_key_for(flavor, change.event_type), provider_id, flavor, repository, at)
    event["pull_request"] = pull_request_section(flavor, change.raw, change.event_type)
    event["id"] = observation_id(provider_id, repository["id"], epoch, change.observation)
    return event


def review_event(
    provider_id: str, flavor: str, repository: dict[str, Any], epoch: str, change: ReviewChange, at: str
) -> dict[str, Any] | None:
    """A comment's or a review status's event, with the sections a delivery of its type gives (the comment as
    Bitbucket lists it now; a comment no longer listed: its id only). None when Bitbucket's person object
    names no one an event can show."""
    kind = change.event_type
    event = _envelope(kind, event_key_for(flavor, kind), provider_id, flavor, repository, at)
    event["pull_request"] = pull_request_section(flavor, change.pr, kind)
    if change.comment is not None:
        event["comment"] = comment_section(flavor, change.comment.raw, change.comment.parent_id)
    elif change.standing is not None:
        event["review"] = review_section(flavor, change.standing.user, change.standing.status, change.previous)
        if event["review"] is None:
            return None
    event["id"] = observation_id(provider_id, repository["id"], epoch, change.observation)
    return event


def deleted_event(
    provider_id: str, flavor: str, repository: dict[str, Any], epoch: str, observation: PrObservation, at: str
) -> dict[str, Any]:
    """A pull request Bitbucket no longer has (Data Center deletes them): Bitbucket can no longer say what it
    was, and the ledger keeps its state's fingerprint only, so the section names the pull request (``id``,
    ``state`` DELETED) and nothing else (empty title, unknown ends)."""
    kind = "pull_request.deleted"
    event = _envelope(kind, event_key_for(flavor, kind), provider_id, flavor, repository, at)
    unknown = {"branch": None, "tag": None, "ref": None, "commit": None, "repository": None}
    event["pull_request"] = {
        "id": observation.pr_id,
        "title": "",
        "state": "DELETED",
        "source": dict(unknown),
        "destination": dict(unknown),
        "author": None,
        "reviewers": [],
        "merge_commit": None,
        "url": None,
    }
    event["id"] = observation_id(provider_id, repository["id"], epoch, observation)
    return event


def outbox_body(event: dict[str, Any], observation: Observation | None) -> str:
    """What the outbox item carries: the observation and its event, or a finished event (no observation)."""
    if observation is None:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    body = {"event": event, "observation": observation_to_dict(observation)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


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
