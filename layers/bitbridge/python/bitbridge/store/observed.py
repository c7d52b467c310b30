"""What bitbridge has observed of a subscribed repository: its ledger (``bitbridge.change_ids``).

One item per repository in the ImportsTable, next to the imported project:
``pk = PROJECT#{provider}#{repository id}``, ``sk = OBSERVED``.

- ``epoch`` (random, drawn when the item is made) and ``clock`` (how many transitions were claimed): the
  change ids' inputs; ``clock`` is also the item's version, so every claim is one conditional write;
- one attribute per ref, ``ref:b:{branch}`` / ``ref:t:{tag}``, and per pull request, ``pr:{id}``: the entry
  as a JSON list (``[head, claim, at, commit, jumps]`` / ``[value, stamp, claim, at, spans, told]``; a jump is
  ``[start, end, pos, claim, at, read_at]``, a span ``[lo, hi, claim, at]``); per pull request comment and
  review state, ``rv:c:{pr}:{comment}`` / ``rv:v:{pr}:{person}``: ``[value, claim, at, jumps]``. Top-level
  attributes, not maps, so the import can add each one with ``if_not_exists`` and no parent to create;
- ``recent``: the newest reports' outcomes by source (JSON), so a retried delivery gets the same ids;
- ``baseline_at``: when the first observation (the import's, else the first reconciliation's) finished;
- ``pr_watermark``: the pull request update the reconciler compares down to (ISO, UTC);
- ``reviews_at``: when the reconciler first recorded the open pull requests' comments and reviews;
- ``repository``: the event's repository section (JSON), for the reconciler's events.

Items written before the ledger (``refs`` / ``prs`` maps, no clock) are read as a baseline.
The publisher makes the item on the first claim if nothing did before (a hook installed without an
import). One item holds every ref and pull request bitbridge tracks: about 4,000 refs and open pull
requests fit DynamoDB's 400 KB; past that a claim fails with :class:`TooLarge` (the publisher still
publishes, with ids of its own). Low-level client: the publisher's cold path.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from bitbridge.aws import client
from bitbridge.change_ids import (
    ITEM_TOUCHED,
    ItemEntry,
    Jump,
    Ledger,
    Outcome,
    PrEntry,
    RefEntry,
    Span,
)
from bitbridge.config import settings

SK = "OBSERVED"
REF_PREFIX = "ref:"
PR_PREFIX = "pr:"
ITEM_PREFIX = "rv:"
#: Attributes per import write: an UpdateExpression is at most 4 KB.
CHUNK = 80
BATCH_READ = 100  # keys per BatchGetItem (DynamoDB's maximum)
BATCH_READ_ATTEMPTS = 5
CLAIM_ATTEMPTS = 8  # conflicting writers (two stream shards, a replay) retry a claim this often


class TooLarge(Exception):
    """The repository's observed state no longer fits one DynamoDB item."""


@dataclass
class Observed:
    ledger: Ledger
    baseline_at: str | None = None
    pr_watermark: str | None = None
    repository: dict[str, Any] | None = None
    exists: bool = True  # False: not stored yet (the ledger is new)
    version: int = 0  # the stored clock this was read at
    legacy: bool = False  # holds the maps written before the ledger (see migrate_legacy)


def _key(provider_id: str, repository_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"PROJECT#{provider_id}#{repository_id}"}, "sk": {"S": SK}}


# ------------------------------------------------------------------------------------------ entries


def ref_attribute(key: str) -> str:
    return REF_PREFIX + key


def pr_attribute(pr_id: int) -> str:
    return f"{PR_PREFIX}{pr_id}"


def _dump_ref(entry: RefEntry) -> str:
    jumps = [[j.start, j.end, j.pos, j.number, j.at, j.read_at] for j in entry.jumps]
    return json.dumps([entry.head, entry.number, entry.at, entry.commit, jumps], separators=(",", ":"))


def _load_ref(text: str) -> RefEntry:
    head, number, at, commit, jumps = json.loads(text)
    return RefEntry(head, int(number), str(at), commit, [Jump(*j) for j in jumps])


def _dump_pr(entry: PrEntry) -> str:
    spans = [[s.lo, s.hi, s.number, s.at] for s in entry.spans]
    return json.dumps([entry.value, entry.stamp, entry.number, entry.at, spans, entry.told], separators=(",", ":"))


def _load_pr(text: str) -> PrEntry:
    value, stamp, number, at, spans, *told = json.loads(text)
    return PrEntry(str(value), stamp, int(number), str(at), [Span(*s) for s in spans], told[0] if told else None)


def item_attribute(key: str) -> str:
    return ITEM_PREFIX + key


def _dump_item(entry: ItemEntry) -> str:
    jumps = [[j.start, j.end, j.pos, j.number, j.at, j.read_at] for j in entry.jumps]
    return json.dumps([entry.value, entry.number, entry.at, jumps], separators=(",", ":"))


def _load_item(text: str) -> ItemEntry:
    value, number, at, jumps = json.loads(text)
    return ItemEntry(str(value), int(number), str(at), [Jump(*j) for j in jumps])


def _dump_entry(ledger: Ledger, key: str | int) -> tuple[str, str]:
    if isinstance(key, str) and key.startswith(ITEM_TOUCHED):
        item = key.removeprefix(ITEM_TOUCHED)
        return item_attribute(item), _dump_item(ledger.items[item])
    if isinstance(key, int):
        return pr_attribute(key), _dump_pr(ledger.prs[key])
    return ref_attribute(key), _dump_ref(ledger.refs[key])


def _from_item(item: dict[str, Any]) -> Observed:
    refs: dict[str, RefEntry] = {}
    prs: dict[int, PrEntry] = {}
    items: dict[str, ItemEntry] = {}
    # Written before the ledger: a baseline (claim 0) for what has no entry of its own.
    for key, value in item.get("refs", {}).get("M", {}).items():
        refs[key] = RefEntry(value["S"])
    for key, value in item.get("prs", {}).get("M", {}).items():
        prs[int(key)] = PrEntry(value["S"], None)
    for name, value in item.items():
        if name.startswith(REF_PREFIX):
            refs[name.removeprefix(REF_PREFIX)] = _load_ref(value["S"])
        elif name.startswith(PR_PREFIX):
            prs[int(name.removeprefix(PR_PREFIX))] = _load_pr(value["S"])
        elif name.startswith(ITEM_PREFIX):
            items[name.removeprefix(ITEM_PREFIX)] = _load_item(value["S"])
    recent = {
        source: [Outcome(kind, int(number)) for kind, number in outcomes]
        for source, outcomes in json.loads(item.get("recent", {}).get("S", "{}")).items()
    }
    clock = int(item.get("clock", {}).get("N", "0"))
    epoch = item.get("epoch", {}).get("S") or ""
    repository = item.get("repository", {}).get("S")
    ledger = Ledger(epoch, clock, refs, prs, recent, items)
    ledger.watermark = item.get("pr_watermark", {}).get("S")
    ledger.reviews_at = item.get("reviews_at", {}).get("S")
    return Observed(
        ledger=ledger,
        baseline_at=item.get("baseline_at", {}).get("S"),
        pr_watermark=item.get("pr_watermark", {}).get("S"),
        repository=json.loads(repository) if repository else None,
        exists=True,
        version=clock,
        legacy="refs" in item or "prs" in item,
    )


# ------------------------------------------------------------------------------------------ reads


def read(provider_id: str, repository_id: str) -> Observed | None:
    item = (
        client("dynamodb")
        .get_item(TableName=settings().imports_table, Key=_key(provider_id, repository_id), ConsistentRead=True)
        .get("Item")
    )
    return _from_item(item) if item else None


def read_many(repositories: list[tuple[str, str]]) -> dict[tuple[str, str], Observed]:
    """Many repositories' ledgers ((provider, repository id) -> ledger; absent: none yet), strongly
    consistent, in BatchGetItem requests of BATCH_READ keys: the reconciler's run reads a page of ledgers in
    one round trip instead of one each. Keys DynamoDB leaves unprocessed (throttling, 16 MB) are asked again."""
    ddb, table = client("dynamodb"), settings().imports_table
    wanted = {_key(p, r)["pk"]["S"]: (p, r) for p, r in repositories}
    pks = list(wanted)
    found: dict[tuple[str, str], Observed] = {}
    for start in range(0, len(pks), BATCH_READ):
        keys = [{"pk": {"S": pk}, "sk": {"S": SK}} for pk in pks[start : start + BATCH_READ]]
        pending: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(BATCH_READ_ATTEMPTS):
            answer = ddb.batch_get_item(RequestItems=pending)
            for item in answer.get("Responses", {}).get(table, []):
                found[wanted[item["pk"]["S"]]] = _from_item(item)
            pending = answer.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(min(1.0, 0.05 * 2**attempt))  # DynamoDB asks for back-off on unprocessed keys
        else:
            for key in pending[table]["Keys"]:  # still unanswered: read them one by one
                pair = wanted[key["pk"]["S"]]
                if (seen := read(*pair)) is not None:
                    found[pair] = seen
    return found


def new_epoch() -> str:
    return secrets.token_hex(8)


# ------------------------------------------------------------------------------------------ claims


def claim[T](
    provider_id: str,
    repository_id: str,
    apply: Callable[[Observed], T],
    repository: dict[str, Any] | None = None,
) -> T:
    """Read the ledger (made empty if there is none), ``apply`` the reports to it, and write what changed
    in one conditional write on the clock; on a conflicting writer, read again and apply again."""
    for _ in range(CLAIM_ATTEMPTS):
        current = read(provider_id, repository_id)
        if current is None:
            current = Observed(Ledger(new_epoch()), exists=False)
        result = apply(current)
        try:
            _save(provider_id, repository_id, current, repository)
        except _Conflict:
            continue
        return result
    raise RuntimeError(f"observed state of {repository_id} kept changing under {CLAIM_ATTEMPTS} claims")


class _Conflict(Exception):
    pass


def _save(provider_id: str, repository_id: str, observed: Observed, repository: dict[str, Any] | None) -> None:
    ledger = observed.ledger
    if observed.exists and ledger.clock == observed.version and not ledger.touched:
        return  # nothing claimed or absorbed: nothing to write (a stale observation, a remembered retry)
    names: dict[str, str] = {"#clock": "clock", "#recent": "recent"}
    values: dict[str, Any] = {
        ":clock": {"N": str(ledger.clock)},
        ":recent": {"S": _dump_recent(ledger)},
    }
    sets = ["#clock = :clock", "#recent = :recent"]
    for n, key in enumerate(sorted(ledger.touched, key=str)):
        attribute, text = _dump_entry(ledger, key)
        names[f"#e{n}"], values[f":e{n}"] = attribute, {"S": text}
        sets.append(f"#e{n} = :e{n}")
    if repository is not None and repository != observed.repository:
        values[":repo"] = {"S": json.dumps(repository, separators=(",", ":"))}
        sets.append("repository = :repo")
    if observed.exists:
        condition = "#clock = :version"
        values[":version"] = {"N": str(observed.version)}
    else:
        condition = "attribute_not_exists(pk)"
        names["#epoch"] = "epoch"
        values.update({":epoch": {"S": ledger.epoch}, ":p": {"S": provider_id}, ":r": {"S": repository_id}})
        sets += ["#epoch = :epoch", "provider_id = :p", "repository_id = :r"]
    ddb = client("dynamodb")
    try:
        ddb.update_item(
            TableName=settings().imports_table,
            Key=_key(provider_id, repository_id),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        raise _Conflict() from None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException" and "size" in str(exc).lower():
            raise TooLarge(f"observed state of {repository_id} exceeds the item size") from exc
        raise
    ledger.touched.clear()
    observed.exists, observed.version = True, ledger.clock


def _dump_recent(ledger: Ledger) -> str:
    recent = {source: [[o.kind, o.number] for o in outcomes] for source, outcomes in ledger.recent.items()}
    return json.dumps(recent, separators=(",", ":"))


# ------------------------------------------------------------------------------------------ baseline


def record_seen(
    provider_id: str,
    repository_id: str,
    refs: dict[str, tuple[str, str | None]],
    prs: dict[int, tuple[str, str | None]],
    at: str,
) -> int:
    """Record refs (key -> (ident, commit)) and pull requests (id -> (value, stamp)) bitbridge has not
    recorded yet, as a baseline (claim 0): what an import or a first reconciliation saw. An entry that
    exists (a delivery's, an earlier page's) is kept. Returns the writes made."""
    entries = [(ref_attribute(k), _dump_ref(RefEntry(ident, 0, at, commit))) for k, (ident, commit) in refs.items()]
    entries += [(pr_attribute(pr), _dump_pr(PrEntry(value, stamp, 0, at))) for pr, (value, stamp) in prs.items()]
    writes = 0
    for start in range(0, len(entries), CHUNK):
        chunk = entries[start : start + CHUNK]
        names = {"#clock": "clock", "#epoch": "epoch"} | {f"#{n}": name for n, (name, _) in enumerate(chunk)}
        values: dict[str, Any] = {
            ":zero": {"N": "0"},
            ":epoch": {"S": new_epoch()},
            ":p": {"S": provider_id},
            ":r": {"S": repository_id},
        } | {f":{n}": {"S": text} for n, (_, text) in enumerate(chunk)}
        sets = [
            "#clock = if_not_exists(#clock, :zero)",
            "#epoch = if_not_exists(#epoch, :epoch)",
            "provider_id = :p",
            "repository_id = :r",
        ]
        sets += [f"#{n} = if_not_exists(#{n}, :{n})" for n in range(len(chunk))]
        _plain_update(provider_id, repository_id, "SET " + ", ".join(sets), names, values)
        writes += 1
    return writes


def record_reviews_baseline(provider_id: str, repository_id: str, items: dict[str, str], at: str) -> int:
    """Record comments and review states (item key -> value) bitbridge has not recorded yet, as a baseline
    (claim 0), and when review tracking began (``reviews_at``, kept once set): what the reconciler's first
    look at the open pull requests' reviews saw. An entry that exists (a delivery's) is kept."""
    entries = [(item_attribute(k), _dump_item(ItemEntry(v, 0, at))) for k, v in sorted(items.items())]
    writes = 0
    for start in range(0, max(len(entries), 1), CHUNK):
        chunk = entries[start : start + CHUNK]
        names = {f"#{n}": name for n, (name, _) in enumerate(chunk)}
        values: dict[str, Any] = {":at": {"S": at}} | {f":{n}": {"S": text} for n, (_, text) in enumerate(chunk)}
        sets = ["reviews_at = if_not_exists(reviews_at, :at)"]
        sets += [f"#{n} = if_not_exists(#{n}, :{n})" for n in range(len(chunk))]
        _plain_update(provider_id, repository_id, "SET " + ", ".join(sets), names, values)
        writes += 1
    return writes


def finish_baseline(
    provider_id: str,
    repository_id: str,
    at: str,
    watermark: str | None,
    repository: dict[str, Any] | None,
    prs: dict[int, tuple[str, str | None]] | None = None,
) -> None:
    """The first observation is complete: from now on a ref or pull request the ledger lacks is new.
    `prs`: pull requests to record with it, as :func:`record_seen` does (the newest, at the watermark)."""
    names = {"#clock": "clock", "#epoch": "epoch"}
    values: dict[str, Any] = {
        ":at": {"S": at},
        ":zero": {"N": "0"},
        ":epoch": {"S": new_epoch()},
        ":p": {"S": provider_id},
        ":r": {"S": repository_id},
    }
    sets = [
        "baseline_at = if_not_exists(baseline_at, :at)",
        "#clock = if_not_exists(#clock, :zero)",
        "#epoch = if_not_exists(#epoch, :epoch)",
        "provider_id = :p",
        "repository_id = :r",
    ]
    if watermark:
        values[":w"] = {"S": watermark}
        sets.append("pr_watermark = if_not_exists(pr_watermark, :w)")
    if repository is not None:
        values[":repo"] = {"S": json.dumps(repository, separators=(",", ":"))}
        sets.append("repository = :repo")
    for n, (pr_id, (value, when)) in enumerate(sorted((prs or {}).items())):
        names[f"#p{n}"], values[f":p{n}"] = pr_attribute(pr_id), {"S": _dump_pr(PrEntry(value, when, 0, at))}
        sets.append(f"#p{n} = if_not_exists(#p{n}, :p{n})")
    _plain_update(provider_id, repository_id, "SET " + ", ".join(sets), names, values)


def migrate_legacy(provider_id: str, repository_id: str, observed: Observed, at: str) -> None:
    """Move the maps written before the ledger to entries of their own (a baseline), then drop them."""
    ledger = observed.ledger
    record_seen(
        provider_id,
        repository_id,
        {k: (e.head, e.commit) for k, e in ledger.refs.items() if e.head is not None and not e.number},
        {p: (e.value, e.stamp) for p, e in ledger.prs.items() if not e.number},
        at,
    )
    _plain_update(provider_id, repository_id, "REMOVE #refs, #prs", {"#refs": "refs", "#prs": "prs"}, {})


def record_repository(provider_id: str, repository_id: str, repository: dict[str, Any]) -> None:
    """A renamed or edited repository's section, for the reconciler's next events (kept items only)."""
    ddb = client("dynamodb")
    with suppress(ddb.exceptions.ConditionalCheckFailedException):  # not observed: nothing to keep current
        ddb.update_item(
            TableName=settings().imports_table,
            Key=_key(provider_id, repository_id),
            UpdateExpression="SET repository = :repo",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":repo": {"S": json.dumps(repository, separators=(",", ":"))}},
        )


def advance_watermark(provider_id: str, repository_id: str, watermark: str) -> None:
    """Pull requests updated before `watermark` have been compared and agree: later runs start there."""
    ddb = client("dynamodb")
    with suppress(ddb.exceptions.ConditionalCheckFailedException):  # an older watermark, or no item
        ddb.update_item(
            TableName=settings().imports_table,
            Key=_key(provider_id, repository_id),
            UpdateExpression="SET pr_watermark = :w",
            ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(pr_watermark) OR pr_watermark < :w)",
            ExpressionAttributeValues={":w": {"S": watermark}},
        )


def confirm_pull_requests(
    provider_id: str, repository_id: str, observed: Observed, stamps: dict[int, str]
) -> list[int]:
    """Record a newer update time for pull requests whose state agrees with Bitbucket's, each only if its
    entry is unchanged since `observed` was read; the ids not confirmed (their chunk changed meanwhile)."""
    ledger = observed.ledger
    entries = []
    for pr_id, when in sorted(stamps.items()):
        entry = ledger.prs.get(pr_id)
        if entry is not None:
            newer = PrEntry(entry.value, when, entry.number, entry.at, entry.spans, entry.told)
            entries.append((pr_id, pr_attribute(pr_id), _dump_pr(entry), _dump_pr(newer)))
    failed: list[int] = []
    ddb = client("dynamodb")
    for start in range(0, len(entries), 25):
        chunk = entries[start : start + 25]
        names = {f"#{n}": name for n, (_, name, _, _) in enumerate(chunk)}
        values = {f":o{n}": {"S": old} for n, (_, _, old, _) in enumerate(chunk)}
        values |= {f":n{n}": {"S": new} for n, (_, _, _, new) in enumerate(chunk)}
        try:
            ddb.update_item(
                TableName=settings().imports_table,
                Key=_key(provider_id, repository_id),
                UpdateExpression="SET " + ", ".join(f"#{n} = :n{n}" for n in range(len(chunk))),
                ConditionExpression=" AND ".join(f"#{n} = :o{n}" for n in range(len(chunk))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ddb.exceptions.ConditionalCheckFailedException:
            failed += [pr_id for pr_id, _, _, _ in chunk]
    return failed


def forget(provider_id: str, repository_id: str, observed: Observed, refs: list[str], prs: list[int]) -> None:
    """Remove entries that need no keeping (settled closed or deleted pull requests with their comments and
    reviews, refs deleted long ago), each only if unchanged since `observed` was read (a chunk with a changed
    one is left for the next run)."""
    ledger = observed.ledger
    entries = [(ref_attribute(k), _dump_ref(ledger.refs[k])) for k in refs if k in ledger.refs]
    entries += [(item_attribute(k), _dump_item(ledger.items[k])) for k in ledger.items_of(prs)]
    entries += [(pr_attribute(p), _dump_pr(ledger.prs[p])) for p in prs if p in ledger.prs]
    ddb = client("dynamodb")
    for start in range(0, len(entries), 25):
        chunk = entries[start : start + 25]
        names = {f"#{n}": name for n, (name, _) in enumerate(chunk)}
        values = {f":{n}": {"S": text} for n, (_, text) in enumerate(chunk)}
        try:
            ddb.update_item(
                TableName=settings().imports_table,
                Key=_key(provider_id, repository_id),
                UpdateExpression="REMOVE " + ", ".join(names),
                ConditionExpression=" AND ".join(f"#{n} = :{n}" for n in range(len(chunk))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ddb.exceptions.ConditionalCheckFailedException:
            continue  # one changed meanwhile: the next run forgets this chunk


def _plain_update(
    provider_id: str, repository_id: str, expression: str, names: dict[str, str], values: dict[str, Any]
) -> None:
    extra: dict[str, Any] = {}
    if names:
        extra["ExpressionAttributeNames"] = names
    if values:
        extra["ExpressionAttributeValues"] = values
    try:
        client("dynamodb").update_item(
            TableName=settings().imports_table,
            Key=_key(provider_id, repository_id),
            UpdateExpression=expression,
            **extra,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException" and "size" in str(exc).lower():
            raise TooLarge(f"observed state of {repository_id} exceeds the item size") from exc
        raise
