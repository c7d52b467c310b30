"""Keep an imported project's state current from its events: last push, default-branch head, open PRs.

The project item belongs to imports (ImportsTable ``pk = PROJECT#{provider_id}#{repository id}``,
``sk = PROJECT``); imports create it. Every update here is conditional on the item existing, so events
for a repository that was never imported change nothing. The publisher calls :func:`apply_event` after
an event is on the bus; events arrive at least once and in no guaranteed order, so every update is
idempotent, and the timestamps only move forward:

- ``last_push_at`` / ``last_push_event_id`` - the newest push (any ref);
- ``default_branch_head`` / ``default_branch_head_at`` - set from a push whose branch equals the item's
  ``default_branch`` (written by the import); a branch deletion leaves it alone;
- ``recent_events`` - the newest events as short summaries (the console's Activity), see record_recent;
- ``open_pull_request_ids`` - a number set: opened adds the id, merged/declined/deleted removes it. Its size
  is the open pull request count; a set (not a counter) so a redelivered event cannot count twice. (An
  ``opened`` arriving after the same pull request's ``merged`` would re-add it: rare, and the next import
  refreshes the count.)
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from botocore.exceptions import ClientError

from bitbridge.aws import client
from bitbridge.config import settings

_EXISTS = "attribute_exists(pk)"
_PR_OPENED = "pull_request.opened"
_PR_CLOSED = frozenset({"pull_request.merged", "pull_request.declined", "pull_request.deleted"})


def project_key(provider_id: str, repository_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"PROJECT#{provider_id}#{repository_id}"}, "sk": {"S": "PROJECT"}}


def apply_event(event: dict[str, Any]) -> None:
    """Update the imported project the event concerns, if there is one."""
    key = project_key(event["provider"]["id"], event["repository"]["id"])
    at = event["occurred_at"]
    if event["type"] == "repository.push":
        _update(
            key,
            "SET last_push_at = :at, last_push_event_id = :id",
            f"{_EXISTS} AND (attribute_not_exists(last_push_at) OR last_push_at <= :at)",
            {":at": {"S": at}, ":id": {"S": event["id"]}},
        )
        for change in event["ref_changes"]:
            if change["kind"] == "branch" and change["new"]:
                _update(
                    key,
                    "SET default_branch_head = :head, default_branch_head_at = :at",
                    f"{_EXISTS} AND default_branch = :branch"
                    " AND (attribute_not_exists(default_branch_head_at) OR default_branch_head_at <= :at)",
                    {":head": {"S": change["new"]}, ":at": {"S": at}, ":branch": {"S": change["name"]}},
                )
    elif event["type"] == _PR_OPENED or event["type"] in _PR_CLOSED:
        number = {"NS": [str(event["pull_request"]["id"])]}
        action = "ADD" if event["type"] == _PR_OPENED else "DELETE"
        _update(key, f"{action} open_pull_request_ids :pr", _EXISTS, {":pr": number})
    record_recent(event)


def _update(key: dict[str, Any], expression: str, condition: str, values: dict[str, Any]) -> None:
    ddb = client("dynamodb")
    # A failed condition means: not imported, not the default branch, or an older event.
    with suppress(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=settings().imports_table,
            Key=key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )


# ---------------------------------------------------------------- recent events (the console's Activity)

RECENT_EVENTS_KEPT = 20  # per project: enough for "watch a push arrive", small enough for one item


def summary(event: dict[str, Any]) -> dict[str, str]:
    """What the console's Activity shows of an event: short strings only, never a payload."""
    actor = event.get("actor") or {}
    detail = ""
    if event.get("ref_changes"):
        detail = ", ".join(
            f"{c['name']} {'deleted' if not c['new'] else 'created' if not c['old'] else 'updated'}"
            for c in event["ref_changes"][:5]
        )
    elif event.get("pull_request"):
        detail = f"#{event['pull_request']['id']} {event['pull_request'].get('title') or ''}".strip()
    return {
        "id": event["id"],
        "type": event["type"],
        "repository": event["repository"]["full_name"],
        "actor": str(actor.get("name") or actor.get("username") or ""),
        "occurred_at": event["occurred_at"],
        "summary": detail[:200],
    }


def record_recent(event: dict[str, Any]) -> None:
    """Add the event to its imported project's recent list (a map keyed by event id, so a redelivery
    writes the same entry), then drop the oldest beyond RECENT_EVENTS_KEPT. Only imported projects
    keep a list: the update is conditional on the project item existing."""
    ddb = client("dynamodb")
    key = project_key(event["provider"]["id"], event["repository"]["id"])
    entry = summary(event)
    add = {
        "TableName": settings().imports_table,
        "Key": key,
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
            ddb.update_item(
                TableName=settings().imports_table,
                Key=key,
                UpdateExpression="SET recent_events = if_not_exists(recent_events, :empty)",
                ConditionExpression=_EXISTS,
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
            answer = ddb.update_item(**add)
    except ddb.exceptions.ConditionalCheckFailedException:
        return  # not an imported repository
    kept = answer.get("Attributes", {}).get("recent_events", {}).get("M", {})
    if len(kept) <= RECENT_EVENTS_KEPT:
        return
    by_age = sorted(kept, key=lambda i: (kept[i]["M"].get("occurred_at", {}).get("S", ""), i), reverse=True)
    old = by_age[RECENT_EVENTS_KEPT:]
    names = {f"#o{n}": event_id for n, event_id in enumerate(old)}
    with suppress(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=settings().imports_table,
            Key=key,
            UpdateExpression="REMOVE " + ", ".join(f"recent_events.{n}" for n in names),
            ConditionExpression=_EXISTS,
            ExpressionAttributeNames=names,
        )
