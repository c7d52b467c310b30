"""The budget's arithmetic (`bitbridge.budget`): whatever the order, timing and priority of requests, and
however late a granted call reaches Bitbucket within its lease, Bitbucket's own limit is never exceeded;
people keep their reserve; lower priorities yield; a 429 shrinks the budget."""

from __future__ import annotations

import math
import random
from bisect import bisect_right

from hypothesis import given, settings
from hypothesis import strategies as st

from bitbridge import budget
from bitbridge.bitbucket import limits
from bitbridge.budget import HOOK_REPAIR, IMPORT, INTERACTIVE, PRIORITIES, RECONCILE, Shape
from bitbridge.store.budget import BudgetState

T0 = 1_800_000_000.0


def cloud(limit: int = 50, window: float = 60.0, reserve: float = 0.05) -> Shape:
    return Shape(limits.WINDOW, limit, window=window, reserve=reserve)


def datacenter(capacity: int = 60, refill: float = 5.0) -> Shape:
    return Shape(limits.BUCKET, capacity, refill=refill)


def window_never_over(arrivals: list[float], window: float, limit: int) -> bool:
    """Bitbucket Cloud's check at each arrival: the calls of the last `window` seconds, this one included."""
    ordered = sorted(arrivals)
    return all(i + 1 - bisect_right(ordered, t - window) <= limit for i, t in enumerate(ordered))


def bucket_never_empty(arrivals: list[float], capacity: float, refill: float) -> bool:
    """Bitbucket Data Center's bucket at each arrival: starts full, refills, one token a request."""
    tokens, last = float(capacity), None
    for t in sorted(arrivals):
        if last is not None:
            tokens = min(capacity, tokens + (t - last) * refill)
        last = t
        if tokens < 1 - 1e-9:
            return False
        tokens -= 1
    return True


requests = st.lists(
    st.tuples(
        # the gap before this request: a moment, or about one window or one bucket's refill (s), or the
        # time the budget said to come back (None)
        st.one_of(st.floats(min_value=0.0, max_value=3.0), st.sampled_from([-1.0, -0.5, 0.5, 1.0]), st.none()),
        st.sampled_from([*PRIORITIES, "reservation"]),  # a reservation: a kickoff's checks, made later
        st.integers(min_value=1, max_value=12),  # lease wanted
        st.sampled_from([0.0, 1.0, None]),  # where in the lease's span the calls land: first, last, anywhere
    ),
    min_size=1,
    max_size=250,
)


def simulate(shape: Shape, steps: list[tuple[float | None, str, int, float | None]]) -> tuple[list[float], BudgetState]:
    """Grant as the budget says; each granted call reaches Bitbucket anywhere in its lease's span (as late
    as the span allows, to find the edge)."""
    rng = random.Random(0)
    period = shape.window if shape.model == limits.WINDOW else shape.limit / shape.refill
    state, now, arrivals, retry_at = BudgetState(), T0, [], T0
    for gap, kind, want, spread in steps:
        if gap is None:
            now = max(now, retry_at)
        else:
            now += gap if gap >= 0 else period + gap + 1.0  # -1.0: one period on; -0.5: half a second later...
        reserved = kind == "reservation"
        priority = INTERACTIVE if reserved else kind
        # A reservation's calls are made until RESERVATION_SECONDS on in a window, a lease's life in a bucket.
        hold = (budget.RESERVATION_SECONDS if shape.model == limits.WINDOW else 0.0) if reserved else 0.0
        decision = budget.plan(state, shape, now, priority, want, exact=reserved, hold=hold)
        if decision.granted:
            state = decision.state
            for _ in range(decision.granted):
                where = rng.random() if spread is None else spread
                arrivals.append(now + where * (hold + shape.span))
        else:
            assert decision.retry_at is not None and decision.retry_at >= now
            refused = budget.refuse(decision.state, shape, now, priority, decision.retry_at, now + 3)
            state, retry_at = refused.state, refused.retry_at or now
    return arrivals, state


@settings(max_examples=300, deadline=None)
@given(steps=requests, limit=st.integers(min_value=1, max_value=60), window=st.sampled_from([20.0, 60.0, 3600.0]))
def test_cloud_window_is_never_exceeded_in_any_window(steps, limit, window):
    shape = cloud(limit, window)
    arrivals, _ = simulate(shape, steps)
    assert window_never_over(arrivals, window, limit)


@settings(max_examples=300, deadline=None)
@given(steps=requests, capacity=st.integers(min_value=20, max_value=80), refill=st.sampled_from([1.0, 5.0, 10.0]))
def test_datacenter_bucket_never_runs_dry(steps, capacity, refill):
    shape = datacenter(capacity, refill)
    arrivals, _ = simulate(shape, steps)
    assert bucket_never_empty(arrivals, capacity, refill)


def test_a_plain_token_bucket_would_spend_twice_the_hour_the_window_does_not():
    # The reason for a sliding window: a bucket of L refilled L per hour spends L at once, then L more.
    shape = cloud(limit=100, window=3600)
    arrivals, state = simulate(shape, [(0.0, INTERACTIVE, 5, 0.0)] * 40 + [(36.0, INTERACTIVE, 5, 0.0)] * 100)
    assert window_never_over(arrivals, 3600, 100)
    assert len(arrivals) == 100  # all of it, once, in the first hour
    assert budget.used(state, shape, arrivals[0] + 10) == 100


def test_background_never_takes_the_people_reserve():
    shape = cloud(limit=100, reserve=0.05)
    state = BudgetState()
    granted = 0
    for second in range(200):
        decision = budget.plan(state, shape, T0 + second * 0.1, IMPORT, 10)
        if decision.granted:
            state, granted = decision.state, granted + decision.granted
    assert granted == 95
    person = budget.plan(state, shape, T0 + 20.1, INTERACTIVE, 1)
    assert person.granted == 1


def test_the_reserve_is_kept_in_a_bucket_too():
    shape = datacenter(capacity=60, refill=5)
    state = BudgetState()
    now = T0
    taken = 0
    while (decision := budget.plan(state, shape, now, RECONCILE, 5)).granted:
        state, taken = decision.state, taken + decision.granted
    assert taken == math.floor(shape.capacity - math.floor(0.05 * shape.capacity))
    assert budget.plan(state, shape, now, INTERACTIVE, 1).granted == 1


def test_refused_work_comes_back_when_room_has_freed_not_before():
    shape = cloud(limit=10, window=60)
    state = BudgetState()
    first = budget.plan(state, shape, T0, INTERACTIVE, 10, exact=True)
    assert first.granted == 10
    refused = budget.plan(first.state, shape, T0 + 1, IMPORT, 4)
    assert refused.granted == 0
    # Room for one call frees when the first bucket leaves the counted window.
    assert refused.retry_at is not None and refused.retry_at > T0 + 60
    assert budget.plan(first.state, shape, refused.retry_at - 0.01, INTERACTIVE, 1).granted == 0
    assert budget.plan(first.state, shape, refused.retry_at, INTERACTIVE, 1).granted == 1


def test_waiters_get_slots_from_the_windows_schedule_in_the_order_they_were_refused():
    shape = cloud(limit=20, window=60)
    state = BudgetState()
    for second in range(19):  # one call a second: the window frees one call a second, a minute later
        state = budget.plan(state, shape, T0 + second, IMPORT, 1, exact=True).state
    slots = []
    for n in range(4):
        now = T0 + 19 + n * 0.01
        decision = budget.plan(state, shape, now, IMPORT, 4)
        refused = budget.refuse(decision.state, shape, now, IMPORT, decision.retry_at or 0)
        slots.append(refused.retry_at)
        state = refused.state
    # The n-th waiter comes back when n waiters' calls (4 each) have left the window: 4 s apart.
    assert [round(s - slots[0], 1) for s in slots] == [0.0, 4.0, 8.0, 12.0]
    assert slots[0] == T0 + 3 + shape.counted_window + 0.5  # the 4th call's bucket (ends half a second on)
    assert state.waiting[IMPORT]["n"] == 4


def _an_import_queued() -> tuple[Shape, budget.Decision, float]:
    """A window 19 of 20 full of imports, and an import refused for more: queued, with its slot."""
    shape = cloud(limit=20, window=60)
    full = budget.plan(BudgetState(), shape, T0, IMPORT, 19, exact=True).state
    refused = budget.plan(full, shape, T0 + 1, IMPORT, 4)
    queued = budget.refuse(refused.state, shape, T0 + 1, IMPORT, refused.retry_at or 0)
    return shape, queued, queued.retry_at or 0


def test_lower_priorities_yield_while_higher_work_waits():
    shape, queued, slot = _an_import_queued()
    # Once room frees, the reconciler must not take it from the imports waiting for it...
    later = slot + 0.1
    assert budget.plan(queued.state, shape, later, RECONCILE, 4).granted == 0
    assert budget.plan(queued.state, shape, later, RECONCILE, 4).retry_at >= slot + shape.grace
    # ...but a hook repair (higher) and a person may.
    assert budget.plan(queued.state, shape, later, HOOK_REPAIR, 1).granted == 1
    assert budget.plan(queued.state, shape, later, INTERACTIVE, 1).granted == 1
    # The import comes back at its slot and is served.
    assert budget.plan(queued.state, shape, later, IMPORT, 4, resuming=True).granted >= 1


def test_a_served_queue_keeps_lower_priorities_off_while_its_work_comes_back_for_more():
    shape, queued, slot = _an_import_queued()
    served = budget.plan(queued.state, shape, slot, IMPORT, 1, resuming=True)
    assert served.granted == 1
    # Its last waiter is served, but the import spends that lease and asks again at once: the room freeing
    # meanwhile is still not the reconciler's...
    assert budget.plan(served.state, shape, slot + 0.1, RECONCILE, 1).granted == 0
    assert budget.plan(served.state, shape, slot + 0.1, IMPORT, 1).granted == 1
    # ...until the import has stayed away for `grace`: then room nobody asked for is the reconciler's.
    assert budget.plan(served.state, shape, slot + shape.grace + 0.1, RECONCILE, 1).granted == 1


def test_a_person_waiting_holds_background_work_off_then_lets_go():
    shape = cloud(limit=20, window=60)
    full = budget.plan(BudgetState(), shape, T0, INTERACTIVE, 20, exact=True).state
    refused = budget.plan(full, shape, T0 + 1, INTERACTIVE, 1)
    marked = budget.refuse(refused.state, shape, T0 + 1, INTERACTIVE, refused.retry_at or 0, until=T0 + 4)
    assert budget.blocked_until(marked.state, shape, T0 + 2, IMPORT) == T0 + 4 + shape.grace
    served = budget.plan(marked.state, shape, (refused.retry_at or 0), INTERACTIVE, 1, waited_until=T0 + 4)
    assert served.granted == 1
    assert INTERACTIVE not in served.state.waiting  # served: background work need not wait for it any more


def test_a_429_holds_the_window_at_what_bitbridge_already_has_until_it_passes():
    shape = cloud(limit=100, window=60)
    state = budget.plan(BudgetState(), shape, T0, IMPORT, 20, exact=True).state
    shrunk = budget.after_rate_limited(state, shape, T0 + 5, None)
    assert shrunk.rejected == 1 and shrunk.ceiling == 19
    assert budget.plan(shrunk, shape, T0 + 6, INTERACTIVE, 1).granted == 0
    refused = budget.plan(shrunk, shape, T0 + 6, IMPORT, 1)
    assert refused.retry_at is not None and T0 + 60 < refused.retry_at <= T0 + 5 + shape.counted_window
    # Once the window that met the 429 has passed, the whole allowance is back.
    assert budget.plan(shrunk, shape, T0 + 5 + shape.counted_window, IMPORT, 10).granted == 10


def test_a_datacenter_429_empties_the_bucket_until_retry_after():
    shape = datacenter()
    state = budget.after_rate_limited(BudgetState(), shape, T0, 3.0)
    assert budget.plan(state, shape, T0 + 2.9, INTERACTIVE, 1).granted == 0
    assert budget.plan(state, shape, T0 + 3 + 1 / shape.refill, INTERACTIVE, 1).granted == 1


def test_an_expired_lease_gives_its_unused_calls_back():
    shape = cloud(limit=10, window=60)
    leased = budget.plan(BudgetState(), shape, T0, IMPORT, 10, exact=True).state  # (10 % of 10: no whole call)
    (end,) = leased.grants
    assert budget.plan(leased, shape, T0 + 1, IMPORT, 5).granted == 0
    back = budget.plan(leased, shape, T0 + 1, IMPORT, 5, returned={end: 7})
    assert back.granted >= 1 and budget.used(back.state, shape, T0 + 1) == 3 + back.granted


def test_exact_reservations_are_all_or_nothing_and_leave_the_reserve_to_single_calls():
    shape = cloud(limit=40, window=60)  # 2 calls kept for people's single calls
    state = budget.plan(BudgetState(), shape, T0, INTERACTIVE, 30, exact=True).state
    assert budget.plan(state, shape, T0 + 1, INTERACTIVE, 9, exact=True).granted == 0
    assert budget.plan(state, shape, T0 + 1, INTERACTIVE, 8, exact=True).granted == 8
    state = budget.plan(state, shape, T0 + 1, INTERACTIVE, 8, exact=True).state
    assert budget.plan(state, shape, T0 + 2, INTERACTIVE, 2, exact=True).granted == 0  # the reserve: not in bulk
    assert budget.plan(state, shape, T0 + 2, INTERACTIVE, 1).granted == 1  # one by one, yes


def test_cloud_classes_follow_atlassians_table():
    api = "https://api.bitbucket.org/2.0"
    assert limits.cloud_class(f"{api}/repositories/ws/repo/refs/branches", api) == "repositories"
    assert limits.cloud_class(f"{api}/repositories/ws/repo/hooks/{{x}}", api) == "webhooks"
    assert limits.cloud_class(f"{api}/workspaces/ws/hooks", api) == "webhooks"
    assert limits.cloud_class(f"{api}/repositories/ws/repo/src/main/README.md", api) == "raw"
    assert limits.cloud_class(f"{api}/repositories/ws", api) == "repositories"
    assert limits.cloud_class(f"{api}/user/workspaces", api) == "other"
    local = "http://127.0.0.1:8990/2.0"
    assert limits.cloud_class(f"{local}/repositories/ws/repo/hooks", local) == "webhooks"


def test_settings_apply_over_the_flavors_numbers_and_refuse_what_does_not_fit():
    cloud_limits = limits.apply(limits.cloud_defaults(), {"window_seconds": 60, "classes": {"repositories": 50}})
    assert cloud_limits.window_seconds == 60 and cloud_limits.limit("repositories") == 50
    assert cloud_limits.limit("webhooks") == 1000
    for bad in ({"classes": {"nope": 1}}, {"refill_per_second": 5}, {"classes": {"raw": 0}}, {"reserve": 0.7}):
        try:
            limits.apply(limits.cloud_defaults(), bad)
        except limits.LimitsError:
            continue
        raise AssertionError(bad)
    dc = limits.apply(limits.datacenter_defaults(), {"classes": {"http": 120}, "refill_per_second": 10})
    assert (dc.limit("http"), dc.refill_per_second) == (120, 10)
    try:
        limits.apply(limits.datacenter_defaults(), {"window_seconds": 60})
    except limits.LimitsError:
        pass
    else:
        raise AssertionError("a bucket has no window")


def test_a_429_with_retry_after_holds_everyone_until_then_and_no_longer():
    shape = cloud(limit=100, window=60)
    state = budget.plan(BudgetState(), shape, T0, IMPORT, 10, exact=True).state
    held = budget.after_rate_limited(state, shape, T0 + 1, 3.0)
    assert held.rejected == 1 and held.ceiling is None  # Bitbucket said when: no guess about other apps
    for priority in PRIORITIES:
        refused = budget.plan(held, shape, T0 + 3.9, priority, 1)
        assert refused.granted == 0 and refused.retry_at is not None and refused.retry_at >= T0 + 4
        assert budget.plan(held, shape, T0 + 4.0, priority, 1).granted == 1
