"""One rate-limit budget per (provider, person or OAuth consumer, resource class), shared by every caller and
every Lambda container: bitbridge never spends more of an allowance than Bitbucket gives, and spends it on
people waiting first. Only `bitbridge.calls.Caller` uses it (the one way to Bitbucket).

**The store** (`store/budget.py`, its own DynamoDB table): one item per budget, written whole and
conditioned on its version, so the arithmetic below runs on a consistent state.

- *Cloud* (a rolling window of W seconds, L calls): a token bucket refilled L per hour could spend 2L in an
  hour, so the budget is a **bucketed sliding window** of grants: calls granted are counted in buckets of
  W/120 seconds, and a grant is made only while every call granted in the last W + S seconds, with this
  one, stays within L. S covers the time from a grant to the call reaching Bitbucket (a lease's life plus
  the network), so at any instant Bitbucket's own window holds at most L of bitbridge's calls. Counting
  whole buckets only overstates use (never over, at most 1/120 of the window idle).
- *Data Center* (a token bucket: capacity C, refill r per second): mirrored with capacity C - r*S, which
  by the same argument keeps Bitbucket's bucket from running dry whenever a leased call actually arrives.

**Leases.** A container takes a few calls at a time (`Lease`, adapted to how fast it spends them, at most a
few seconds), so a warm worker pays one DynamoDB write per several Bitbucket calls; unused calls of an
expired lease are given back with the next write.

**Priorities.** INTERACTIVE (a person waits: console, proxy, kickoff, service API, command line), then
HOOK_REPAIR, DELIVERY (changed files for an event), IMPORT, RECONCILE. Background work never takes the last
`reserve` share (5 % by default) of an allowance, and yields while a higher priority waits: refused work
leaves a marker (`waiting`), and lower priorities are refused until that work has had its turn. Refused
background work waits outside any Lambda (the worker re-sends its message with a delay; the reconciler
leaves the subscription due) until a slot computed from the window's own schedule, spaced so waiters wake
as room frees. A person waits a few
seconds at most; beyond that the answer is bitbridge's own 429 `rate_limited` with `retry_after`.

**A 429 from Bitbucket anyway** (another app spending the same person's allowance) shrinks the window to
what bitbridge already holds in it until that window has passed (Data Center: an empty bucket until
Retry-After), and is counted (`rejected`, the `BitbucketRateLimited` metric).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bitbridge import accounts, providers
from bitbridge.aws import forgotten_on_reset
from bitbridge.bitbucket.limits import BUCKET, PER_CONSUMER, WINDOW, Limits
from bitbridge.config import settings
from bitbridge.errors import Problem
from bitbridge.store import budget as store
from bitbridge.store.budget import BudgetKey, BudgetState

INTERACTIVE = "interactive"  # a person waits on the answer
HOOK_REPAIR = "hook_repair"  # the reconciler repairing a hook (deliveries are lost until it is)
DELIVERY = "delivery"  # the publisher reading what a delivery changed (its event waits on it)
IMPORT = "import"  # the import worker
RECONCILE = "reconcile"  # the reconciler's reads
PRIORITIES = (INTERACTIVE, HOOK_REPAIR, DELIVERY, IMPORT, RECONCILE)  # first served first

BUCKETS_PER_WINDOW = 120
INTERACTIVE_WAIT_SECONDS = 3.0  # a person waits this long for room at most, then gets a 429 with retry_after
RESERVATION_SECONDS = 10.0  # calls reserved at once (a kickoff's checks) are made within this (its time limit)
# Background work whose slot is this close waits for it in the Lambda: cheaper than leaving (a message sent
# and received, the job's lease taken again) and it keeps the window full; a longer wait leaves the Lambda.
BACKGROUND_WAIT_SECONDS = 1.0
MAX_LEASE = {INTERACTIVE: 5, HOOK_REPAIR: 5, DELIVERY: 5, IMPORT: 20, RECONCILE: 20}
FIRST_LEASE = {INTERACTIVE: 1, HOOK_REPAIR: 2, DELIVERY: 2, IMPORT: 4, RECONCILE: 4}
WRITE_ATTEMPTS = 8  # versioned writes lost to other containers before giving up for a moment
WAITER_CALLS = 4  # the calls one waiting unit of background work takes when it comes back (queue spacing)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True)
class Shape:
    """One budget's parameters: its model and limit, and the margins bookkeeping needs."""

    model: str  # WINDOW | BUCKET
    limit: int  # calls per window, or the bucket's capacity
    window: float = 0.0  # seconds (window model)
    refill: float = 0.0  # tokens per second (bucket model)
    reserve: float = 0.05

    @property
    def lease_seconds(self) -> float:
        """How long a container may hold granted calls before spending them."""
        return _clamp(self.window / 200, 0.5, 10.0) if self.model == WINDOW else 0.5

    @property
    def span(self) -> float:
        """Grant to arrival at Bitbucket, at most: a lease's life plus the network (a scaled test window
        scales the margin too: the emulator answers in milliseconds)."""
        network = _clamp(self.window / 100, 1.0, 5.0) if self.model == WINDOW else 1.0
        return self.lease_seconds + network

    @property
    def counted_window(self) -> float:
        return self.window + self.span

    @property
    def bucket_ms(self) -> int:
        return max(1, int(self.window * 1000 / BUCKETS_PER_WINDOW))

    @property
    def capacity(self) -> float:
        """The mirrored bucket's capacity: what Bitbucket's holds less what refills while a call travels."""
        return max(1.0, self.limit - self.refill * self.span)

    @property
    def grace(self) -> float:
        """How long after its slot refused work keeps lower priorities waiting (so it gets its turn)."""
        return _clamp(self.lease_seconds * 4, 2.0, 10.0)

    @property
    def rate(self) -> float:
        """Calls per second the allowance sustains."""
        return self.limit / self.counted_window if self.model == WINDOW else self.refill


def shape_of(limits: Limits, klass: str) -> Shape | None:
    """The budget for a class of a provider's limits; None when that class is not limited."""
    limit = limits.limit(klass)
    if not limits.enabled or limit is None:
        return None
    return Shape(limits.model, int(limit), limits.window_seconds, limits.refill_per_second, limits.reserve)


def key_for(provider_id: str, limits: Limits, user_id: str | None, klass: str) -> BudgetKey | None:
    """Whose allowance a call spends: the person's, or the consumer's (None: a call nobody's budget
    covers, e.g. the sign-in's identity read before the person is known, counted per person)."""
    if limits.scope == PER_CONSUMER:
        return store.for_consumer(provider_id, klass)
    return store.for_user(provider_id, user_id, klass) if user_id else None


# ------------------------------------------------------------------------------------------------ arithmetic
# Pure functions of a stored state and the time: what the tests drive directly.


def _higher(priority: str) -> tuple[str, ...]:
    return PRIORITIES[: PRIORITIES.index(priority)]


def ceiling(state: BudgetState, shape: Shape, now: float) -> int:
    """The window's effective limit: Bitbucket's, or less while a 429 taught us another app spends it."""
    if state.ceiling is not None and now < state.ceiling_until:
        return min(shape.limit, state.ceiling)
    return shape.limit


def used(state: BudgetState, shape: Shape, now: float) -> float:
    """Window: calls counted in the window now. Bucket: tokens out of the mirrored bucket now."""
    if shape.model == WINDOW:
        horizon = (now - shape.counted_window) * 1000
        return sum(count for end, count in state.grants.items() if end > horizon)
    return shape.capacity - level(state, shape, now)


def level(state: BudgetState, shape: Shape, now: float) -> float:
    if state.tokens is None:
        return shape.capacity
    return min(shape.capacity, state.tokens + shape.refill * max(0.0, now - state.at))


def _floor(shape: Shape, priority: str) -> float:
    """Tokens of a bucket that background work leaves for people (whole calls of the reserve share)."""
    return 0.0 if priority == INTERACTIVE else math.floor(shape.reserve * shape.capacity)


def _window_cap(limit: int, shape: Shape, priority: str) -> int:
    """Calls `priority` may have in the window: all of it for people, less the reserve's whole calls else."""
    return limit if priority == INTERACTIVE else limit - math.floor(limit * shape.reserve)


def room(state: BudgetState, shape: Shape, now: float, priority: str) -> int:
    """Calls `priority` may be granted now (before waiting markers)."""
    if shape.model == WINDOW:
        return int(_window_cap(ceiling(state, shape, now), shape, priority) - used(state, shape, now))
    return math.floor(level(state, shape, now) - _floor(shape, priority) + 1e-9)


def _window_room_at(state: BudgetState, shape: Shape, now: float, cap: int, k: int) -> float:
    """When at least `k` calls fit under `cap`, if nothing more is granted (inf: never under this cap)."""
    if k > cap:
        return math.inf
    horizon = (now - shape.counted_window) * 1000
    live = sorted((end, count) for end, count in state.grants.items() if end > horizon)
    excess = sum(count for _, count in live) - (cap - k)
    if excess <= 0:
        return now
    for end, count in live:
        excess -= count
        if excess <= 0:
            return end / 1000 + shape.counted_window
    return math.inf  # pragma: no cover - the live grants sum to more than the excess


def room_at(state: BudgetState, shape: Shape, now: float, priority: str, k: int) -> float:
    """The earliest time `priority` could be granted `k` calls, if nothing more is granted meanwhile."""
    if shape.model == WINDOW:
        full = _window_cap(shape.limit, shape, priority)
        k = max(1, min(k, full))
        shrunk = _window_room_at(state, shape, now, _window_cap(ceiling(state, shape, now), shape, priority), k)
        if shrunk <= now or state.ceiling is None or now >= state.ceiling_until:
            return shrunk
        later = max(state.ceiling_until, _window_room_at(state, shape, now, full, k))
        return min(shrunk, later)
    floor_ = _floor(shape, priority)
    need = min(k + floor_, shape.capacity)
    start = max(now, state.at if state.tokens is not None else now)
    have = level(state, shape, start)
    return start + max(0.0, need - have) / max(shape.refill, 1e-9)


def _slot(state: BudgetState, shape: Shape, now: float, priority: str, k: int) -> float:
    """When the k-th call from now can be granted: from the schedule while it knows, then at the rate."""
    if shape.model == WINDOW:
        cap = _window_cap(shape.limit, shape, priority)
        if k <= cap:
            return room_at(state, shape, now, priority, k)
        return room_at(state, shape, now, priority, cap) + (k - cap) / max(shape.rate, 1e-9)
    return room_at(state, shape, now, priority, k)


def blocked_until(state: BudgetState, shape: Shape, now: float, priority: str) -> float | None:
    """While work of a higher priority waits (and for `grace` after its slot), lower priorities wait."""
    ends = [w["until"] + shape.grace for p in _higher(priority) if (w := state.waiting.get(p))]
    latest = max(ends, default=0.0)
    return latest if latest > now else None


@dataclass(frozen=True)
class Decision:
    granted: int
    state: BudgetState  # what to write (advanced version)
    retry_at: float | None = None  # refused: when to come back


def _advance(state: BudgetState, shape: Shape, now: float) -> BudgetState:
    new = state.copy()
    new.ver = state.ver + 1
    new.model, new.limit, new.updated_at = shape.model, shape.limit, now
    new.window_seconds = shape.window if shape.model == WINDOW else None
    new.refill_per_second = shape.refill if shape.model == BUCKET else None
    horizon = (now - shape.counted_window) * 1000
    new.grants = {end: count for end, count in new.grants.items() if end > horizon}
    new.waiting = {p: w for p, w in new.waiting.items() if w["until"] + shape.grace > now}
    if new.ceiling is not None and now >= new.ceiling_until:
        new.ceiling = None
    return new


def plan(
    state: BudgetState,
    shape: Shape,
    now: float,
    priority: str,
    want: int,
    *,
    exact: bool = False,
    returned: dict[int, int] | None = None,
    resuming: bool = False,
    waited_until: float | None = None,
    hold: float = 0.0,
) -> Decision:
    """Grant up to `want` calls (`exact`: all of them or none) at `priority`, or refuse with when to return.
    `returned`: an expired lease's unused calls by bucket; `resuming`: refused work back at its slot (it
    leaves its queue); `waited_until`: the marker a person waiting set, cleared once served; `hold`: the
    calls may be made up to this long after the grant (a reservation) - a window counts them as granted
    then, so they leave it no earlier than Bitbucket's own count of them does."""
    new = _advance(state, shape, now)
    _give_back(new, returned)
    blocked = blocked_until(new, shape, now, priority)
    if new.held_until > now:  # Bitbucket said when (Retry-After): nobody before then
        blocked = max(blocked or 0.0, new.held_until)
    # Many calls at once (a kickoff's access checks) never take the reserve: it is kept for the calls people
    # wait on one by one (a console page, a proxied call), which a bulk request would otherwise empty.
    share = IMPORT if exact and want > 1 else priority
    free = room(new, shape, now, share)
    need = want if exact else 1
    if blocked is not None or free < need:
        retry_at = room_at(new, shape, now, share, need)
        return Decision(0, new, max(retry_at, blocked or 0.0))
    granted = want if exact else min(want, max(1, free // 2))
    if shape.model == WINDOW:
        end = (int((now + hold) * 1000) // shape.bucket_ms + 1) * shape.bucket_ms
        new.grants[end] = new.grants.get(end, 0) + granted
    else:
        new.tokens, new.at = level(new, shape, now) - granted, now
    new.granted += granted
    mine = new.waiting.get(priority)
    if mine is not None and resuming:
        mine["n"] = max(0, mine.get("n", 1) - 1)
        if mine["n"] == 0 and mine["until"] <= now:
            # The queue is served, but its work comes straight back for its next lease: lower priorities
            # keep yielding for `grace` from now, so room freed meanwhile is not taken from under it.
            mine["until"] = now
    if mine is not None and waited_until is not None and mine["until"] <= waited_until:
        new.waiting.pop(priority, None)
    return Decision(granted, new)


def refuse(
    state: BudgetState,
    shape: Shape,
    now: float,
    priority: str,
    retry_at: float,
    until: float | None = None,
    *,
    resuming: bool = False,
) -> Decision:
    """Record refused work (`state` from `plan`'s refusal) and give it its slot. People (`until`: when
    they stop waiting) hold lower priorities off while they wait; background work queues: the n-th waiter
    comes back when n waiters' worth of calls (`WAITER_CALLS`: about one repository's import, or one
    subscription's reconciliation) has freed. A waiter refused again at its slot (`resuming`) is in the
    queue already: it goes to its end without counting twice."""
    new = state.copy()
    mark = new.waiting.get(priority)
    live = mark is not None and mark["until"] > now
    if priority == INTERACTIVE:
        slot = retry_at
        new.waiting[priority] = {"until": max(until or retry_at, mark["until"] if live and mark else 0.0), "n": 1}
        return Decision(0, new, slot)
    waiters = int(mark.get("n", 1)) + (0 if resuming else 1) if live and mark else 1
    slot = max(retry_at, _slot(new, shape, now, priority, waiters * WAITER_CALLS))
    new.waiting[priority] = {"until": max(slot, mark["until"] if live and mark else 0.0), "n": waiters}
    return Decision(0, new, slot)


def _give_back(state: BudgetState, returned: dict[int, int] | None) -> None:
    for end, count in (returned or {}).items():
        if end in state.grants:
            state.grants[end] = max(0, state.grants[end] - count)


def after_rate_limited(
    state: BudgetState, shape: Shape, now: float, retry_after: float | None, returned: dict[int, int] | None = None
) -> BudgetState:
    """Bitbucket answered 429 although the budget had room. With `Retry-After` (Data Center; Cloud to access
    tokens) it said when: nothing is granted before then. Without (Cloud to an OAuth token), someone else
    spends this allowance: the window is held at what bitbridge has in it now (less the refused call, and the
    leased calls given back unspent) until that window has passed. A bucket is empty until Retry-After."""
    new = _advance(state, shape, now)
    _give_back(new, returned)
    new.rejected += 1
    new.rejected_at = now
    if shape.model == WINDOW and retry_after is not None:
        new.held_until = max(new.held_until, now + retry_after)
    elif shape.model == WINDOW:
        held = int(used(new, shape, now)) - 1
        new.ceiling = max(0, min(held, new.ceiling if new.ceiling is not None else held))
        new.ceiling_until = now + shape.counted_window
    else:
        wait = retry_after if retry_after is not None else 1.0 / max(shape.refill, 1e-9)
        new.tokens, new.at = 0.0, now + wait
    return new


# ------------------------------------------------------------------------------------------------ refusals


class OverBudget(Problem):
    """The allowance has no room for this call now: background work waits until `retry_at`; a person gets
    bitbridge's own 429 `rate_limited` with `retry_after` (seconds)."""

    code = "rate_limited"
    title = "Bitbucket's rate limit"

    def __init__(self, key: BudgetKey, retry_at: float, now: float | None = None) -> None:
        wait = max(1, math.ceil(retry_at - (now if now is not None else time.time())))
        super().__init__(
            f"Your Bitbucket allowance for {key.klass} calls on {key.provider_id} is spent for now: "
            f"try again in {wait} s.",
            retry_after=wait,
            provider=key.provider_id,
        )
        self.key = key
        self.retry_at = retry_at


# ------------------------------------------------------------------------------------------------ a container


@dataclass
class Lease:
    tokens: int  # calls left to spend
    expires: float  # epoch seconds
    bucket_end: int | None  # window: the bucket it was granted in (its unused calls go back there)
    granted: int = 0
    priority: str = INTERACTIVE

    def take(self, now: float) -> bool:
        if self.tokens > 0 and now < self.expires:
            self.tokens -= 1
            return True
        return False


@dataclass
class _Budget:
    """A container's view of one budget: the item as last read or written, leases, calls to give back.
    `lock` guards these fields for moments only; a store round trip holds just its priority's lock, so a
    person's call never queues behind background work's writes in the same container."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    state: BudgetState | None = None
    known: bool = False  # `state` was read or written by this container (None then means: no item)
    leases: dict[str, Lease] = field(default_factory=dict)
    returned: dict[int, int] = field(default_factory=dict)
    want: dict[str, int] = field(default_factory=dict)
    acquiring: dict[str, threading.Lock] = field(default_factory=dict)  # one lease taken at a time per priority
    flights: tuple[int, threading.BoundedSemaphore] | None = None  # (cap, slots) for background calls

    def flight_slots(self, cap: int) -> threading.BoundedSemaphore:
        with self.lock:
            if self.flights is None or self.flights[0] != cap:
                self.flights = (cap, threading.BoundedSemaphore(cap))
            return self.flights[1]

    def acquirer(self, priority: str) -> threading.Lock:
        with self.lock:
            return self.acquiring.setdefault(priority, threading.Lock())

    def seen(self, state: BudgetState | None) -> None:
        """Keep the newest state this container has read or written."""
        with self.lock:
            if state is None or self.state is None or state.ver >= self.state.ver:
                self.state = state
            self.known = True

    def take_returned(self) -> dict[int, int]:
        with self.lock:
            taken, self.returned = self.returned, {}
            return taken

    def put_back(self, returned: dict[int, int]) -> None:
        with self.lock:
            for end, count in returned.items():
                self.returned[end] = self.returned.get(end, 0) + count


def in_flight_cap(shape: Shape) -> int:
    """Background calls one container has in the air at once on a budget: two seconds' worth of the
    allowance, at least one. At Bitbucket's own rates (Cloud: 1,000 an hour) that is one, which costs
    nothing (a call takes a fraction of the seconds between calls the allowance sustains) and means that
    when another app has spent the rest of the allowance, one call meets Bitbucket's 429 - not every call
    then in the air. (A window played in a minute allows more, so freed room is refilled as fast.)"""
    return max(1, math.floor(2 * shape.rate))


class Ledger:
    """What one container knows of the budgets it spends (one per process: `ledger()`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._budgets: dict[BudgetKey, _Budget] = {}

    def _budget(self, key: BudgetKey) -> _Budget:
        with self._lock:
            return self._budgets.setdefault(key, _Budget())

    def spend(
        self,
        key: BudgetKey,
        shape: Shape,
        priority: str,
        *,
        wait_seconds: float = 0.0,
        resuming: bool = False,
        queues: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float:
        """Take one call: from this container's lease, else a new lease. A refusal waits up to
        `wait_seconds` (people), then raises OverBudget. Returns the seconds waited. `queues=False`: refused
        background work that gives up rather than coming back at its slot (an event published without its
        changed files) leaves no marker - one would hold lower priorities off for work that never returns.
        Background work first takes one of the container's slots for calls in the air (`in_flight_cap`), before
        the call (so a granted call never waits after its grant); `landed` gives it back once Bitbucket has
        answered."""
        started = self.clock()
        deadline = started + wait_seconds
        waited_until: float | None = None
        slots = self._budget(key).flight_slots(in_flight_cap(shape)) if priority != INTERACTIVE else None
        if slots is not None:
            slots.acquire()
        try:
            while True:
                try:
                    self._take(
                        key,
                        shape,
                        priority,
                        resuming=resuming,
                        waited_until=waited_until,
                        until=deadline,
                        queues=queues,
                    )
                    return self.clock() - started
                except OverBudget as refused:
                    now = self.clock()
                    if refused.retry_at > deadline or now >= deadline:
                        raise
                    waited_until = deadline
                    resuming = True  # back at the slot it was given: out of the queue when served
                    sleep(max(0.05, min(refused.retry_at, deadline) - now))
        except BaseException:
            if slots is not None:
                slots.release()
            raise

    def landed(self, key: BudgetKey, shape: Shape, priority: str) -> None:
        """A call `spend` let go has its answer (or failed): its slot in the air is free again."""
        if priority != INTERACTIVE:
            self._budget(key).flight_slots(in_flight_cap(shape)).release()

    def reserve(self, key: BudgetKey, shape: Shape, priority: str, calls: int, *, wait_seconds: float = 0.0) -> float:
        """Take `calls` at once, all or none (the kickoff's access checks), waiting up to `wait_seconds`;
        the caller spends them without asking again until the time returned. A window counts them as made
        at the end of RESERVATION_SECONDS; a bucket (whose mirror cannot) only for a lease's life."""
        deadline = self.clock() + wait_seconds
        budget = self._budget(key)
        hold = RESERVATION_SECONDS if shape.model == WINDOW else 0.0
        while True:
            try:
                with budget.acquirer(f"{priority}+bulk"):  # a single call never queues behind a bulk request
                    self._acquire(key, budget, shape, priority, calls, exact=True, until=deadline, hold=hold)
                return self.clock() + (hold or shape.lease_seconds)
            except OverBudget as refused:
                now = self.clock()
                if refused.retry_at > deadline or now >= deadline:
                    raise
                time.sleep(max(0.05, refused.retry_at - now))

    def _take(
        self,
        key: BudgetKey,
        shape: Shape,
        priority: str,
        *,
        resuming: bool,
        waited_until: float | None,
        until: float | None,
        queues: bool = True,
    ) -> None:
        budget = self._budget(key)
        with budget.acquirer(priority):
            with budget.lock:
                now = self.clock()
                lease = budget.leases.get(priority)
                if lease is not None and lease.take(now):
                    return
                if lease is not None:
                    self._retire(budget, priority, lease, now)
                want = budget.want.get(priority, FIRST_LEASE[priority])
            decision = self._acquire(
                key,
                budget,
                shape,
                priority,
                want,
                resuming=resuming,
                waited_until=waited_until,
                until=until,
                queues=queues,
            )
            end = max(decision.state.grants) if shape.model == WINDOW and decision.state.grants else None
            with budget.lock:
                budget.leases[priority] = Lease(
                    decision.granted - 1, now + shape.lease_seconds, end, decision.granted, priority
                )

    def _retire(self, budget: _Budget, priority: str, lease: Lease, now: float) -> None:
        """An expired or spent lease: size the next one on how fast this one went, give back the unused
        (the caller holds `budget.lock`)."""
        spent = lease.granted - lease.tokens
        if lease.tokens == 0 and now < lease.expires:  # spent before it expired: lease more next time
            budget.want[priority] = min(MAX_LEASE[priority], max(2, spent * 2))
        else:
            budget.want[priority] = max(1, min(MAX_LEASE[priority], spent))
        if lease.tokens > 0 and lease.bucket_end is not None:
            budget.returned[lease.bucket_end] = budget.returned.get(lease.bucket_end, 0) + lease.tokens
        del budget.leases[priority]

    def _acquire(
        self,
        key: BudgetKey,
        budget: _Budget,
        shape: Shape,
        priority: str,
        want: int,
        *,
        exact: bool = False,
        resuming: bool = False,
        waited_until: float | None = None,
        until: float | None = None,
        hold: float = 0.0,
        queues: bool = True,
    ) -> Decision:
        fresh = False
        if not budget.known:
            budget.seen(store.load(key))
            fresh = True
        returned = budget.take_returned()  # written back with the next state this writes, granted or not
        try:
            for _ in range(WRITE_ATTEMPTS):
                now = self.clock()
                current = budget.state
                decision = plan(
                    current or BudgetState(),
                    shape,
                    now,
                    priority,
                    want,
                    exact=exact,
                    returned=returned,
                    resuming=resuming,
                    waited_until=waited_until,
                    hold=hold,
                )
                if decision.granted == 0:
                    if not fresh:  # refused on what this container last saw: look again before waiting
                        budget.seen(store.load(key))
                        fresh = True
                        continue
                    retry_at = decision.retry_at or now
                    if priority == INTERACTIVE and (_marked(current, priority, until) or retry_at > (until or now)):
                        # Already marked, or no room before the person stops waiting: nothing to hold off.
                        raise OverBudget(key, retry_at, now)
                    if priority != INTERACTIVE and not queues:  # gives up: not a waiter
                        metrics.refused(key, priority)
                        raise OverBudget(key, retry_at, now)
                    decision = refuse(decision.state, shape, now, priority, retry_at, until, resuming=resuming)
                seen = store.save(key, decision.state, None if current is None else current.ver)
                if seen is not None:  # another writer came first: plan again on what it wrote
                    with budget.lock:
                        budget.state, budget.known = (None if seen.ver < 0 else seen), True
                    fresh = True
                    continue
                budget.seen(decision.state)
                returned = {}
                if decision.granted == 0:
                    metrics.refused(key, priority)
                    raise OverBudget(key, decision.retry_at or now, now)
                metrics.granted(key, decision.granted, used(decision.state, shape, now), shape)
                return decision
            raise OverBudget(key, self.clock() + shape.lease_seconds)  # contention: come back in a moment
        finally:
            budget.put_back(returned)  # not written: still to give back

    def rate_limited(self, key: BudgetKey, shape: Shape, retry_after: float | None) -> None:
        """Bitbucket answered 429 on this budget: shrink it, forget this container's leases, count it."""
        budget = self._budget(key)
        with budget.lock:
            for priority, lease in list(budget.leases.items()):
                self._retire(budget, priority, lease, self.clock())
        if not budget.known:
            budget.seen(store.load(key))
        returned = budget.take_returned()
        try:
            for _ in range(WRITE_ATTEMPTS):
                state = budget.state
                new = after_rate_limited(state or BudgetState(), shape, self.clock(), retry_after, returned)
                seen = store.save(key, new, None if state is None else state.ver)
                if seen is None:
                    budget.seen(new)
                    returned = {}
                    break
                with budget.lock:
                    budget.state = None if seen.ver < 0 else seen
        finally:
            budget.put_back(returned)
        metrics.rate_limited(key)


def _marked(state: BudgetState | None, priority: str, until: float | None) -> bool:
    mark = state.waiting.get(priority) if state else None
    return mark is not None and until is not None and mark["until"] >= until


_ledger = Ledger()


def ledger() -> Ledger:
    return _ledger


@forgotten_on_reset
def _forget() -> None:
    """A new ledger when tests or the local stack switch endpoints (what it cached belongs to the old one)."""
    global _ledger
    _ledger = Ledger()


# ------------------------------------------------------------------------------------------------ metrics


class _Metrics:
    """CloudWatch metrics per provider and class (Powertools EMF lines, one per lease, refusal or 429):
    BudgetGranted (calls), BudgetUsedPercent, BudgetRefused (work sent away to wait, by priority),
    BitbucketRateLimited (429s met anyway)."""

    def _emit(self, key: BudgetKey, values: list[tuple[str, str, float]], **dimensions: str) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        metrics = EphemeralMetrics(namespace=settings().metrics_namespace)
        metrics.add_dimension(name="Provider", value=key.provider_id)
        metrics.add_dimension(name="Class", value=key.klass)
        for dimension, label in dimensions.items():
            metrics.add_dimension(name=dimension, value=label)
        for name, unit, value in values:
            metrics.add_metric(name=name, unit=getattr(MetricUnit, unit), value=value)
        metrics.flush_metrics()

    def granted(self, key: BudgetKey, calls: int, in_use: float, shape: Shape) -> None:
        share = 100.0 * in_use / (shape.limit if shape.model == WINDOW else shape.capacity)
        self._emit(key, [("BudgetGranted", "Count", calls), ("BudgetUsedPercent", "Percent", round(share, 1))])

    def refused(self, key: BudgetKey, priority: str) -> None:
        self._emit(key, [("BudgetRefused", "Count", 1)], Priority=priority)

    def rate_limited(self, key: BudgetKey) -> None:
        self._emit(key, [("BitbucketRateLimited", "Count", 1)])


metrics = _Metrics()


# ------------------------------------------------------------------------------------------------ reports


def describe(key: BudgetKey, state: BudgetState, shape: Shape | None, now: float | None = None) -> dict[str, Any]:
    """One budget as reports show it: used and limit now, 429s met, work waiting and until when."""
    now = time.time() if now is None else now
    body: dict[str, Any] = {
        "provider": key.provider_id,
        "user_id": key.user_id,
        "scope": "per_user" if key.user_id else "per_consumer",
        "class": key.klass,
        "rejected": state.rejected,
        "rejected_at": state.rejected_at,
        "granted": state.granted,
        "waiting": {
            p: {"until": round(w["until"], 3), "waiters": int(w.get("n", 1))}
            for p, w in sorted(state.waiting.items(), key=lambda pw: PRIORITIES.index(pw[0]))
            if w["until"] > now
        },
    }
    if shape is None:
        return body | {"model": state.model, "limited": False}
    body |= {"model": shape.model, "limited": True, "limit": shape.limit, "used": round(used(state, shape, now), 1)}
    if state.held_until > now:
        body["held_until"] = round(state.held_until, 3)  # a 429's Retry-After
    if shape.model == WINDOW:
        body |= {"window_seconds": shape.window, "ceiling": ceiling(state, shape, now)}
        if state.ceiling is not None and now < state.ceiling_until:
            body["ceiling_until"] = round(state.ceiling_until, 3)
    else:
        body |= {"refill_per_second": shape.refill, "capacity_budgeted": round(shape.capacity, 2)}
    return body


def report(provider_id: str | None = None, user_id: str | None = None) -> list[dict[str, Any]]:
    """Every budget in use (one person's with `user_id`; the consumer's too where a provider counts per
    consumer), each with its provider's current limits, for the command line and the console."""
    limits_of: dict[str, Limits | None] = {}
    names: dict[str, str | None] = {}
    rows = []
    found = store.listed(provider_id, user_id)
    if user_id is not None:
        found += [kv for kv in store.listed(provider_id) if kv[0].user_id is None]
    for key, state in found:
        if key.provider_id not in limits_of:
            try:
                limits_of[key.provider_id] = providers.limits(providers.get_provider(key.provider_id))
            except providers.UnknownProvider:
                limits_of[key.provider_id] = None
        found_limits = limits_of[key.provider_id]
        stale_consumer = found_limits is not None and found_limits.scope != PER_CONSUMER and key.user_id is None
        if user_id is not None and stale_consumer:
            continue  # a consumer budget left from an earlier setting: not this person's
        shape = shape_of(found_limits, key.klass) if found_limits else None
        row = describe(key, state, shape)
        if key.user_id is not None:
            if key.user_id not in names:
                user = accounts.get_user(key.user_id)
                names[key.user_id] = (user.display_name or user.email) if user else None
            row["person"] = names[key.user_id]
        rows.append(row)
    return rows


def for_connection(provider_id: str, user_id: str, limits: Limits) -> dict[str, Any]:
    """One person's budgets on one provider, every limited class (those never used at zero): what a product
    sees for its end user (`GET /service/v1/connections/{provider}/{end_user_id}/budget`)."""
    now = time.time()
    budgets = []
    for klass in limits.classes:
        shape = shape_of(limits, klass)
        key = key_for(provider_id, limits, user_id, klass)
        if shape is None or key is None:
            continue
        state = store.load(key) or BudgetState()
        row = describe(key, state, shape, now)
        row.pop("user_id", None)
        budgets.append(row)
    return {"scope": limits.scope, "limits": limits.describe(), "budgets": budgets}
