"""Change ids: one id per change of a ref or a pull request, the same whichever path reported it, and
never the id of another change.

A *change* is one transition in the history bitbridge records for a ref or a pull request: the
repository's :class:`Ledger`, kept with its observed state (``bitbridge.store.observed``). Two paths
report changes: a webhook delivery (``origin: "webhook"``) and the reconciler, which compares Bitbucket
with the ledger (``origin: "reconciliation"``). The event publisher applies both to the ledger, in the
deliveries stream's order, with one conditional write per repository (:meth:`Ledger.apply_delivery`,
:meth:`Ledger.apply_observation`). Whichever path reports a transition first *claims* it: it takes the
next number of the repository's clock and is published; the other *absorbs* it (not published again).
The change id hashes the provider, the repository, the ledger's epoch (drawn when the ledger is made)
and that number, so the same transition reported twice has one id, and two transitions to the same
state at different times (main X->Y, Y->X, X->Y) have three.

A delivery's ref change ``old -> new`` (the commits; for a Data Center tag, the tag's own object, the
hash both Bitbucket's payload and its REST API name):

1. ``old`` is the recorded head: a new transition, claimed.
2. else it continues a reconciler *jump* still being matched (the reconciler saw the ref go from start to
   end; the deliveries of the moves in between arrived after it), and it was received before the
   reconciler read Bitbucket (or is a retry Bitbucket made within :data:`RETRY_WINDOW` of that read: its
   first attempt may predate it): absorbed into the jump. A delivery received later is a move made after
   the read, even when it starts where the jump did.
3. else a gap (the delivery before it was lost, or it tells of a state bitbridge never told): claimed, and
   the head is what it says. The ledger's head is what consumers were last told; the reconciler brings it
   back to Bitbucket's.

A pull request's lifecycle delivery (opened, updated, merged, declined, deleted) carries its state (state,
title, target branch, source commit: :func:`pr_value`) and Bitbucket's update time (the *stamp*):

1. newer than the recorded state (or as old with another state): claimed.
2. within a reconciler jump ``(lo, hi]``: absorbed.
3. the state a claim told, at the time it told it: absorbed (the same state told twice).
4. else (older than what bitbridge told: out of order, or from before the baseline): claimed, the recorded
   state kept. So is a delivery for a pull request the ledger no longer holds (settled and forgotten, or
   closed before the baseline) updated before the reconciler's watermark: it is told, not recorded.

A reconciler observation (a ref from start to end; a pull request to a state) is claimed only if nothing
was claimed on that ref or pull request since the reconciler read the ledger (its ``seen`` number), and,
for a pull request, the ledger knows no later update of it (a later reconciliation confirmed a newer
one); else it is *stale* and dropped (a delivery told it first, or something newer is known; the next
run compares again).

A pull request's comments and review states are *items* of the ledger (``c:{pr}:{comment}``,
``v:{pr}:{person}``; :func:`comment_key`, :func:`review_key`), each with its recorded value (a comment's
:func:`comment_value`: its version or update time, or deleted; a person's review status). A delivery of
a comment or review change (``old`` unknown: Bitbucket's payloads do not say it):

1. no entry yet: claimed.
2. the value recorded by a claim: absorbed (the same state told twice: a late delivery of what the
   reconciler told, or a redelivery).
3. received before the read of a reconciler observation claimed on that item (or a retry within
   :data:`RETRY_WINDOW` of it): absorbed into it (the observation told a state that included it).
4. a comment's older state (versions only grow; deleted is final): claimed, the recorded value kept.
5. else claimed.

A reconciler observation of an item is claimed like a ref's: only if nothing was claimed on it since the
reconciler read the ledger. A pull request deleted in Bitbucket (Data Center) is recorded ``DELETED``,
whichever path told it first; a deleted pull request has no later change, so every later report of it is
absorbed.

Other events keep their delivery id as change id, and a Data Center mirror synchronisation is its own
change: its ref changes get ids of their own, never the push's. Standard library only, no dataclasses or
typing at run time: the normaliser imports this module
on the receiver's cold path.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - annotations only
    from typing import Any

#: The pull request events that move a pull request's recorded state (and take a claim).
PR_LIFECYCLE = frozenset(
    {
        "pull_request.opened",
        "pull_request.updated",
        "pull_request.merged",
        "pull_request.declined",
        "pull_request.deleted",
    }
)
SHORT_COMMIT = 12  # Cloud's pull request payloads abbreviate commits to 12 digits
#: How long a reconciler jump waits for the late deliveries of the moves it covered (Bitbucket Cloud
#: retries a failed delivery for minutes, Data Center not at all), and a deleted ref's entry is kept.
JUMP_MEMORY = timedelta(days=1)
#: Bitbucket Cloud retries a delivery our receiver failed within minutes: a retry received this long after
#: a reconciler's read may still tell a move made before it.
RETRY_WINDOW = timedelta(minutes=10)
#: How many deliveries' outcomes the ledger remembers, so that a stream retry gets the same ids (a
#: batch is at most 25 deliveries; a parked one records its outcome on its delivery item).
RECENT_KEPT = 64

ITEM_TOUCHED = "i:"  # how `Ledger.touched` names a comment or review item

CLAIMED = "claimed"
ABSORBED = "absorbed"
STALE = "stale"


def _digest(*parts: object) -> str:
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return "chg-" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:40]


# ------------------------------------------------------------------------------------------ vocabulary


def change_id(provider_id: str, repository_id: str, epoch: str, number: int) -> str:
    """The id of the ``number``-th transition claimed in a repository's ledger."""
    return _digest("claim", provider_id, repository_id, epoch, number)


def combined(ids: list[str]) -> str:
    """An event's own ``change_id`` for its ref changes' ids (one ref: that id)."""
    return ids[0] if len(ids) == 1 else _digest("push", *sorted(ids))


def mirror_change_id(event_id: str, kind: str, name: str) -> str:
    """A mirror synchronisation's ref change: its own change, never the upstream push's."""
    return _digest("mirror", event_id, kind, name)


def unrecorded_change_id(source: str, index: int) -> str:
    """A change whose repository's ledger could not be written (bitbridge.store.observed.TooLarge): its
    own id, never another change's."""
    return _digest("unrecorded", source, index)


def ref_key(kind: str, name: str) -> str:
    return f"{'t' if kind == 'tag' else 'b'}:{name}"


def split_ref_key(key: str) -> tuple[str, str]:
    prefix, _, name = key.partition(":")
    return ("tag" if prefix == "t" else "branch"), name


def pull_request_fingerprint(
    state: str | None, title: str, target_branch: str | None, source_commit: str | None
) -> str:
    """What the reconciler compares of a pull request: state, title, target branch, source commit."""
    return _digest("pr-state", state or "", title, target_branch or "", (source_commit or "")[:SHORT_COMMIT].lower())


#: A deleted pull request's recorded state, whatever it looked like (the reconciler no longer sees it).
DELETED_VALUE = "DELETED|"


def pr_value(state: str | None, title: str, target_branch: str | None, source_commit: str | None) -> str:
    """A pull request's recorded state: ``{state}|{fingerprint}`` (deleted: :data:`DELETED_VALUE`)."""
    if state == "DELETED":
        return DELETED_VALUE
    return f"{state or ''}|{pull_request_fingerprint(state, title, target_branch, source_commit)}"


def comment_key(pr_id: int, comment_id: int) -> str:
    return f"c:{pr_id}:{comment_id}"


def review_key(pr_id: int, person: str) -> str:
    return f"v:{pr_id}:{person}"


def item_pull_request(key: str) -> int:
    """The pull request an item (comment or review) belongs to."""
    return int(key.split(":", 2)[1])


#: A deleted comment's value: after every version (``~`` sorts after digits and letters).
COMMENT_DELETED = "~deleted"


def comment_value(version: int | None, updated: str | None, deleted: bool) -> str:
    """A comment's recorded state, ordered as it changes: Data Center's ``version`` (counts edits), else
    Cloud's update time (:func:`stamp` form); :data:`COMMENT_DELETED` once deleted."""
    if deleted:
        return COMMENT_DELETED
    if version is not None:
        return f"v{int(version):09d}"
    return updated or ""


def section_value(section: dict[str, Any]) -> str:
    """:func:`pr_value` of an event's ``pull_request`` section."""
    return pr_value(section["state"], section["title"], section["destination"]["branch"], section["source"]["commit"])


def is_open(value: str | None) -> bool:
    return value is not None and value.startswith("OPEN|")


def stamp(value: object) -> str | None:
    """Bitbucket's update time as the ledger compares it (UTC, microseconds, ``Z``): from an ISO 8601
    string (Cloud ``updated_on``) or epoch milliseconds (Data Center ``updatedDate``); None if neither."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, UTC)
        elif isinstance(value, str) and value:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        else:
            return None
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


# ------------------------------------------------------------------------------------------ the ledger


class Outcome:
    """What the ledger made of one reported change: claimed (number = its claim), absorbed (number = the
    claim that told it before) or stale (a reconciler observation a delivery overtook; number 0)."""

    __slots__ = ("kind", "number")

    def __init__(self, kind: str, number: int = 0) -> None:
        self.kind, self.number = kind, number

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and (self.kind, self.number) == (other.kind, other.number)

    def __hash__(self) -> int:
        return hash((self.kind, self.number))

    def __repr__(self) -> str:
        return f"Outcome({self.kind!r}, {self.number})"

    @property
    def published(self) -> bool:
        return self.kind == CLAIMED


class Jump:
    """A ref move the reconciler claimed (start -> end) from what it read at ``read_at``; ``pos`` is how far
    late deliveries got along it."""

    __slots__ = ("at", "end", "number", "pos", "read_at", "start")

    def __init__(
        self, start: str | None, end: str | None, pos: str | None, number: int, at: str, read_at: str | None = None
    ) -> None:
        self.start, self.end, self.pos, self.number, self.at = start, end, pos, number, at
        self.read_at = read_at

    def covers(self, received_at: str | None, retry: bool) -> bool:
        """Whether a delivery received at ``received_at`` can tell a move made before the read."""
        if received_at is None or self.read_at is None:
            return False
        if received_at <= self.read_at:
            return True
        return retry and received_at <= _shifted(self.read_at, RETRY_WINDOW)


class Span:
    """A pull request change the reconciler claimed: deliveries stamped in ``(lo, hi]`` are its own."""

    __slots__ = ("at", "hi", "lo", "number")

    def __init__(self, lo: str | None, hi: str | None, number: int, at: str) -> None:
        self.lo, self.hi, self.number, self.at = lo, hi, number, at


class RefEntry:
    """A ref's recorded head (None: deleted) and the claim that set it (0: a baseline)."""

    __slots__ = ("at", "commit", "head", "jumps", "number")

    def __init__(
        self,
        head: str | None,
        number: int = 0,
        at: str = "",
        commit: str | None = None,
        jumps: list[Jump] | None = None,
    ) -> None:
        self.head, self.number, self.at = head, number, at
        self.commit = commit  # the commit, when the head is a tag object (Data Center annotated tags)
        self.jumps = jumps or []

    @property
    def shown(self) -> str | None:
        """The head as events show it: the commit."""
        return self.commit or self.head


class PrEntry:
    """A pull request's recorded state, Bitbucket's update time as of which bitbridge knows it (a
    reconciliation that finds it unchanged moves it on), the claim that set it and that claim's time."""

    __slots__ = ("at", "number", "spans", "stamp", "told", "value")

    def __init__(
        self,
        value: str,
        stamp: str | None,
        number: int = 0,
        at: str = "",
        spans: list[Span] | None = None,
        told: str | None = None,
    ) -> None:
        self.value, self.stamp, self.number, self.at = value, stamp, number, at
        self.spans = spans or []
        self.told = told  # the update time the claim told (None: a baseline)


class ItemEntry:
    """A comment's or a review's recorded value, the claim that set it (0: a baseline) and the reconciler
    observations claimed on it (``Jump``: only ``number``, ``at`` and ``read_at`` matter)."""

    __slots__ = ("at", "jumps", "number", "value")

    def __init__(self, value: str, number: int = 0, at: str = "", jumps: list[Jump] | None = None) -> None:
        self.value, self.number, self.at = value, number, at
        self.jumps = jumps or []


class ItemSeen:
    """A comment's or review's state as a delivery reports it (``ordered``: a comment, whose values grow)."""

    __slots__ = ("key", "ordered", "value")

    def __init__(self, key: str, value: str, ordered: bool) -> None:
        self.key, self.value, self.ordered = key, value, ordered


class ItemObservation:
    """The reconciler, reading Bitbucket at ``read_at``, saw item ``key`` at ``value`` where the ledger (at
    claim ``seen``) says otherwise."""

    __slots__ = ("key", "read_at", "seen", "value")

    def __init__(self, key: str, seen: int, value: str, read_at: str | None) -> None:
        self.key, self.seen, self.value, self.read_at = key, seen, value, read_at


class RefMove:
    """A ref change as a delivery reports it (``old`` / ``new``: idents; ``commit``: the new commit when
    the ident is a tag object)."""

    __slots__ = ("commit", "key", "new", "old")

    def __init__(self, key: str, old: str | None, new: str | None, commit: str | None = None) -> None:
        self.key, self.old, self.new, self.commit = key, old, new, commit


class PrSeen:
    """A pull request's state as a delivery reports it."""

    __slots__ = ("pr_id", "stamp", "value")

    def __init__(self, pr_id: int, value: str, stamp: str | None) -> None:
        self.pr_id, self.value, self.stamp = pr_id, value, stamp


class RefObservation:
    """The reconciler, reading Bitbucket at ``read_at``, saw ``key`` at ``end`` where the ledger (at claim
    ``seen``) says ``start``."""

    __slots__ = ("commit", "end", "key", "read_at", "seen", "start")

    def __init__(
        self,
        key: str,
        seen: int,
        start: str | None,
        end: str | None,
        commit: str | None = None,
        read_at: str | None = None,
    ) -> None:
        self.key, self.seen, self.start, self.end, self.commit = key, seen, start, end, commit
        self.read_at = read_at


class PrObservation:
    """The reconciler saw pull request ``pr_id`` in state ``value`` (stamped) where the ledger, at claim
    ``seen``, says otherwise."""

    __slots__ = ("pr_id", "seen", "stamp", "value")

    def __init__(self, pr_id: int, seen: int, value: str, stamp: str | None) -> None:
        self.pr_id, self.seen, self.value, self.stamp = pr_id, seen, value, stamp


Observation = RefObservation | PrObservation | ItemObservation


def observation_to_dict(observation: Observation) -> dict[str, Any]:
    """An observation as the reconciler writes it into the deliveries outbox (JSON)."""
    if isinstance(observation, ItemObservation):
        item = observation
        return {"item": item.key, "seen": item.seen, "value": item.value, "read_at": item.read_at}
    if isinstance(observation, RefObservation):
        o = observation
        return {"ref": o.key, "seen": o.seen, "start": o.start, "end": o.end, "commit": o.commit, "read_at": o.read_at}
    return {"pr": observation.pr_id, "seen": observation.seen, "value": observation.value, "stamp": observation.stamp}


def observation_from_dict(data: dict[str, Any]) -> Observation:
    if "item" in data:
        return ItemObservation(str(data["item"]), int(data["seen"]), str(data["value"]), data.get("read_at"))
    if "ref" in data:
        return RefObservation(
            str(data["ref"]), int(data["seen"]), data["start"], data["end"], data.get("commit"), data.get("read_at")
        )
    return PrObservation(int(data["pr"]), int(data["seen"]), str(data["value"]), data.get("stamp"))


def _shifted(moment: str, by: timedelta) -> str:
    shifted = datetime.fromisoformat(moment.replace("Z", "+00:00")) + by
    return shifted.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _cutoff(now: str) -> str:
    return _shifted(now, -JUMP_MEMORY)


class Ledger:
    """A repository's recorded history: each ref's head, each pull request's state, the claims' clock.

    Mutated in place by the ``apply_*`` methods; ``touched`` names the refs and pull requests whose entry
    changed (what a write must store), ``recent`` the outcomes of the newest reports by their source id
    (a delivery's key, an observation's id), so a retried report gets the same answer."""

    __slots__ = ("clock", "epoch", "items", "prs", "recent", "refs", "reviews_at", "touched", "watermark")

    def __init__(
        self,
        epoch: str,
        clock: int = 0,
        refs: dict[str, RefEntry] | None = None,
        prs: dict[int, PrEntry] | None = None,
        recent: dict[str, list[Outcome]] | None = None,
        items: dict[str, ItemEntry] | None = None,
    ) -> None:
        self.epoch, self.clock = epoch, clock
        self.refs: dict[str, RefEntry] = refs or {}
        self.prs: dict[int, PrEntry] = prs or {}
        self.items: dict[str, ItemEntry] = items or {}  # comments and review states: c:{pr}:{id}, v:{pr}:{person}
        self.recent: dict[str, list[Outcome]] = recent or {}
        self.touched: set[str | int] = set()  # ref keys, pull request ids, "i:" + item keys
        #: When the reconciler first recorded the comments and reviews of the open pull requests (None: never).
        self.reviews_at: str | None = None
        #: The reconciler's pull request watermark (read with the ledger, never written by a claim).
        self.watermark: str | None = None

    def change_id(self, provider_id: str, repository_id: str, outcome: Outcome) -> str | None:
        return change_id(provider_id, repository_id, self.epoch, outcome.number) if outcome.number else None

    # -------------------------------------------------------------------------------------- reports

    def apply_delivery(
        self,
        source: str,
        moves: list[RefMove],
        pr: PrSeen | None,
        now: str,
        received_at: str | None = None,
        retry: bool = False,
        item: ItemSeen | None = None,
    ) -> list[Outcome]:
        """One delivery's ref changes (in order), pull request state, or comment / review state: an outcome
        for each. ``received_at``: when the receiver got it (:func:`stamp` form); ``retry``: Bitbucket's
        second or later attempt."""
        if source in self.recent:
            return list(self.recent[source])
        outcomes = [self._ref_delivery(move, now, received_at, retry) for move in moves]
        if pr is not None:
            outcomes.append(self._pr_delivery(pr, now))
        if item is not None:
            outcomes.append(self._item_delivery(item, now, received_at, retry))
        return self._remember(source, outcomes)

    def apply_observation(self, source: str, observation: Observation, now: str) -> Outcome:
        """One reconciler observation: claimed, or stale."""
        if source in self.recent:
            return self.recent[source][0]
        if isinstance(observation, ItemObservation):
            outcome = self._item_observation(observation, now)
        elif isinstance(observation, RefObservation):
            outcome = self._ref_observation(observation, now)
        else:
            outcome = self._pr_observation(observation, now)
        return self._remember(source, [outcome])[0]

    # -------------------------------------------------------------------------------------- refs

    def _ref_delivery(self, move: RefMove, now: str, received_at: str | None, retry: bool) -> Outcome:
        entry = self.refs.get(move.key)
        if entry is not None and entry.head != move.old:
            for jump in entry.jumps:
                if jump.pos == move.old and jump.covers(received_at, retry):  # late, of a move the reconciler told
                    jump.pos = move.new
                    if move.new == jump.end:
                        entry.jumps.remove(jump)
                    self._touch(move.key, entry, now)
                    return Outcome(ABSORBED, jump.number)
        return self._move(move.key, entry, move.new, move.commit, now)  # the next move, or a gap

    def _ref_observation(self, seen: RefObservation, now: str) -> Outcome:
        entry = self.refs.get(seen.key)
        number, head = (entry.number, entry.head) if entry else (0, None)
        if number != seen.seen or head != seen.start:
            return Outcome(STALE)
        outcome = self._move(seen.key, entry, seen.end, seen.commit, now)
        self.refs[seen.key].jumps.append(Jump(seen.start, seen.end, seen.start, outcome.number, now, seen.read_at))
        return outcome

    def _move(self, key: str, entry: RefEntry | None, head: str | None, commit: str | None, now: str) -> Outcome:
        number = self._next()
        entry = entry or RefEntry(None)
        entry.head, entry.commit, entry.number, entry.at = head, commit if commit != head else None, number, now
        self.refs[key] = entry
        self._touch(key, entry, now)
        return Outcome(CLAIMED, number)

    # -------------------------------------------------------------------------------------- pull requests

    def _pr_delivery(self, seen: PrSeen, now: str) -> Outcome:
        entry = self.prs.get(seen.pr_id)
        if entry is not None and entry.value == DELETED_VALUE and entry.number:
            return Outcome(ABSORBED, entry.number)  # deleted is final: whatever comes later was told by it
        if entry is None:
            if seen.stamp is not None and self.watermark is not None and seen.stamp < self.watermark:
                return Outcome(CLAIMED, self._next())  # an older state of one settled: told, not recorded
            return self._set_pr(seen.pr_id, PrEntry(seen.value, seen.stamp), now)
        when, recorded = seen.stamp, entry.stamp
        if when is None or recorded is None or when > recorded or (when == recorded and seen.value != entry.value):
            entry.value, entry.stamp = seen.value, when or recorded
            return self._set_pr(seen.pr_id, entry, now)
        for span in entry.spans:
            if (span.lo is None or span.lo < when) and when <= (span.hi or ""):
                return Outcome(ABSORBED, span.number)
        if when == entry.told and seen.value == entry.value and entry.number:
            return Outcome(ABSORBED, entry.number)
        number = self._next()  # older than what bitbridge told: its own change; the state stays
        self._touch(seen.pr_id, entry, now)
        return Outcome(CLAIMED, number)

    def _pr_observation(self, seen: PrObservation, now: str) -> Outcome:
        entry = self.prs.get(seen.pr_id)
        if (entry.number if entry else 0) != seen.seen:
            return Outcome(STALE)
        if entry is not None and entry.stamp and seen.stamp and seen.stamp < entry.stamp:
            return Outcome(STALE)  # a later reconciliation confirmed a newer state
        lo = entry.stamp if entry else None
        entry = entry or PrEntry(seen.value, seen.stamp)
        entry.value, entry.stamp = seen.value, seen.stamp
        outcome = self._set_pr(seen.pr_id, entry, now)
        entry.spans.append(Span(lo, seen.stamp, outcome.number, now))
        return outcome

    def _set_pr(self, pr_id: int, entry: PrEntry, now: str) -> Outcome:
        number = self._next()
        entry.number, entry.at, entry.told = number, now, entry.stamp
        self.prs[pr_id] = entry
        self._touch(pr_id, entry, now)
        return Outcome(CLAIMED, number)

    # -------------------------------------------------------------------------------------- comments, reviews

    def _item_delivery(self, seen: ItemSeen, now: str, received_at: str | None, retry: bool) -> Outcome:
        entry = self.items.get(seen.key)
        if entry is None:
            return self._set_item(seen.key, ItemEntry(seen.value), seen.value, now)
        if entry.value == seen.value and entry.number:
            return Outcome(ABSORBED, entry.number)  # told before (by the reconciler, or a redelivery)
        for jump in reversed(entry.jumps):
            if jump.covers(received_at, retry):  # made before an observation that told the state after it
                return Outcome(ABSORBED, jump.number)
        if seen.ordered and seen.value < entry.value:
            number = self._next()  # an older state, out of order: its own change; the state stays
            self._touch_item(seen.key, entry, now)
            return Outcome(CLAIMED, number)
        return self._set_item(seen.key, entry, seen.value, now)

    def _item_observation(self, seen: ItemObservation, now: str) -> Outcome:
        entry = self.items.get(seen.key)
        if (entry.number if entry else 0) != seen.seen or (entry is not None and entry.value == seen.value):
            return Outcome(STALE)
        entry = entry or ItemEntry(seen.value)
        outcome = self._set_item(seen.key, entry, seen.value, now)
        entry.jumps.append(Jump(None, seen.value, None, outcome.number, now, seen.read_at))
        return outcome

    def _set_item(self, key: str, entry: ItemEntry, value: str, now: str) -> Outcome:
        number = self._next()
        entry.value, entry.number, entry.at = value, number, now
        self.items[key] = entry
        self._touch_item(key, entry, now)
        return Outcome(CLAIMED, number)

    def _touch_item(self, key: str, entry: ItemEntry, now: str) -> None:
        cutoff = _cutoff(now)
        entry.jumps = [j for j in entry.jumps if j.at >= cutoff]
        self.touched.add(ITEM_TOUCHED + key)

    # -------------------------------------------------------------------------------------- bookkeeping

    def _next(self) -> int:
        self.clock += 1
        return self.clock

    def _touch(self, key: str | int, entry: RefEntry | PrEntry, now: str) -> None:
        """Mark an entry written, dropping what it no longer needs to remember (old jumps and spans)."""
        cutoff = _cutoff(now)
        if isinstance(entry, RefEntry):
            entry.jumps = [j for j in entry.jumps if j.at >= cutoff]
        else:
            entry.spans = [s for s in entry.spans if s.at >= cutoff]
        self.touched.add(key)

    def _remember(self, source: str, outcomes: list[Outcome]) -> list[Outcome]:
        self.recent[source] = outcomes
        while len(self.recent) > RECENT_KEPT:
            del self.recent[next(iter(self.recent))]
        return outcomes

    def forgettable_refs(self, now: str) -> list[str]:
        """Deleted refs told more than a day ago, with no jump left to match: their entries can go (the
        clock, not the entry, keeps change ids unique)."""
        cutoff = _cutoff(now)
        return [
            k
            for k, e in self.refs.items()
            if e.head is None and e.at < cutoff and not any(j.at >= cutoff for j in e.jumps)
        ]

    def forgettable_deleted_prs(self, now: str) -> list[int]:
        """Pull requests recorded deleted more than a day ago: nothing more comes of them."""
        cutoff = _cutoff(now)
        return [p for p, e in self.prs.items() if e.value == DELETED_VALUE and e.at < cutoff]

    def items_of(self, prs: list[int]) -> list[str]:
        """The comment and review items of these pull requests (forgotten with them)."""
        wanted = set(prs)
        return [key for key in self.items if item_pull_request(key) in wanted]
