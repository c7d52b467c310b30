"""Schedule events run locally as EventBridge Scheduler runs them: on the template's rate, as the function."""

from __future__ import annotations

import threading

import pytest

from infra.local.pollers import SchedulePoller, schedule_period
from infra.local.template import functions, load_template


def test_rates_become_periods_and_a_cron_is_refused_loudly():
    assert schedule_period("rate(1 minute)") == 60
    assert schedule_period("rate(15 minutes)") == 900
    assert schedule_period("rate(2 hours)") == 7200
    with pytest.raises(NotImplementedError, match="rate"):
        schedule_period("cron(0 12 * * ? *)")


def test_the_reconciler_is_scheduled_every_minute_in_the_template():
    (schedule,) = functions(load_template())["ReconcilerFunction"].schedules
    assert schedule_period(schedule["ScheduleExpression"]) == 60


class _Runner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.ran = threading.Event()

    def invoke(self, function: str, event: dict) -> None:
        self.calls.append((function, event))
        if len(self.calls) >= 3:
            self.ran.set()
        if len(self.calls) == 2:
            raise RuntimeError("a failed run is logged, and the schedule goes on")


def test_the_poller_invokes_the_function_every_period_and_survives_a_failed_run():
    runner = _Runner()
    poller = SchedulePoller(runner, "ReconcilerFunction", {"ScheduleExpression": "rate(1 minute)"}, period=0.05)
    poller.start()
    try:
        assert runner.ran.wait(5)
    finally:
        poller.stop()
        poller.join(2)
    assert {name for name, _ in runner.calls} == {"ReconcilerFunction"}
    assert all(
        event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
        for _, ev in runner.calls
        for event in [ev]
    )
    assert not poller.is_alive()
