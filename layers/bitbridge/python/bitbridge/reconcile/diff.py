"""What deliveries missed: observed state (bitbridge.store.observed) against Bitbucket's truth. Pure.

Refs: every branch and tag head is compared (a deleted ref is only visible in a full listing).
Pull requests: read newest-updated first and compared down to the watermark, the newest update the
previous run compared; each one's state and fingerprint (title, target branch, source commit) against
the observed one. A changed pull request yields the event for its *current* state: `opened` (not seen
before, or open again), `merged` / `declined` (closed since), else `updated`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bitbridge.store.observed import Observed, pr_value, split_ref_key

CLOSED_TYPES = {"MERGED": "pull_request.merged", "DECLINED": "pull_request.declined"}


@dataclass(frozen=True)
class RefChange:
    kind: str  # branch | tag
    name: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class PullRequestChange:
    event_type: str
    raw: dict[str, Any]  # the pull request as Bitbucket's REST API gave it


@dataclass
class PullRequestScan:
    changes: list[PullRequestChange] = field(default_factory=list)
    watermark: str | None = None  # the newest update seen (the next run's starting point)
    settled_closed: list[int] = field(default_factory=list)  # closed, unchanged: can be forgotten
    compared: int = 0


def ref_changes(observed: dict[str, str], truth: dict[str, str]) -> list[RefChange]:
    out = []
    for key in sorted(set(observed) | set(truth)):
        old, new = observed.get(key), truth.get(key)
        if old != new:
            kind, name = split_ref_key(key)
            out.append(RefChange(kind, name, old, new))
    return out


def pull_request_change_type(observed_value: str | None, section: dict[str, Any]) -> str | None:
    """The event type for a pull request's current `section`, or None when bitbridge saw this already."""
    value = section_value(section)
    if observed_value == value:
        return None
    state = section["state"]
    was_open = observed_value is not None and observed_value.startswith("OPEN|")
    if state == "OPEN":
        return "pull_request.updated" if was_open else "pull_request.opened"
    if state in CLOSED_TYPES and (observed_value is None or was_open):
        return CLOSED_TYPES[state]
    return "pull_request.updated"


def section_value(section: dict[str, Any]) -> str:
    return pr_value(section["state"], section["title"], section["destination"]["branch"], section["source"]["commit"])


def scan_pull_requests(
    observed: Observed,
    pull_requests: Iterable[dict[str, Any]],
    updated: Callable[[dict[str, Any]], str],
    section: Callable[[dict[str, Any]], dict[str, Any]],
) -> PullRequestScan:
    """Compare pull requests (newest update first) down to the observed watermark; stop there, so a
    quiet repository costs one page."""
    scan = PullRequestScan(watermark=observed.pr_watermark)
    closed: list[tuple[int, str]] = []
    for raw in pull_requests:
        stamp = updated(raw)
        if observed.pr_watermark and stamp < observed.pr_watermark:
            break  # everything after this was compared by an earlier run
        scan.compared += 1
        scan.watermark = max(scan.watermark or stamp, stamp)
        current = section(raw)
        seen = observed.prs.get(int(current["id"]))
        kind = pull_request_change_type(seen, current)
        if kind is not None:
            scan.changes.append(PullRequestChange(kind, raw))
        elif current["state"] != "OPEN" and seen is not None:
            closed.append((int(current["id"]), stamp))
    # Forget settled closed ones below the new watermark only: the next run compares again at it.
    scan.settled_closed = [pr for pr, stamp in closed if scan.watermark and stamp < scan.watermark]
    return scan


def baseline_pull_requests(
    pull_requests: Iterable[dict[str, Any]],
    updated: Callable[[dict[str, Any]], str],
    section: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[dict[int, str], str | None]:
    """The first observation: open pull requests' values, and the newest update as the watermark (the
    next run compares from it, inclusive, so pull requests updated at that very moment are kept too)."""
    values: dict[int, str] = {}
    watermark: str | None = None
    for raw in pull_requests:
        stamp = updated(raw)
        watermark = max(watermark or stamp, stamp)
        current = section(raw)
        if current["state"] == "OPEN" or stamp == watermark:
            values[int(current["id"])] = section_value(current)
    return values, watermark
