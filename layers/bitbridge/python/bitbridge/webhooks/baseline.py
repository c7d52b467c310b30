"""The first observation of a repository: what an import (or, without one, the first reconciliation) saw,
recorded as its observed state, so the next reconciliation compares with it and backfills every change
made since.

An import records each page of branches, tags and pull requests as it reads them (open pull requests
only), and finishes the baseline once its data steps are done, with the newest pull request (whatever its
state) and its update time as the watermark: a closed one the ledger lacks, updated before it, is no
change (bitbridge.reconcile.diff). Every entry is added only if the
ledger lacks it (a delivery's claim, an earlier page's entry, stay), so a page redone after a crash, or a
second import, changes nothing bitbridge already recorded.
"""

from __future__ import annotations

from typing import Any

from bitbridge.bitbucket.api import Bitbucket
from bitbridge.change_ids import ref_key, section_value, stamp
from bitbridge.store import observed
from bitbridge.timestamps import iso
from bitbridge.webhooks.normalise import pull_request_section, repository_section

#: The import steps whose pages are recorded, and the ref kind of each.
REF_KINDS = {"branches": "branch", "tags": "tag"}
PULL_REQUESTS = "pull_requests"
NEWEST_FACT = "observed_newest_pr"  # [id, value, stamp] of the newest pull request read so far


def refs_of(bitbucket: Bitbucket, kind: str, values: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    for name, ident, commit in map(bitbucket.ref_head, values):
        out[ref_key(kind, name)] = (ident, commit if commit != ident else None)
    return out


Newest = tuple[int, str, str]  # the newest pull request: id, value, stamp


def pull_requests_of(
    bitbucket: Bitbucket, values: list[dict[str, Any]], newest: Newest | None = None
) -> tuple[dict[int, tuple[str, str | None]], Newest | None]:
    """Open pull requests' (value, stamp), and the newest pull request of `values` and `newest`."""
    opened: dict[int, tuple[str, str | None]] = {}
    for raw in values:
        when = stamp(bitbucket.pull_request_updated(raw)) or ""
        section = pull_request_section(bitbucket.flavor, raw, "pull_request.updated")
        value = section_value(section)
        if section["state"] == "OPEN":
            opened[int(section["id"])] = (value, when or None)
        if when and (newest is None or when > newest[2]):
            newest = (int(section["id"]), value, when)
    return opened, newest


def _with_newest(opened: dict[int, tuple[str, str | None]], newest: Newest | None) -> dict[int, tuple[str, str | None]]:
    """The pull requests a baseline keeps: the open ones, and the newest (closed, it marks the watermark)."""
    if newest is None:
        return opened
    return {**opened, newest[0]: opened.get(newest[0], (newest[1], newest[2]))}


def record_import_page(
    bitbucket: Bitbucket,
    provider_id: str,
    repository_id: str,
    entity: str,
    values: list[dict[str, Any]],
    facts: dict[str, Any],
) -> dict[str, Any]:
    """Record one import page's refs or open pull requests; the job's facts with the newest pull request
    update so far (the watermark :func:`finish_import` records)."""
    if entity in REF_KINDS and values:
        observed.record_seen(provider_id, repository_id, refs_of(bitbucket, REF_KINDS[entity], values), {}, iso())
    elif entity == PULL_REQUESTS and values:
        known = facts.get(NEWEST_FACT)
        opened, newest = pull_requests_of(bitbucket, values, (int(known[0]), known[1], known[2]) if known else None)
        if opened:
            observed.record_seen(provider_id, repository_id, {}, opened, iso())
        if newest is not None:
            facts = {**facts, NEWEST_FACT: list(newest)}
    return facts


def finish_import(
    flavor: str, provider_id: str, repository_id: str, raw_repository: dict[str, Any] | None, facts: dict[str, Any]
) -> None:
    """The import read every branch, tag and pull request: its observation is the baseline."""
    section = repository_section(flavor, raw_repository) if raw_repository else None
    newest = facts.get(NEWEST_FACT)
    prs: dict[int, tuple[str, str | None]] = {int(newest[0]): (str(newest[1]), str(newest[2]))} if newest else {}
    observed.finish_baseline(provider_id, repository_id, iso(), str(newest[2]) if newest else None, section, prs)


def record_first_reconciliation(
    bitbucket: Bitbucket,
    provider_id: str,
    repository_id: str,
    truth_refs: dict[str, tuple[str, str]],
    pull_requests: list[dict[str, Any]] | Any,
    raw_repository: dict[str, Any],
) -> None:
    """No import recorded this repository: the reconciler's first reads are the baseline."""
    opened, newest = pull_requests_of(bitbucket, list(pull_requests))
    refs = {k: (ident, commit if commit != ident else None) for k, (ident, commit) in truth_refs.items()}
    at = iso()
    observed.record_seen(provider_id, repository_id, refs, _with_newest(opened, newest), at)
    observed.finish_baseline(
        provider_id,
        repository_id,
        at,
        newest[2] if newest else None,
        repository_section(bitbucket.flavor, raw_repository),
    )
