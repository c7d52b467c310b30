"""Change ids: one id per change in a repository, the same whichever path reported it.

A change reaches the bus from a webhook delivery (``origin: "webhook"``) or from the reconciler, which
finds what deliveries missed by comparing Bitbucket with what bitbridge recorded (``origin:
"reconciliation"``). Event ``id`` differs between the two (a delivery id, a reconciliation id); the
``change_id`` does not, so a consumer that has seen a change can drop the other copy. The rule (also in
docs/events.md), each input joined and hashed with SHA-256:

- a ref change: provider, repository id, ref kind and name, and the commit it moved to; a deletion
  instead carries the commit the ref pointed at. Moving ``main`` to ``abc`` is one change, however many
  times it is reported.
- ``pull_request.opened`` / ``merged`` / ``declined`` / ``deleted``: provider, repository id, pull request
  id and the type: each happens once in a pull request's life.
- ``pull_request.updated``: the pull request as it is after the update: state, title, target branch and
  source commit (first 12 digits: Cloud abbreviates).
- any other event: its ``id`` (the reconciler never produces those types, so only one path reports them).
- an event's top-level ``change_id``: its one ref change's, for a push of several refs the hash of their
  sorted ids; else as above.

Standard library only: the normaliser calls it on the publisher's path.
"""

from __future__ import annotations

import hashlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - annotations only
    from typing import Any

PR_ONCE = frozenset({"pull_request.opened", "pull_request.merged", "pull_request.declined", "pull_request.deleted"})
PR_UPDATED = "pull_request.updated"
SHORT_COMMIT = 12


def _digest(*parts: object) -> str:
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return "chg-" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:40]


def ref_change_id(provider_id: str, repository_id: str, kind: str, name: str, old: str | None, new: str | None) -> str:
    if new:
        return _digest("ref", provider_id, repository_id, kind, name, "to", new.lower())
    return _digest("ref", provider_id, repository_id, kind, name, "deleted", (old or "").lower())


def pull_request_fingerprint(
    state: str | None, title: str, target_branch: str | None, source_commit: str | None
) -> str:
    """What a ``pull_request.updated`` change is about; also what the reconciler compares."""
    return _digest("pr-state", state or "", title, target_branch or "", (source_commit or "")[:SHORT_COMMIT].lower())


def pull_request_change_id(provider_id: str, repository_id: str, pr: dict[str, Any], event_type: str) -> str:
    if event_type in PR_ONCE:
        return _digest("pr", provider_id, repository_id, pr["id"], event_type)
    fingerprint = pull_request_fingerprint(
        pr.get("state"),
        pr.get("title") or "",
        (pr.get("destination") or {}).get("branch"),
        (pr.get("source") or {}).get("commit"),
    )
    return _digest("pr", provider_id, repository_id, pr["id"], PR_UPDATED, fingerprint)


def assign_change_ids(event: dict[str, Any]) -> dict[str, Any]:
    """Set ``change_id`` on the event and on each of its ref changes (in place; returns the event)."""
    provider_id, repository_id = event["provider"]["id"], event["repository"]["id"]
    ids = []
    for change in event.get("ref_changes") or []:
        change["change_id"] = ref_change_id(
            provider_id, repository_id, change["kind"], change["name"], change["old"], change["new"]
        )
        ids.append(change["change_id"])
    if ids:
        event["change_id"] = ids[0] if len(ids) == 1 else _digest("push", *sorted(ids))
    elif event["type"] in PR_ONCE or event["type"] == PR_UPDATED:
        event["change_id"] = pull_request_change_id(provider_id, repository_id, event["pull_request"], event["type"])
    else:
        event["change_id"] = event["id"]
    return event
