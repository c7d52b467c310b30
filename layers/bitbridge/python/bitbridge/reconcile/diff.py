"""What deliveries missed: the repository's ledger (bitbridge.change_ids) against Bitbucket's truth. Pure.

Each difference is an *observation*: the ref or pull request, the claim the ledger was at when read
(``seen``), and what Bitbucket shows. The publisher claims it only if nothing was claimed on that ref or
pull request since (bitbridge.change_ids.Ledger.apply_observation), so the ledger must be read before
Bitbucket is.

Refs: every branch and tag head is compared (a deleted ref is only visible in a full listing), by ident
(the commit; a Data Center tag's own object, as pushes name it).
Pull requests: read newest-updated first and compared down to the watermark; each one's state and
fingerprint (title, target branch, source commit) against the ledger's. A changed pull request yields
the event for its *current* state: `opened` (not seen before, or open again), `merged` / `declined`
(closed since), else `updated`. A pull request the ledger does not hold, updated before the watermark,
was seen by an earlier observation and not kept (closed before the baseline, or settled): not a change.
One updated at the watermark is compared: it may be one the last run found and the publisher has not
claimed yet (the baseline keeps the newest pull request, so that one is no change).

Comments and reviews (:func:`review_changes`): a comment or a person's review status does not move a pull
request's update time on either flavor, so they are compared per pull request by the review sweep (the
open pull requests, and those the scan found changed): each comment's value (bitbridge.change_ids
.comment_value) and each person's status against the ledger's items. A comment the ledger lacks is
`created` (or, made before the ledger began recording reviews, recorded as a baseline), a changed one
`updated`, one marked deleted or no longer listed `deleted`; a status that differs from the recorded one
(none recorded: UNAPPROVED) the event of the new status. Before the first sweep of a repository
(``reviews_at`` unset) everything seen is a baseline.
Pull requests deleted (Data Center): :func:`deleted_candidates` names the open ones the ledger holds that
neither listing showed; the reconciler asks Bitbucket for each, and one it no longer has is `deleted`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bitbridge.bitbucket.review import UNAPPROVED, Discussed, Standing
from bitbridge.change_ids import (
    COMMENT_DELETED,
    DELETED_VALUE,
    ItemObservation,
    Ledger,
    PrObservation,
    RefObservation,
    comment_key,
    is_open,
    item_pull_request,
    review_key,
    section_value,
    split_ref_key,
    stamp,
)
from bitbridge.store.observed import Observed
from bitbridge.webhooks.normalise import REVIEW_TYPES

CLOSED_TYPES = {"MERGED": "pull_request.merged", "DECLINED": "pull_request.declined"}


@dataclass(frozen=True)
class RefChange:
    kind: str  # branch | tag
    name: str
    old: str | None  # commits, as events show them
    new: str | None
    observation: RefObservation


@dataclass(frozen=True)
class PullRequestChange:
    event_type: str
    raw: dict[str, Any]  # the pull request as Bitbucket's REST API gave it
    observation: PrObservation


@dataclass
class PullRequestScan:
    changes: list[PullRequestChange] = field(default_factory=list)
    watermark: str | None = None  # where the next run starts comparing (if every confirmation holds)
    settled_closed: dict[int, str] = field(default_factory=dict)  # closed, unchanged: id -> stamp
    confirm: dict[int, str] = field(default_factory=dict)  # unchanged, updated since recorded: id -> stamp
    compared: int = 0
    listed: set[int] = field(default_factory=set)  # every pull request the scan read (compared or not)


@dataclass(frozen=True)
class ReviewChange:
    """A comment or a review status that changed: its event type, the pull request (REST), the comment or
    the person's standing, and the status the ledger recorded (a review's previous status)."""

    event_type: str
    pr: dict[str, Any]
    observation: ItemObservation
    comment: Discussed | None = None
    standing: Standing | None = None
    previous: str | None = None


@dataclass
class ReviewScan:
    changes: list[ReviewChange] = field(default_factory=list)
    baseline: dict[str, str] = field(default_factory=dict)  # item key -> value, recorded without telling


def review_changes(
    ledger: Ledger,
    pr: dict[str, Any],
    pr_id: int,
    discussion: list[Discussed],
    standings: dict[str, Standing] | None,
    value_of: Callable[[Discussed], str],
    read_at: str | None,
    scan: ReviewScan | None = None,
) -> ReviewScan:
    """One pull request's comments and review statuses (`standings`; None: not read) against the ledger."""
    scan = scan or ReviewScan()
    first = ledger.reviews_at is None
    listed: set[str] = set()
    for comment in discussion:
        key, value = comment_key(pr_id, int(comment.raw["id"])), value_of(comment)
        listed.add(key)
        entry = ledger.items.get(key)
        if entry is None and (first or (comment.created_at or "") < (ledger.reviews_at or "")):
            scan.baseline[key] = value  # before bitbridge recorded reviews: nothing to tell
            continue
        if entry is None and comment.deleted:
            continue  # made and deleted with neither told: nothing to tell
        if entry is not None and (entry.value == value or value < entry.value):
            continue  # told (or a newer state told)
        kind = "deleted" if comment.deleted else "created" if entry is None else "updated"
        seen = ItemObservation(key, entry.number if entry else 0, value, read_at)
        scan.changes.append(ReviewChange(f"pull_request.comment.{kind}", pr, seen, comment=comment))
    for key, entry in ledger.items.items():  # recorded, no longer listed: deleted (Data Center removes them)
        mine = key.startswith("c:") and item_pull_request(key) == pr_id
        if mine and key not in listed and entry.value != COMMENT_DELETED and not first:
            gone = Discussed({"id": int(key.rsplit(":", 1)[1])}, None, None, True)
            seen = ItemObservation(key, entry.number, COMMENT_DELETED, read_at)
            scan.changes.append(ReviewChange("pull_request.comment.deleted", pr, seen, comment=gone))
    for person, standing in sorted((standings or {}).items()):
        key = review_key(pr_id, person)
        entry = ledger.items.get(key)
        if first:
            scan.baseline[key] = standing.status
            continue
        recorded = entry.value if entry else UNAPPROVED
        if recorded == standing.status:
            continue
        seen = ItemObservation(key, entry.number if entry else 0, standing.status, read_at)
        previous = recorded if entry else None
        change = ReviewChange(REVIEW_TYPES[standing.status], pr, seen, standing=standing, previous=previous)
        scan.changes.append(change)
    return scan


def deleted_candidates(ledger: Ledger, listed: set[int]) -> list[int]:
    """Pull requests the ledger holds open that no listing of this run showed: deleted, or gone from view."""
    return sorted(p for p, e in ledger.prs.items() if is_open(e.value) and p not in listed)


def deletion(ledger: Ledger, pr_id: int) -> PrObservation:
    """The observation of a pull request Bitbucket no longer has (its recorded update time kept)."""
    entry = ledger.prs[pr_id]
    return PrObservation(pr_id, entry.number, DELETED_VALUE, entry.stamp)


def ref_changes(ledger: Ledger, truth: dict[str, tuple[str, str]], read_at: str | None = None) -> list[RefChange]:
    """Refs whose head differs from Bitbucket's (`truth`: key -> (ident, commit), read at `read_at`)."""
    out = []
    recorded = {key for key, entry in ledger.refs.items() if entry.head is not None}
    for key in sorted(recorded | set(truth)):
        entry = ledger.refs.get(key)
        head = entry.head if entry else None
        ident, commit = truth.get(key, (None, None))
        if head == ident:
            continue
        kind, name = split_ref_key(key)
        number = entry.number if entry else 0
        seen = RefObservation(key, number, head, ident, commit if commit != ident else None, read_at)
        out.append(RefChange(kind, name, entry.shown if entry else None, commit, seen))
    return out


def pull_request_change_type(observed_value: str | None, section: dict[str, Any]) -> str | None:
    """The event type for a pull request's current `section`, or None when bitbridge saw this already."""
    value = section_value(section)
    if observed_value == value:
        return None
    state = section["state"]
    was_open = is_open(observed_value)
    if state == "OPEN":
        return "pull_request.updated" if was_open else "pull_request.opened"
    if state in CLOSED_TYPES and (observed_value is None or was_open):
        return CLOSED_TYPES[state]
    return "pull_request.updated"


def scan_pull_requests(
    observed: Observed,
    pull_requests: Iterable[dict[str, Any]],
    updated: Callable[[dict[str, Any]], str],
    section: Callable[[dict[str, Any]], dict[str, Any]],
) -> PullRequestScan:
    """Compare pull requests (newest update first) down to the watermark; stop there, so a quiet
    repository costs one page. The next run starts at the oldest one that differed (its observation may
    lose to a delivery, and then it is compared again), else at the newest one read. One that agrees but
    was updated since the ledger recorded it is *confirmed* (its update time recorded, `confirm`): a late
    delivery of a state in between is then older than what bitbridge knows, and cannot bring it back."""
    watermark, ledger = observed.pr_watermark, observed.ledger
    scan = PullRequestScan(watermark=watermark)
    newest: str | None = None
    differing: list[str] = []
    closed: list[tuple[int, str]] = []
    for raw in pull_requests:
        when = stamp(updated(raw)) or ""
        scan.listed.add(int(raw["id"]))
        if watermark and when < watermark:
            break  # everything after this was compared by an earlier run
        scan.compared += 1
        newest = max(newest or when, when)
        current = section(raw)
        pr_id = int(current["id"])
        entry = ledger.prs.get(pr_id)
        if entry is None and watermark and when < watermark:
            continue  # seen by an earlier observation and not kept
        kind = pull_request_change_type(entry.value if entry else None, current)
        if kind is not None:
            seen = PrObservation(pr_id, entry.number if entry else 0, section_value(current), when)
            scan.changes.append(PullRequestChange(kind, raw, seen))
            differing.append(when)
        else:
            if entry is not None and (entry.stamp or "") < when:
                scan.confirm[pr_id] = when
            if current["state"] != "OPEN" and entry is not None:
                closed.append((pr_id, when))
    candidates = [w for w in (min(differing, default=None) or newest, watermark) if w]
    scan.watermark = max(candidates) if candidates else None
    # Forget settled closed ones below the new watermark only: the next run compares again at it.
    scan.settled_closed = {pr: when for pr, when in closed if scan.watermark and when < scan.watermark}
    return scan


def upkeep(
    scan: PullRequestScan, previous: str | None, confirm: Callable[[dict[int, str]], list[int]]
) -> tuple[str | None, list[int]]:
    """After a scan: confirm the pull requests that agree (``confirm`` records their update times and
    answers the ids it could not), then the watermark to keep, and the settled closed ones to forget."""
    unconfirmed = confirm({pr: when for pr, when in scan.confirm.items() if pr not in scan.settled_closed})
    watermark = held_watermark(scan, unconfirmed, previous)
    return watermark, [pr for pr, when in scan.settled_closed.items() if watermark and when < watermark]


def held_watermark(scan: PullRequestScan, unconfirmed: list[int], previous: str | None) -> str | None:
    """The watermark when some confirmations did not hold (a delivery changed those pull requests since
    the read): no later than the oldest of them, so the next run compares them again."""
    stamps = [scan.confirm[pr] for pr in unconfirmed if pr in scan.confirm]
    if not stamps or scan.watermark is None:
        return scan.watermark
    return max(w for w in (min(scan.watermark, *stamps), previous) if w)
