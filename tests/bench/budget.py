"""Rate-limit budget benchmarks on the local stack + emulator (prints figures, never fails).

1. Bookkeeping per Bitbucket call: the same GET of a repository made through `calls.Caller` in this process
   (as `bitbridge --local` runs the core) with the provider's budget off (the baseline: a bare call) and on,
   and far from its limits: milliseconds and AWS calls per Bitbucket call, for background work
   (the import worker's priority: leases of several calls) and for a person waiting (the console's and the
   proxy's: small leases), warm, and the first call of a cold container.
2. The scale case: N bulk-seeded Cloud repositories of one person imported under limits of L calls per class
   per W-second window (default: the issue's 1,000 repositories at Bitbucket's 1,000 an hour, the hour played
   in 60 s) while a product proxies 100 calls for the same person in the same class: wall time, 429s served,
   the share of the allowance in use while imports waited for it, the proxied calls' wait for budget.

    .venv/bin/python tests/bench/budget.py [--calls 300] [--repos 1000] [--window 60] [--limit 1000]
                                           [--proxied 100] [--skip-scale]

`--repos 100 --limit 100` takes about five minutes; the default about fifteen.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e import budget_scale  # noqa: E402
from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import PROVIDERS, api_session, emulator, limits_out_of_reach  # noqa: E402
from tests.e2e.support import user_id as session_user  # noqa: E402

PATH = "repositories/acme/infra"


def use_stack(stack: Any) -> None:
    """Run bitbridge's core in this process against the stack, as `bitbridge --local` does."""
    os.environ.update(requests.get(f"{stack.urls['console']}/env", timeout=5).json())
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # the bench prints its own figures
    from bitbridge.aws import reset_caches

    reset_caches()


def measure(user: str, priority: str, calls: int, *, cold: bool = False) -> tuple[float, Counter[str], int]:
    """(milliseconds per call, AWS calls by operation, Bitbucket calls) for `calls` sequential GETs of bob's."""
    from bitbridge import budget, metering, providers
    from bitbridge.aws import client
    from bitbridge.calls import Caller
    from bitbridge.store.base import watch_models

    if cold:
        budget._forget()  # a new container: nothing leased, nothing known
    caller = Caller(user, providers.get_provider(PROVIDERS["cloud"]), priority=priority)
    caller.prime()  # the token is read once per caller either way: not the budget's cost
    url = f"{caller.api}/{PATH}"
    with metering.metered() as meter:
        metering.watch(client("dynamodb"))
        watch_models(metering.watch)
        started = time.perf_counter()
        for _ in range(calls):
            caller.get(url, "bench")
        seconds = time.perf_counter() - started
    return seconds * 1000 / calls, Counter(meter.aws), meter.bitbucket


def set_budget(on: bool) -> None:
    """The provider's budget on or off, as `bitbridge providers set-limits --limits` sets it."""
    from bitbridge import providers

    providers.set_limits(PROVIDERS["cloud"], {"enabled": on})


def bookkeeping(stack: Any, calls: int, rounds: int) -> None:
    from bitbridge.budget import IMPORT, INTERACTIVE

    print("\n== Budget bookkeeping per Bitbucket call (GET one repository, sequential, warm) ==")
    # Thousands of calls in a minute: limits far away, so what is measured is the bookkeeping, never a wait
    # (leases are as large as at Bitbucket's own limits while the allowance is far from spent). Bob's
    # allowance: the scale run that follows is alice's.
    limits_out_of_reach(stack, "measures the budget's bookkeeping, not its waits", ("cloud",))
    user = session_user(stack, api_session(stack, "cloud", "bob"))
    use_stack(stack)
    modes = {
        "bare call (budget off)": (False, IMPORT),
        "background (import), warm": (True, IMPORT),
        "a person waiting, warm": (True, INTERACTIVE),
    }
    samples: dict[str, list[float]] = {label: [] for label in modes}
    aws: dict[str, Counter[str]] = {label: Counter() for label in modes}
    bitbucket: Counter[str] = Counter()
    for _ in range(rounds):  # interleaved, so the machine's load falls on every mode alike
        for label, (on, priority) in modes.items():
            set_budget(on)
            measure(user, priority, 5)  # warm: the item is known and a lease is held
            ms, ops, n = measure(user, priority, calls)
            samples[label].append(ms)
            aws[label].update(ops)
            bitbucket[label] += n
    set_budget(True)
    cold = [measure(user, p, 1, cold=True) for p in (IMPORT, INTERACTIVE)]
    bare = statistics.median(samples["bare call (budget off)"])
    print(f"{'':<28} {'ms/call':>8} {'vs bare':>8} {'AWS calls/call':>15}  by operation  ({rounds} rounds, median)")
    for label in modes:
        ms = statistics.median(samples[label])
        per = sum(aws[label].values()) / max(1, bitbucket[label])
        ops = ", ".join(f"{k}={v / max(1, bitbucket[label]):.3f}" for k, v in sorted(aws[label].items())) or "-"
        print(f"{label:<28} {ms:>8.2f} {ms / bare:>7.2f}x {per:>15.3f}  {ops}")
    for (ms, ops, _), label in zip(cold, ("a cold container", "cold, a person"), strict=True):
        listed = ", ".join(f"{k}={v}" for k, v in sorted(ops.items())) or "-"
        print(f"{'first call: ' + label:<28} {ms:>8.2f} {ms / bare:>7.2f}x {sum(ops.values()):>15}  {listed}")
    print(
        "Leases: a warm container writes the budget once per lease (up to 20 calls for background work, 5 for\n"
        "people), a versioned PutItem of a ~1-2 KB item (2 WCU); it reads it (GetItem, 1 RCU) only when cold or\n"
        "refused. On AWS a DynamoDB write is a few milliseconds, once per lease."
    )


def scale(stack: Any, repos: int, window: float, limit: int, proxied: int) -> None:
    print(f"\n== Scale: {repos} repositories under {limit} calls per class per {window:g} s ==")
    calls_per_repo = 4.5  # repository, branches, tags, pull requests (+ hooks in their own class)
    expected = max(window, repos * calls_per_repo / limit * window)
    result = budget_scale.run(stack, repos, window, limit, proxy_every=expected / proxied, timeout=expected * 4)
    for line in result.lines():
        print(line)
    share = result.share_used_while_waiting()
    print(
        f"targets: 0 x 429 ({'met' if set(result.rejected.values()) <= {0} else 'MISSED'}); every import completed "
        f"({'met' if result.states == {'completed': repos} else 'MISSED'}); proxied wait p99 <= 2 s "
        f"({'met' if result.p99_proxied_wait() <= 2 and not result.proxied_refused else 'MISSED'}); >= 90 % of the "
        f"allowance used while work waited ({'met' if share is not None and share >= 0.9 else 'MISSED'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="Bitbucket calls per bookkeeping measurement")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the bookkeeping measurement")
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds that play Bitbucket's hour")
    parser.add_argument("--limit", type=int, default=1000, help="calls per class per window")
    parser.add_argument("--proxied", type=int, default=100, help="calls a product proxies during the import")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-bookkeeping", action="store_true")
    args = parser.parse_args()
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bitbridge-bench-")))
    try:
        print(f"emulator {emulator(stack, 'cloud')}: Bitbucket's limits on")
        if not args.skip_bookkeeping:
            bookkeeping(stack, args.calls, args.rounds)
        if not args.skip_scale:
            scale(stack, args.repos, args.window, args.limit, args.proxied)
    finally:
        stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
