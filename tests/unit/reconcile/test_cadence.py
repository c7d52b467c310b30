"""Hooks are checked on their own cadence (bitbridge.reconcile.run.hook_check_due): never sooner than 0.75 x
HOOK_CHECK_HOURS after the last check, always by 1.25 x, spread so that checks that began together do not come
back together; every run while a subscription needs attention or its hook id is unknown; never a manual one."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bitbridge.reconcile.run import HOOK_CHECK_HOURS, NEEDS_ATTENTION, hook_check_due
from bitbridge.store.subscriptions import SubscriptionRecord
from bitbridge.timestamps import iso

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def subscription(sub_id: str, *, last: datetime | None = START, **fields) -> SubscriptionRecord:
    sub = SubscriptionRecord(sub_id, provider_id="p", repository_key="p#r", repository_full_name="w/r", **fields)
    sub.hook_id = fields.get("hook_id", "{hook}")
    sub.created_at = iso(START - timedelta(days=3))
    sub.last_hook_check_at = iso(last) if last else None
    return sub


@given(st.text(min_size=1, max_size=40), st.floats(min_value=0, max_value=3 * HOOK_CHECK_HOURS))
def test_never_sooner_than_three_quarters_and_always_by_five_quarters(sub_id, hours):
    due = hook_check_due(subscription(sub_id), START + timedelta(hours=hours))
    if hours < 0.75 * HOOK_CHECK_HOURS:
        assert not due
    if hours >= 1.25 * HOOK_CHECK_HOURS:
        assert due


def test_checks_that_began_together_spread_over_the_window():
    # 1,000 hooks checked at the same moment: their next checks fall in every half hour of the 4.5-7.5 h span,
    # none holding more than twice its share.
    def first_due(sub: SubscriptionRecord) -> float:
        minutes = 0
        while not hook_check_due(sub, START + timedelta(minutes=minutes)):
            minutes += 5
        return minutes / 60

    bins = Counter(int((first_due(subscription(f"sub-{n}")) - 0.75 * HOOK_CHECK_HOURS) * 2) for n in range(1000))
    share = 1000 / (0.5 * HOOK_CHECK_HOURS * 2)
    assert set(bins) >= set(range(int(0.5 * HOOK_CHECK_HOURS * 2)))
    assert max(bins.values()) <= 2 * share


def test_before_any_check_the_hook_counts_as_checked_when_installed():
    sub = subscription("s", last=None)
    assert hook_check_due(sub, START)  # installed three days ago
    sub.created_at = iso(START - timedelta(minutes=5))
    assert not hook_check_due(sub, START)


def test_attention_unknown_hook_and_manual():
    assert hook_check_due(subscription("a", state=NEEDS_ATTENTION), START)
    unknown = subscription("u")
    unknown.hook_id = None
    assert hook_check_due(unknown, START)
    assert not hook_check_due(subscription("m", manual=True), START + timedelta(days=30))


def test_a_workspaces_subscriptions_share_a_slot_and_the_rest_spread():
    # Cloud's workspace listing and pull request probe answer for all of a workspace's repositories: they are
    # due in the same run, once per interval; subscriptions keyed by their own id spread over every slot.
    from bitbridge.reconcile.run import due

    wide = [
        SubscriptionRecord(f"w{n}", provider_id="p", repository_key="p#r", repository_full_name=f"wide/r{n}")
        for n in range(40)
    ]
    alone = [
        SubscriptionRecord(f"a{n}", provider_id="q", repository_key="q#r", repository_full_name=f"x{n}/r")
        for n in range(300)
    ]
    for sub in wide + alone:
        sub.last_reconciled_at = iso(START)  # not overdue

    def key(s: SubscriptionRecord) -> str:
        return s.repository_full_name.split("/")[0] if s.provider_id == "p" else s.subscription_id

    runs = [
        due(wide + alone, slot=slot, slots=15, now=START + timedelta(minutes=1), slot_key=key) for slot in range(15)
    ]
    assert sorted(len([s for s in run if s.provider_id == "p"]) for run in runs) == [0] * 14 + [40]
    spread = Counter(slot for slot, run in enumerate(runs) for s in run if s.provider_id == "q")
    assert len(spread) == 15 and sum(spread.values()) == 300  # every one once, in every slot
