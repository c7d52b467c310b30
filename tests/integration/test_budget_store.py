"""The budget on DynamoDB (moto, the template's BudgetsTable and policies): many containers (one `Ledger`
each) and many threads spending one person's allowance at once never exceed it in any window; background
work leaves people their reserve and yields to higher priorities; the bookkeeping stays cheap."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from bitbridge import budget, metering
from bitbridge.bitbucket import limits
from bitbridge.budget import DELIVERY, IMPORT, INTERACTIVE, RECONCILE, Ledger, OverBudget, Shape
from bitbridge.store import budget as store
from infra.local.iam import acting_as
from tests.unit.test_budget import bucket_never_empty, window_never_over

KEY = store.for_user("bitbucket-cloud", "u-1", "repositories")


def _hammer(shape: Shape, seconds: float, plan: list[tuple[Ledger, str]]) -> dict[str, list[float]]:
    """Each (ledger, priority) is a thread spending calls as fast as it is granted them for `seconds`; a
    refusal waits until its retry time, as the worker's re-sent message would. The time each call was
    granted, by priority."""
    spent: dict[str, list[float]] = {p: [] for p in budget.PRIORITIES}
    lock = threading.Lock()
    stop = time.time() + seconds

    def worker(ledger: Ledger, priority: str) -> None:
        with acting_as("ImportWorkerFunction"):
            resuming = False
            while time.time() < stop:
                try:
                    ledger.spend(KEY, shape, priority, resuming=resuming, wait_seconds=0.0)
                    resuming = False
                except OverBudget as refused:
                    resuming = True
                    time.sleep(max(0.0, min(refused.retry_at, stop) - time.time()))
                    continue
                with lock:
                    spent[priority].append(time.time())
                time.sleep(0.005)  # the call itself
                ledger.landed(KEY, shape, priority)

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        for ledger, priority in plan:
            pool.submit(worker, ledger, priority)
    return spent


def test_many_containers_and_threads_never_exceed_the_window(aws):
    shape = Shape(limits.WINDOW, 40, window=4.0)
    containers = [Ledger() for _ in range(4)]
    spent = _hammer(shape, 10.0, [(c, p) for c in containers for p in (IMPORT, IMPORT, RECONCILE, INTERACTIVE)])
    every = sorted(t for times in spent.values() for t in times)
    assert window_never_over(every, shape.window, shape.limit)
    # Not idle either: over 10 s of a 40-per-4 s allowance, most of what the counted window allows was spent.
    assert len(every) >= 0.8 * shape.limit * 10.0 / shape.counted_window
    stored = store.load(KEY)
    assert stored is not None and stored.granted >= len(every)


def test_many_containers_never_run_a_datacenter_bucket_dry(aws):
    # Refilled 5 a second: the threads are held back by the bucket, not by the machine (at 10 a second a
    # loaded 2-core machine's round trips to moto spent only 5.5 a second, and the test measured the CPU).
    shape = Shape(limits.BUCKET, 20, refill=5.0)
    containers = [Ledger() for _ in range(3)]
    spent = _hammer(shape, 6.0, [(c, p) for c in containers for p in (IMPORT, INTERACTIVE, RECONCILE)])
    every = sorted(t for times in spent.values() for t in times)
    assert bucket_never_empty(every, shape.limit, shape.refill)
    assert len(every) >= 0.8 * shape.refill * 6.0


def test_imports_take_the_room_the_reconciler_waits_and_people_keep_their_reserve(aws):
    # An 8 s window: a waiting import's marker must outlive its container's next ask, which a loaded machine
    # delayed past a 4 s window's markers (the reconciler then took 9 of 29 calls).
    shape = Shape(limits.WINDOW, 40, window=8.0)
    containers = [Ledger() for _ in range(2)]
    plan = [(c, IMPORT) for c in containers] + [(c, RECONCILE) for c in containers]
    spent = _hammer(shape, 18.0, plan)
    # Both start on an empty window; once imports wait for room, every call that frees goes to them.
    # (The reconciler is served only in moments no import waits: room the imports did not ask for.)
    contended = min(min(times) for times in spent.values() if times) + shape.counted_window
    imports = len([t for t in spent[IMPORT] if t >= contended])
    reconciles = len([t for t in spent[RECONCILE] if t >= contended])
    assert imports >= 20 and reconciles <= 0.15 * imports, (imports, reconciles)
    # Background work alone never holds more than the allowance less the reserve (2 of 40) in a window.
    background = sorted(spent[IMPORT] + spent[RECONCILE])
    assert window_never_over(background, shape.window, 38)
    # A person asking now is served at once, from the reserve.
    with acting_as("ApiFunction"):
        waited = Ledger().spend(KEY, shape, INTERACTIVE, wait_seconds=3.0)
    assert waited < 1.0


def test_refused_work_that_gives_up_holds_nobody_off_and_work_that_comes_back_does(aws):
    shape = Shape(limits.BUCKET, 20, refill=1.0)  # capacity 18 of 20 budgeted, the reserve's 0 whole calls
    with acting_as("EventPublisherFunction"):
        ledger = Ledger()
        for _ in range(18):  # the bucket run down (each call landed: its slot in the air given back)
            ledger.spend(KEY, shape, IMPORT)
            ledger.landed(KEY, shape, IMPORT)
        # An event's changed files, refused: published without them, never back for a slot.
        with pytest.raises(OverBudget):
            Ledger().spend(KEY, shape, DELIVERY, queues=False)
        assert DELIVERY not in (store.load(KEY) or budget.BudgetState()).waiting
        time.sleep(1.2)  # a token refilled: the reconciler, lowest, may have it - nobody waits for it
        Ledger().spend(KEY, shape, RECONCILE)
        # Refused work that comes back at its slot queues, and lower priorities yield to it.
        with pytest.raises(OverBudget):
            Ledger().spend(KEY, shape, DELIVERY)
        assert store.load(KEY).waiting[DELIVERY]["n"] == 1  # type: ignore[union-attr]
        time.sleep(1.2)
        with pytest.raises(OverBudget):
            Ledger().spend(KEY, shape, RECONCILE)


def test_a_person_waits_a_few_seconds_at_most_then_is_told_when_to_come_back(aws):
    shape = Shape(limits.WINDOW, 5, window=60.0)
    with acting_as("ServiceApiFunction"):
        ledger = Ledger()
        reserved = time.monotonic()
        ledger.reserve(KEY, shape, INTERACTIVE, 5, wait_seconds=0)
        started = time.monotonic()
        try:
            ledger.spend(KEY, shape, INTERACTIVE, wait_seconds=3.0)
        except OverBudget as refused:
            assert time.monotonic() - started < 1.0  # room frees in a minute: no point waiting 3 s
            # Reserved calls count as made at the end of their RESERVATION_SECONDS, for a counted window.
            frees, since = budget.RESERVATION_SECONDS + shape.counted_window, time.monotonic() - reserved
            assert refused.code == "rate_limited"
            assert frees - since - 1 <= refused.details["retry_after"] <= math.ceil(frees), refused.details
        else:
            raise AssertionError("the window was full")


def test_a_warm_container_pays_a_fraction_of_a_dynamodb_call_per_bitbucket_call(aws):
    shape = Shape(limits.WINDOW, 1000, window=3600.0)
    ledger = Ledger()
    with acting_as("ImportWorkerFunction"), metering.metered() as meter:
        metering.watch(store.client("dynamodb"))
        for _ in range(200):
            ledger.spend(KEY, shape, IMPORT)
            time.sleep(0.002)
            ledger.landed(KEY, shape, IMPORT)
    calls = Counter(meter.aws)
    assert calls["dynamodb:GetItem"] == 1  # the first look, then the item each write returned
    assert calls["dynamodb:PutItem"] <= 200 / 5  # leases of several calls


def test_a_429_met_anyway_is_counted_and_holds_the_window(aws):
    shape = Shape(limits.WINDOW, 100, window=60.0)
    ledger = Ledger()
    with acting_as("ImportWorkerFunction"):
        for _ in range(10):
            ledger.spend(KEY, shape, IMPORT)
            ledger.landed(KEY, shape, IMPORT)
        ledger.rate_limited(KEY, shape, None)
        stored = store.load(KEY)
        assert stored is not None and stored.rejected == 1
        assert stored.ceiling == 9  # the 10 calls made, less the one Bitbucket refused (the lease's rest given back)
        try:
            ledger.spend(KEY, shape, IMPORT)
        except OverBudget as refused:
            assert refused.retry_at > time.time() + 50
        else:
            raise AssertionError("the window is held after a 429")
    described = budget.describe(KEY, stored, shape)
    assert described["rejected"] == 1 and described["ceiling"] == stored.ceiling


def test_at_bitbuckets_rates_one_background_call_is_in_the_air_per_container(aws):
    shape = Shape(limits.WINDOW, 1000, window=3600.0)  # 0.28 calls a second
    assert budget.in_flight_cap(shape) == 1
    assert budget.in_flight_cap(Shape(limits.BUCKET, 60, refill=5.0)) == 10
    ledger = Ledger()
    second_sent = threading.Event()

    def second() -> None:
        with acting_as("ImportWorkerFunction"):
            ledger.spend(KEY, shape, IMPORT)
            second_sent.set()
            ledger.landed(KEY, shape, IMPORT)

    with acting_as("ImportWorkerFunction"):
        ledger.spend(KEY, shape, IMPORT)
        other = threading.Thread(target=second)
        other.start()
        assert not second_sent.wait(0.5)  # waits for the first call's answer...
        ledger.spend(KEY, shape, INTERACTIVE)  # (people never wait for it)
        ledger.landed(KEY, shape, IMPORT)
        assert second_sent.wait(5)  # ...and goes once it has landed
        other.join()


def test_a_persons_call_never_queues_behind_background_bookkeeping_in_the_same_container(aws):
    shape = Shape(limits.WINDOW, 1000, window=3600.0)
    ledger = Ledger()
    with acting_as("ApiFunction"):
        ledger.spend(KEY, shape, INTERACTIVE)  # the item is known: what follows is one lease each
        with ledger._budget(KEY).acquirer(IMPORT):  # background work is taking a lease (a slow write)...
            served = threading.Event()

            def person() -> None:
                with acting_as("ApiFunction"):
                    for _ in range(3):  # ...a person's calls, leases included, go meanwhile
                        ledger.spend(KEY, shape, INTERACTIVE)
                served.set()

            threading.Thread(target=person).start()
            assert served.wait(10)


def test_each_lease_refusal_and_429_is_a_cloudwatch_metric_per_provider_and_class(aws, capsys, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    shape = Shape(limits.WINDOW, 4, window=60.0)
    ledger = Ledger()
    with acting_as("ImportWorkerFunction"):
        ledger.reserve(KEY, shape, INTERACTIVE, 4)
        with pytest.raises(OverBudget):
            ledger.spend(KEY, shape, IMPORT)
        ledger.rate_limited(KEY, shape, None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = [m["Name"] for line in lines for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["BudgetGranted", "BudgetUsedPercent", "BudgetRefused", "BitbucketRateLimited"]
    assert all(line["Provider"] == "bitbucket-cloud" and line["Class"] == "repositories" for line in lines)
    assert lines[0]["BudgetGranted"] == [4.0] and lines[1]["Priority"] == "import"
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "bitbridge" for line in lines)
