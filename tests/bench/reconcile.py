"""Reconciler benchmarks on the local stack + emulator (prints figures, never fails).

1. Economy: Bitbucket REST calls per repository per interval when nothing changed (the emulator's
   per-repository counts), against the minimum possible for that state: one call for the hook, one per
   page of branches and of tags at the largest page (Cloud 100, Data Center 1000; an empty list still
   costs a call) and one page of pull requests (newest update first: nothing newer than the last run).
   Target <= 1.2. Measured on the default seed's repositories (Cloud `acme/web-app` has 120 branches: two
   pages) of both flavors.
2. Scale: a bulk-seeded Cloud workspace of N repositories (default 1,000, 3 branches, 1 tag, 20 pull
   requests each), every one subscribed (hook installed through the emulator's REST API), baseline
   reconciled, then reconciled again with nothing changed: seconds for the whole run, against the bare
   minimum HTTP reads of the same run (the same number of GETs, sequentially, no bookkeeping).

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

# The scale run reconciles 1,000 repositories, four calls each: four hours of one person's Cloud allowance a run,
# until reconciliation's cost follows what changed (issue 22, item 4).
SCALE_BEYOND_AN_HOUR = "measures reconcile speed; 4 calls a repository are hours of one person's allowance"
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


def minimum(state_repo: dict[str, Any], flavor: str) -> int:
    page = PAGE[flavor]
    return 1 + max(1, math.ceil(state_repo["branches"] / page)) + max(1, math.ceil(state_repo["tags"] / page)) + 1


def economy(stack) -> None:
    from bitbridge.reconcile.run import run

    print("1. API calls per repository per interval, nothing changed (minimum: hook + ref pages + 1 PR page)")
    for flavor, names in DEFAULT_REPOS.items():
        subscribe(flavor, user_id(stack, flavor), names, stack.api)
    for name in [n for names in DEFAULT_REPOS.values() for n in names]:
        run(repo=name)  # baseline
    for flavor, names in DEFAULT_REPOS.items():
        control(stack, flavor, "DELETE", "requests")
        for name in names:
            result = run(repo=name).results[0]
            assert result.status == "ok", result
        counts = control(stack, flavor, "GET", "requests")["flavors"][flavor]["repositories"]
        state = {
            r["full_name"]: r for r in control(stack, flavor, "GET", "state")["repositories"] if r["flavor"] == flavor
        }
        used = sum(counts.get(n, 0) for n in names)
        least = sum(minimum(state[n], flavor) for n in names)
        for n in names:
            print(f"   {flavor:<10} {n:<22} calls {counts.get(n, 0):>3}  minimum {minimum(state[n], flavor):>3}")
        print(f"   {flavor:<10} total calls {used} / minimum {least} = ratio {used / least:.2f} (target <= 1.2)")


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
    control(stack, "cloud", "DELETE", "requests")
    started = time.monotonic()
    report = run()
    seconds = time.monotonic() - started
    calls = control(stack, "cloud", "GET", "requests")["flavors"]["cloud"]
    bench_calls = sum(n for name, n in calls["repositories"].items() if name.startswith("bench/"))
    assert all(r.status == "ok" for r in report.results if r.repository.startswith("bench/"))
    # Baseline: the same reads, bare (one token, sequential GETs, nothing parsed or stored).
    from bitbridge import providers
    from bitbridge.budget import RECONCILE
    from bitbridge.calls import Caller

    caller = Caller(user_id(stack, "cloud"), providers.get_provider(PROVIDERS["cloud"]), priority=RECONCILE)
    api = caller.api
    started = time.monotonic()
    for name in names:
        for path in ("hooks", "refs/branches", "refs/tags", "pullrequests"):
            caller.fetch(f"{api}/repositories/{name}/{path}", {"pagelen": 50})
    bare = time.monotonic() - started
    print(
        f"   reconcile run: {seconds:.1f} s for {len(report.results)} subscriptions ({bench_calls} calls to the bench "
        f"repositories, {bench_calls / count:.2f} per repository); bare reads {bare:.1f} s; ratio {seconds / bare:.2f}"
    )


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
