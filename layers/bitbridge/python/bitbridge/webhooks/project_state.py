"""Keep an imported project's state current from its events: last push, default-branch head, open PRs.

The project item belongs to imports, which create it; ``bitbridge.store.webhook_state`` writes it here,
each update conditional on the item existing, so events for a repository that was never imported
change nothing. The publisher calls :func:`apply_event` after
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

from typing import Any

from bitbridge.store import observed, webhook_state

_PR_OPENED = "pull_request.opened"
_PR_CLOSED = frozenset({"pull_request.merged", "pull_request.declined", "pull_request.deleted"})


def apply_event(event: dict[str, Any]) -> None:
    """Update the imported project the event concerns, if there is one (the ledger the reconciler
    compares with Bitbucket was updated before the event went out: bitbridge.webhooks.publish)."""
    if event["type"].startswith("subscription."):
        return
    provider_id, repository_id, at = event["provider"]["id"], event["repository"]["id"], event["occurred_at"]
    if event["type"] == "repository.updated":  # the reconciler's events carry the current name
        observed.record_repository(provider_id, repository_id, event["repository"])
    if event["type"] == "repository.push":
        webhook_state.record_push(provider_id, repository_id, event["id"], at)
        for change in event["ref_changes"]:
            if change["kind"] == "branch" and change["new"]:
                webhook_state.record_branch_head(provider_id, repository_id, change["name"], change["new"], at)
    elif event["type"] == _PR_OPENED or event["type"] in _PR_CLOSED:
        is_open = event["type"] == _PR_OPENED
        webhook_state.record_pull_request(provider_id, repository_id, int(event["pull_request"]["id"]), is_open=is_open)
    record_recent(event)


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
    elif event.get("commit_status"):  # never the build's description: a key, a state, a commit
        status = event["commit_status"]
        detail = f"{status['key']}: {str(status['state']).lower()} on {(status.get('commit') or '')[:12]}".strip()
    elif event.get("pull_request"):
        detail = f"#{event['pull_request']['id']} {event['pull_request'].get('title') or ''}".strip()
        if event.get("comment"):  # which comment, not what it says
            comment = event["comment"]
            where = f" on {comment['inline']['path']}" if comment.get("inline") else ""
            detail = f"{detail} · comment {comment['id']}{where}"
        elif event.get("review") and event["review"].get("status"):
            detail = f"{detail} · {event['review']['status'].lower().replace('_', ' ')}"
    return {
        "id": event["id"],
        "type": event["type"],
        "repository": event["repository"]["full_name"],
        "actor": str(actor.get("name") or actor.get("username") or ""),
        "occurred_at": event["occurred_at"],
        "summary": detail[:200],
    }


def record_recent(event: dict[str, Any]) -> None:
    """Keep the event among its imported project's newest RECENT_EVENTS_KEPT (a redelivery writes the
    same entry; projects never imported keep nothing)."""
    webhook_state.record_recent_event(
        event["provider"]["id"], event["repository"]["id"], summary(event), keep=RECENT_EVENTS_KEPT
    )
