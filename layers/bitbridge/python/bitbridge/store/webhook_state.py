"""What the event publisher reads and writes besides deliveries, with the low-level client (no PynamoDB,
for its cold start): a provider's flavor (ProvidersTable), a subscription's owner, last delivery and health
(SubscriptionsTable), and an imported project's push / default-branch / open pull request state and
its recent events (ImportsTable). The item shapes are the ones `store.providers`, `store.subscriptions` and
`store.imports` describe with PynamoDB; `tests/unit/test_store_shapes.py` keeps the names equal.

Every update is conditional on the item existing: a late delivery never recreates a deleted
subscription, and events for a repository that was never imported change nothing.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from botocore.exceptions import ClientError

from bitbridge.aws import client
from bitbridge.config import settings

_EXISTS = "attribute_exists(pk)"


def provider_flavor(provider_id: str) -> str | None:
    """The provider's registered flavor, or None when it is not registered."""
    item = (
        client("dynamodb")
        .get_item(
            TableName=settings().providers_table,
            Key={"pk": {"S": provider_id}},
            ProjectionExpression="flavor",
            ConsistentRead=True,
        )
        .get("Item")
    )
    flavor = (item or {}).get("flavor", {}).get("S")
    return str(flavor) if flavor else None


def subscription_owner(subscription_id: str) -> str | None:
    """The user whose connection a subscription's hook was installed with (enrichment calls Bitbucket as
    them); None for a subscription that is gone or has no owner (a manual hook)."""
    item = (
        client("dynamodb")
        .get_item(
            TableName=settings().subscriptions_table,
            Key={"pk": {"S": subscription_id}},
            ProjectionExpression="owner_user_id",
        )
        .get("Item")
    )
    owner = (item or {}).get("owner_user_id", {}).get("S")
    return str(owner) if owner else None


def record_subscription_delivery(
    subscription_id: str, provider_id: str, delivery_id: str, received_at: str, health: str
) -> str:
    """Note the newest delivery on its subscription: "recorded", "older" (a newer one is already
    recorded) or "missing" (no such subscription of this provider)."""
    ddb = client("dynamodb")
    try:
        ddb.update_item(
            TableName=settings().subscriptions_table,
            Key={"pk": {"S": subscription_id}},
            UpdateExpression="SET last_delivery_at = :at, last_delivery_id = :id, health = :health",
            ConditionExpression=(
                f"{_EXISTS} AND provider_id = :provider"
                " AND (attribute_not_exists(last_delivery_at) OR last_delivery_at <= :at)"
            ),
            ExpressionAttributeValues={
                ":at": {"S": received_at},
                ":id": {"S": delivery_id},
                ":health": {"S": health},
                ":provider": {"S": provider_id},
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ddb.exceptions.ConditionalCheckFailedException as exc:
        return "older" if exc.response.get("Item") else "missing"
    return "recorded"


def record_subscription_rejection(subscription_id: str, delivery_id: str, received_at: str) -> bool:
    """Count a delivery refused for naming another repository or provider on the subscription whose
    secret signed it; its health says so until a good delivery follows. False when no such subscription."""
    ddb = client("dynamodb")
    try:
        ddb.update_item(
            TableName=settings().subscriptions_table,
            Key={"pk": {"S": subscription_id}},
            UpdateExpression=(
                "SET health = :health, last_rejected_at = :at, last_rejected_id = :id ADD rejected_count :one"
            ),
            ConditionExpression=_EXISTS,
            ExpressionAttributeValues={
                ":health": {"S": "rejected"},
                ":at": {"S": received_at},
                ":id": {"S": delivery_id},
                ":one": {"N": "1"},
            },
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def record_backfilled(subscription_id: str, count: int) -> None:
    """Count changes the reconciler found that reached the bus (`missed_changes_backfilled`)."""
    ddb = client("dynamodb")
    with suppress(ddb.exceptions.ConditionalCheckFailedException):  # removed meanwhile
        ddb.update_item(
            TableName=settings().subscriptions_table,
            Key={"pk": {"S": subscription_id}},
            UpdateExpression="ADD missed_changes_backfilled :n",
            ConditionExpression=_EXISTS,
            ExpressionAttributeValues={":n": {"N": str(count)}},
        )


def _project_key(provider_id: str, repository_id: str) -> dict[str, dict[str, str]]:
    # store.imports.project_pk's shape, spelled for the low-level client.
    return {"pk": {"S": f"PROJECT#{provider_id}#{repository_id}"}, "sk": {"S": "PROJECT"}}


def record_push(provider_id: str, repository_id: str, event_id: str, at: str) -> None:
    _update_project(
        provider_id,
        repository_id,
        "SET last_push_at = :at, last_push_event_id = :id",
        f"{_EXISTS} AND (attribute_not_exists(last_push_at) OR last_push_at <= :at)",
        {":at": {"S": at}, ":id": {"S": event_id}},
    )


def record_branch_head(provider_id: str, repository_id: str, branch: str, head: str, at: str) -> None:
    """Moves the default branch's head, if `branch` is the project's default branch and `at` is newer."""
    _update_project(
        provider_id,
        repository_id,
        "SET default_branch_head = :head, default_branch_head_at = :at",
        f"{_EXISTS} AND default_branch = :branch"
        " AND (attribute_not_exists(default_branch_head_at) OR default_branch_head_at <= :at)",
        {":head": {"S": head}, ":at": {"S": at}, ":branch": {"S": branch}},
    )


def record_pull_request(provider_id: str, repository_id: str, pull_request_id: int, *, is_open: bool) -> None:
    # A number set, not a counter: a redelivered event cannot count twice.
    action = "ADD" if is_open else "DELETE"
    _update_project(
        provider_id,
        repository_id,
        f"{action} open_pull_request_ids :pr",
        _EXISTS,
        {":pr": {"NS": [str(pull_request_id)]}},
    )


def _update_project(
    provider_id: str, repository_id: str, expression: str, condition: str, values: dict[str, Any]
) -> None:
    ddb = client("dynamodb")
    # A failed condition means: not imported, not the default branch, or an older event.
    with suppress(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=settings().imports_table,
            Key=_project_key(provider_id, repository_id),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )


def record_recent_event(provider_id: str, repository_id: str, entry: dict[str, str], *, keep: int) -> None:
    """Add `entry` to the project's `recent_events` map (keyed by event id: a redelivery writes the same
    entry), then drop the oldest beyond `keep`. Nothing happens for a project that was never imported."""
    ddb = client("dynamodb")
    add: dict[str, Any] = {
        "TableName": settings().imports_table,
        "Key": _project_key(provider_id, repository_id),
        "UpdateExpression": "SET recent_events.#id = :entry",
        "ConditionExpression": _EXISTS,
        "ExpressionAttributeNames": {"#id": entry["id"]},
        "ExpressionAttributeValues": {":entry": {"M": {k: {"S": v} for k, v in entry.items()}}},
        "ReturnValues": "ALL_NEW",  # UPDATED_NEW would hold only the entry written
    }
    try:
        try:
            answer = ddb.update_item(**add)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                raise
            # The project's first event: the map does not exist yet (one more write, once per project).
            _update_project(
                provider_id,
                repository_id,
                "SET recent_events = if_not_exists(recent_events, :empty)",
                _EXISTS,
                {":empty": {"M": {}}},
            )
            answer = ddb.update_item(**add)
    except ddb.exceptions.ConditionalCheckFailedException:
        return  # not an imported repository
    kept = answer.get("Attributes", {}).get("recent_events", {}).get("M", {})
    if len(kept) <= keep:
        return
    by_age = sorted(kept, key=lambda i: (kept[i]["M"].get("occurred_at", {}).get("S", ""), i), reverse=True)
    names = {f"#o{n}": event_id for n, event_id in enumerate(by_age[keep:])}
    with suppress(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=settings().imports_table,
            Key=_project_key(provider_id, repository_id),
            UpdateExpression="REMOVE " + ", ".join(f"recent_events.{n}" for n in names),
            ConditionExpression=_EXISTS,
            ExpressionAttributeNames=names,
        )
