"""Reconciler benchmarks on the local stack + emulator (prints figures, never fails).

1. Economy: Bitbucket REST calls per repository per interval when nothing changed, in a scheduled run (hooks
   on their own cadence), against the minimum Bitbucket allows (issue 22, item 4):
   - Cloud: one page of pull requests per repository (newest update first: nothing newer than the last run;
     pull request activity does not move a repository's `updated_on`) + one call per workspace and run for
     the repositories whose `updated_on` moved (`q=updated_on>...&sort=-updated_on`, 100 a page);
   - Data Center: the ref-change probe (`ref-change-activities?limit=1`) + one page of pull requests.
   Hook checks add HOOK_CHECK_HOURS's share (every 6 hours on average: 1/24 call per 15-minute interval).
   Printed against the old 4 (hook, branches, tags, pull requests - more with ref pages). Target <= 1.2 x the
   minimum. Measured on the default seed's repositories (Cloud `acme/web-app` has 120 branches) of both
   flavors.
2. Scale: a bulk-seeded Cloud workspace of N repositories (default 1,000, 3 branches, 1 tag, 20 pull
   requests each; one member), every one subscribed (hook installed through the emulator's REST API),
   baseline reconciled, then reconciled again with nothing changed: calls against the minimum (from 20
   repositories in a workspace: its listing, its member list and one pull request query per member), and
   seconds for the whole run against the bare HTTP reads of the same run (the same GETs, no bookkeeping): one
   after another (the issue's baseline), and as many at once as the run reconciles side by side; and the
   bookkeeping per repository (its record: one DynamoDB write), which is now nearly all of a quiet run.

    .venv/bin/python tests/bench/reconcile.py [--repos 1000] [--skip-scale]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import PROVIDERS, api_session, bench_seed, emulator, limits_out_of_reach  # noqa: E402

# The scale run subscribes 1,000 repositories (a hook each) and baselines them (four reads each) before the
# measured run: hours of one person's Cloud allowance; the bench measures speed, not the budget.
SCALE_BEYOND_AN_HOUR = "measures reconcile speed; subscribing and baselining 1,000 repositories takes hours of calls"
OLD_CALLS = 4  # per unchanged repository per interval before change detection: hook, branches, tags, pull requests
from tests.e2e.support import user_id as session_user  # noqa: E402

DEFAULT_REPOS = {
    "cloud": ["acme/web-app", "acme/api-service", "acme/infra"],
    "datacenter": ["PLAT/core", "PLAT/tools", "WEB/site"],
}
PAGE = {"cloud": 100, "datacenter": 1000}


def control(stack, flavor: str, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{emulator(stack, flavor)}/_emulator/{path}", json=body, timeout=120)
    response.raise_for_status()
    return response.json() if response.content else None


def user_id(stack, flavor: str) -> str:
    return session_user(stack, api_session(stack, flavor, "alice"))


def use_stack(stack) -> None:
    """Run bitbridge's core in this process against the stack, as `bitbridge --local` does."""
    os.environ.update(requests.get(f"{stack.urls['console']}/env", timeout=5).json())
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # the bench prints its own figures
    from bitbridge.aws import reset_caches

    reset_caches()


def subscribe(flavor: str, user: str, full_names: list[str], base_url: str) -> None:
    from bitbridge import providers
    from bitbridge.budget import RECONCILE
    from bitbridge.calls import Caller
    from bitbridge.webhooks.subscriptions import Repository, install_webhook

    caller = Caller(user, providers.get_provider(PROVIDERS[flavor]), priority=RECONCILE)

    def one(full_name: str) -> None:
        repo, _ = providers.bitbucket(caller.provider).repository(caller.fork().fetch, caller.api, full_name)
        install_webhook(user, Repository(PROVIDERS[flavor], repo.id, repo.owner, repo.slug), base_url)

    caller.prime()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, full_names))


def old_calls(state_repo: dict[str, Any], flavor: str) -> int:
    """What an unchanged repository cost before change detection: hook + ref pages + one page of pull requests."""
    page = PAGE[flavor]
    return 1 + max(1, math.ceil(state_repo["branches"] / page)) + max(1, math.ceil(state_repo["tags"] / page)) + 1


def minimum(flavor: str, repositories: int, workspaces: int, members: int = 1) -> int:
    """The fewest calls that tell whether `repositories` (spread evenly over `workspaces` of `members` each)
    changed (README, Limits): Cloud, per workspace the listing past the oldest mark and, from PR_PROBE_FROM due
    repositories on, the member list and one query per member, else one page of pull requests per repository;
    Data Center, the ref-change probe and one page of pull requests per repository."""
    from bitbridge.reconcile.run import PR_PROBE_FROM

    if flavor != "cloud":
        return 2 * repositories
    each = repositories // workspaces
    prs = 1 + members if each >= PR_PROBE_FROM and 1 + members <= each else each
    return workspaces * (1 + prs)


def economy(stack) -> None:
    from bitbridge.reconcile.run import HOOK_CHECK_HOURS, HOOKS_ALL, run

    hook_share = 15 / (HOOK_CHECK_HOURS * 60)
    print("1. API calls per repository per 15-minute interval, nothing changed, as scheduled")
    for flavor, names in DEFAULT_REPOS.items():
        subscribe(flavor, user_id(stack, flavor), names, stack.api)
    run(hooks=HOOKS_ALL)  # baseline, every hook checked
    for flavor in DEFAULT_REPOS:
        control(stack, flavor, "DELETE", "requests")
    report = run()  # one scheduled run over every subscription: hooks not due
    for flavor, names in DEFAULT_REPOS.items():
        results = {r.repository: r for r in report.results if r.repository in names}
        assert all(r.status == "ok" and not r.refs_read and not r.hook_checked for r in results.values()), results
        state = {
            r["full_name"]: r for r in control(stack, flavor, "GET", "state")["repositories"] if r["flavor"] == flavor
        }
        used = sum(r.calls for r in results.values())
        least = minimum(flavor, len(names), len({n.split("/")[0] for n in names}))
        old = sum(old_calls(state[n], flavor) for n in names)
        for n in names:
            print(f"   {flavor:<10} {n:<22} calls {results[n].calls:>3}  before {old_calls(state[n], flavor):>3}")
        print(
            f"   {flavor:<10} total calls {used} / minimum {least} = ratio {used / least:.2f} (target <= 1.2); "
            f"per repository {used / len(names):.2f} + {hook_share:.2f} for hooks, against {old / len(names):.2f} "
            f"before ({OLD_CALLS} at the least): {old / used:.1f}x fewer"
        )


# Bitbucket Cloud answers a REST call in about this much (an assumption for the second measurement: the
# emulator answers in milliseconds, so its run is the bookkeeping's cost at its worst).
CLOUD_ROUND_TRIP_MS = 100


def scale(stack, count: int) -> None:
    from bitbridge.reconcile.run import run

    print(f"2. Reconciling {count} subscribed Cloud repositories, nothing changed")
    control(stack, "cloud", "POST", "seed", bench_seed(count, pull_requests=20))
    names = [f"bench/repo-{n:04d}" for n in range(1, count + 1)]
    started = time.monotonic()
    subscribe("cloud", user_id(stack, "cloud"), names, stack.api)
    print(f"   subscribed (hooks installed) in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    baseline = run()
    print(f"   baseline of {len(baseline.results)} subscriptions in {time.monotonic() - started:.1f} s")
    print("   the emulator answering at once (bookkeeping at its dearest):")
    quiet_run(stack, names)
    control(
        stack, "cloud", "POST", "faults", {"flavor": "cloud", "path_prefix": "/2.0/", "latency_ms": CLOUD_ROUND_TRIP_MS}
    )
    print(f"   every Bitbucket call taking {CLOUD_ROUND_TRIP_MS} ms, as Cloud's do:")
    quiet_run(stack, names)
    control(stack, "cloud", "DELETE", "faults")


def quiet_run(stack, names: list[str]) -> None:
    """A reconcile run with nothing changed, against the bare reads it makes (one token, the same GETs, nothing
    parsed or stored: the workspace listing past the oldest mark, one page of pull requests per repository),
    one after another and as many at once as the run reconciles side by side."""
    from bitbridge import providers
    from bitbridge.budget import RECONCILE
    from bitbridge.calls import Caller
    from bitbridge.reconcile.run import PR_PROBE_FROM, RECONCILE_THREADS, run
    from bitbridge.store.subscriptions import SubscriptionRecord

    control(stack, "cloud", "DELETE", "requests")
    started = time.monotonic()
    report = run()
    seconds = time.monotonic() - started
    bench = [r for r in report.results if r.repository.startswith("bench/")]
    assert all(r.status == "ok" and not r.refs_read for r in bench), [r for r in bench if r.status != "ok"][:3]
    calls = sum(r.calls for r in bench)
    caller = Caller(user_id(stack, "cloud"), providers.get_provider(PROVIDERS["cloud"]), priority=RECONCILE)
    api = caller.api
    oldest = min(str(s.refs_mark) for s in SubscriptionRecord.scan() if s.repository_full_name.startswith("bench/"))
    listing = {"q": f"updated_on > {oldest}", "sort": "-updated_on", "pagelen": 100}

    probed = len(names) >= PR_PROBE_FROM  # the workspace's pull requests asked of its one member (alice)
    prs = {"state": ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"], "q": f"updated_on > {oldest}", "pagelen": 50}
    reads = [f"{api}/workspaces/bench/members"] if probed else []
    reads += (
        [f"{api}/workspaces/bench/pullrequests/{alice_uuid(caller)}"]
        if probed
        else [f"{api}/repositories/{name}/pullrequests" for name in names]
    )

    def read(url: str) -> None:
        caller.fork().fetch(url, prs if "pullrequests" in url else {"pagelen": 100})

    caller.prime()
    started = time.monotonic()
    caller.fetch(f"{api}/repositories/bench", listing)
    for url in reads:
        read(url)
    bare = time.monotonic() - started
    started = time.monotonic()
    caller.fetch(f"{api}/repositories/bench", listing)
    with ThreadPoolExecutor(RECONCILE_THREADS) as pool:
        list(pool.map(read, reads))
    side_by_side = time.monotonic() - started
    count = len(names)
    least = minimum("cloud", count, 1)
    print(
        f"     reconcile run: {seconds:.1f} s for {len(bench)} subscriptions, {calls} calls ({calls / count:.3f} per "
        f"repository; minimum {least}: ratio {calls / least:.2f}; before {OLD_CALLS} a repository: "
        f"{OLD_CALLS * count / calls:.1f}x fewer)\n"
        f"     the same {1 + len(reads)} GETs bare, one after another, {bare:.2f} s: ratio {seconds / bare:.2f} "
        f"(target <= 1.5)\n"
        f"     bare, {RECONCILE_THREADS} at a time, {side_by_side:.2f} s: ratio {seconds / side_by_side:.2f}\n"
        f"     bookkeeping per repository: {1000 * (seconds - side_by_side) / count:.1f} ms (its record, one DynamoDB "
        "write; the ledgers 100 to a read)"
    )


def alice_uuid(caller: Any) -> str:
    return str(caller.fetch(f"{caller.api}/user", None)["uuid"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        try:
            use_stack(stack)
            economy(stack)  # under Bitbucket's limits, as deployed
            if not args.skip_scale:
                limits_out_of_reach(stack, SCALE_BEYOND_AN_HOUR)
                scale(stack, args.repos)
        finally:
            stop_stack(stack)


if __name__ == "__main__":
    main()
