"""What bitbridge has observed of a subscribed repository: ref heads and pull request states.

One item per repository in the ImportsTable, next to the imported project:
``pk = PROJECT#{provider}#{repository id}``, ``sk = OBSERVED``. The reconciler creates it (the baseline,
read from Bitbucket the first time it reconciles the repository) and compares it with Bitbucket on each
run; the event publisher keeps it current from every published event (webhook or reconciliation), so
a change that reached the bus is not reported again.

- ``refs``: map ``b:{branch}`` / ``t:{tag}`` -> commit hash (a deleted ref is removed);
- ``prs``: map pull request id -> ``{state}|{fingerprint}`` (``change_ids.pull_request_fingerprint``);
- ``pr_watermark``: the newest pull request update the reconciler has compared (ISO, UTC): it reads
  pull requests newest first and stops below it;
- ``repository``: the event's repository section (JSON), refreshed from events.

Updates from events are conditional on the item existing: before its baseline a repository has no
observed state to keep. Written with the low-level client (the publisher's cold path).
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.webhooks.change_ids import pull_request_fingerprint

SK = "OBSERVED"
_EXISTS = "attribute_exists(pk)"


def ref_key(kind: str, name: str) -> str:
    return f"{'t' if kind == 'tag' else 'b'}:{name}"


def split_ref_key(key: str) -> tuple[str, str]:
    prefix, _, name = key.partition(":")
    return ("tag" if prefix == "t" else "branch"), name


def pr_value(state: str | None, title: str, target_branch: str | None, source_commit: str | None) -> str:
    return f"{state or ''}|{pull_request_fingerprint(state, title, target_branch, source_commit)}"


@dataclass
class Observed:
    refs: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)
    pr_watermark: str | None = None
    repository: dict[str, Any] | None = None
    baseline_at: str | None = None


def _key(provider_id: str, repository_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"PROJECT#{provider_id}#{repository_id}"}, "sk": {"S": SK}}


def read(provider_id: str, repository_id: str) -> Observed | None:
    item = (
        client("dynamodb")
        .get_item(TableName=settings().imports_table, Key=_key(provider_id, repository_id), ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return None
    refs = {k: v["S"] for k, v in item.get("refs", {}).get("M", {}).items()}
    prs = {int(k): v["S"] for k, v in item.get("prs", {}).get("M", {}).items()}
    repo = item.get("repository", {}).get("S")
    return Observed(
        refs=refs,
        prs=prs,
        pr_watermark=item.get("pr_watermark", {}).get("S"),
        repository=json.loads(repo) if repo else None,
        baseline_at=item.get("baseline_at", {}).get("S"),
    )


def create_baseline(provider_id: str, repository_id: str, at: str, observed: Observed) -> bool:
    """Record the first observation; False when another run already did (nothing is overwritten)."""
    ddb = client("dynamodb")
    item: dict[str, Any] = {
        **_key(provider_id, repository_id),
        "provider_id": {"S": provider_id},
        "repository_id": {"S": repository_id},
        "refs": {"M": {k: {"S": v} for k, v in observed.refs.items()}},
        "prs": {"M": {str(k): {"S": v} for k, v in observed.prs.items()}},
        "baseline_at": {"S": at},
        "repository": {"S": json.dumps(observed.repository or {}, separators=(",", ":"))},
    }
    if observed.pr_watermark:
        item["pr_watermark"] = {"S": observed.pr_watermark}
    try:
        ddb.put_item(TableName=settings().imports_table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def advance_watermark(provider_id: str, repository_id: str, watermark: str) -> None:
    """Pull requests updated before `watermark` have been compared: later runs start there."""
    _update(
        provider_id,
        repository_id,
        "SET pr_watermark = :w",
        f"{_EXISTS} AND (attribute_not_exists(pr_watermark) OR pr_watermark < :w)",
        {":w": {"S": watermark}},
    )


def forget_pull_requests(provider_id: str, repository_id: str, pr_ids: list[int]) -> None:
    """Drop closed pull requests already compared (they do not change again): keeps the item small."""
    for chunk in range(0, len(pr_ids), 50):
        ids = pr_ids[chunk : chunk + 50]
        names = {f"#p{i}": str(pr) for i, pr in enumerate(ids)}
        _update(provider_id, repository_id, "REMOVE " + ", ".join(f"prs.{n}" for n in names), _EXISTS, None, names)


def record_event(event: dict[str, Any]) -> None:
    """Note what a published event tells about the repository (ref heads, a pull request's state)."""
    provider_id, repository_id = event["provider"]["id"], event["repository"]["id"]
    sets: list[str] = ["repository = :repo"]
    removes: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {":repo": {"S": json.dumps(event["repository"], separators=(",", ":"))}}
    for n, change in enumerate(event.get("ref_changes") or []):
        names[f"#r{n}"] = ref_key(change["kind"], change["name"])
        if change["new"]:
            sets.append(f"refs.#r{n} = :r{n}")
            values[f":r{n}"] = {"S": change["new"]}
        else:
            removes.append(f"refs.#r{n}")
    pr = event.get("pull_request")
    if pr is not None and pr.get("state"):
        names["#pr"] = str(pr["id"])
        sets.append("prs.#pr = :pr")
        values[":pr"] = {"S": pr_value(pr["state"], pr["title"], pr["destination"]["branch"], pr["source"]["commit"])}
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    _update(provider_id, repository_id, expression, _EXISTS, values, names or None)


def _update(
    provider_id: str,
    repository_id: str,
    expression: str,
    condition: str,
    values: dict[str, Any] | None,
    names: dict[str, str] | None = None,
) -> None:
    ddb = client("dynamodb")
    extra: dict[str, Any] = {}
    if values:
        extra["ExpressionAttributeValues"] = values
    if names:
        extra["ExpressionAttributeNames"] = names
    # A failed condition: no baseline yet (nothing to keep current) or an older watermark.
    with suppress(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=settings().imports_table,
            Key=_key(provider_id, repository_id),
            UpdateExpression=expression,
            ConditionExpression=condition,
            **extra,
        )
