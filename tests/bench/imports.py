"""Import benchmarks on the local stack + emulator (prints figures, never fails).

1. Economy: Bitbucket API calls per imported repository, counted by the emulator (`/_emulator/requests`,
   REST only: OAuth token calls excluded), against the minimum possible for the same data with every list
   at its largest page: Cloud 100 (pull requests 50, bitbucket.org's cap; the emulator allows 100, so
   that ratio is printed too), Data Center 1000; one call for the repository, one per page, at least one
   page per list (an empty list still costs a call), issues only where the tracker is on, and one call per
   webhook installed. Printed for the repository data alone and with the webhooks. Target <= 1.1.
2. Scale: a bulk-seeded 1,000-repository / 20,000-pull-request Cloud workspace imported through the API:
   repositories per minute and API calls used.

    .venv/bin/python tests/bench/imports.py [--repos 1000] [--prs 20] [--skip-scale]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import api_session, control, start_imports  # noqa: E402

FLAVOR_KEY = {"cloud": "cloud", "datacenter": "datacenter"}
DEFAULT_REPOS = {
    "cloud": ["acme/web-app", "acme/api-service", "acme/infra", "globex/mobile", "globex/docs"],
    "datacenter": ["PLAT/core", "PLAT/tools", "WEB/site", "WEB/cms", "~ALICE/dotfiles", "~BOB/scratch"],
}


def pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


def minimum_calls(flavor: str, repo: dict[str, Any], pr_page: int) -> int:
    if flavor == "cloud":
        issues = math.ceil(repo["issues"] / 100) if repo["issues"] else 0
        lists = pages(repo["branches"], 100) + pages(repo["tags"], 100) + issues
        return 1 + lists + pages(repo["pull_requests"]["total"], pr_page)
    lists = pages(repo["branches"], 1000) + pages(repo["tags"], 1000)
    return 1 + lists + pages(repo["pull_requests"]["total"], 1000)


def rest_calls(stack: Any, flavor: str, hooks: bool | None = None) -> int:
    """REST calls counted by the emulator (OAuth excluded); `hooks` True/False: only / without hook calls."""
    stats = control(stack, flavor, "GET", "requests")
    endpoints = stats["flavors"].get(FLAVOR_KEY[flavor], {}).get("endpoints", {})
    total = 0
    for name, n in endpoints.items():
        is_hook = "/hooks" in name or "/webhooks" in name
        if "oauth2" not in name and (hooks is None or hooks == is_hook):
            total += n
    return total


def wait_all(session: requests.Session, stack: Any, expected: int, timeout: float) -> dict[str, int]:
    """Poll GET /api/imports until `expected` jobs are terminal; returns the count per state."""
    deadline = time.monotonic() + timeout
    while True:
        states: dict[str, int] = {}
        cursor = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            body = session.get(f"{stack.api}/api/imports", params=params, timeout=60).json()
            for job in body["imports"]:
                states[job["state"]] = states.get(job["state"], 0) + 1
            cursor = body["next_cursor"]
            if not cursor:
                break
        if sum(states.get(s, 0) for s in ("completed", "failed", "cancelled")) >= expected:
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(1.0)


def economy(stack: Any) -> None:
    print("\n== API calls per imported repository (emulator-counted) vs the minimum ==")
    for flavor, names in DEFAULT_REPOS.items():
        session = api_session(stack, flavor, "alice")
        state = {r["full_name"]: r for r in control(stack, flavor, "GET", "state")["repositories"]}
        control(stack, flavor, "DELETE", "requests")
        jobs = start_imports(session, stack, flavor, names, reimport=True)
        done = {}
        deadline = time.monotonic() + 120
        while len(done) < len(jobs) and time.monotonic() < deadline:
            for j in jobs:
                body = session.get(f"{stack.api}/api/imports/{j['id']}", timeout=30).json()
                if body["state"] in ("completed", "failed", "cancelled"):
                    done[j["id"]] = body
            time.sleep(0.3)
        used = rest_calls(stack, flavor)
        data = rest_calls(stack, flavor, hooks=False)
        after = {r["full_name"]: r for r in control(stack, flavor, "GET", "state")["repositories"]}
        installed = sum(1 for n in names if after[n]["hooks"])  # one POST each is the minimum for a hook
        real_min = sum(minimum_calls(flavor, state[n], 50) for n in names)
        emu_min = sum(minimum_calls(flavor, state[n], 100) for n in names)
        failed = [b["repository"]["full_name"] for b in done.values() if b["state"] != "completed"]
        print(f"{flavor:<11} repositories={len(names)} calls={used} ({used / len(names):.2f}/repository)")
        pad = " " * 12
        cap = "PR pagelen 50, bitbucket.org's cap" if flavor == "cloud" else "limit 1000"
        print(f"{pad}repository data: {data} calls, minimum {real_min} ({cap}): ratio {data / real_min:.3f}")
        if flavor == "cloud":
            print(f"{pad}  (minimum at the emulator's PR pagelen 100: {emu_min}: ratio {data / emu_min:.3f})")
        print(
            f"{pad}with webhooks: {used} calls for {installed} hooks installed, minimum {real_min + installed}: "
            f"ratio {used / (real_min + installed):.3f}  (target <= 1.1)"
        )
        if failed or len(done) < len(jobs):
            print(f"            NOT COMPLETED: {failed or 'timed out'}")


def scale(stack: Any, repos: int, prs: int) -> None:
    print(f"\n== {repos} repositories / {repos * prs} pull requests, imported through the API ==")
    spec = {
        "cloud": {
            "workspaces": [
                {
                    "slug": "bench",
                    "name": "Bench",
                    "members": {"alice": "owner"},
                    "repositories": [
                        {"slug": "repo", "count": repos, "branches": 3, "tags": 1, "pull_requests": prs, "issues": 0}
                    ],
                }
            ]
        }
    }
    t0 = time.monotonic()
    control(stack, "cloud", "POST", "seed", spec)
    print(f"seeded in {time.monotonic() - t0:.1f} s")
    session = api_session(stack, "cloud", "alice")
    control(stack, "cloud", "DELETE", "requests")
    t0 = time.monotonic()
    names: list[str] = []
    cursor = None
    while True:
        params = {"provider": "bitbucket-cloud", "workspace": "bench", **({"cursor": cursor} if cursor else {})}
        body = session.get(f"{stack.api}/api/repos", params=params, timeout=120).json()
        names += [r["full_name"] for r in body["repositories"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    listing_calls = rest_calls(stack, "cloud")
    print(f"listed {len(names)} repositories in {time.monotonic() - t0:.1f} s with {listing_calls} API calls")
    control(stack, "cloud", "DELETE", "requests")
    started = time.monotonic()
    for i in range(0, len(names), 100):
        start_imports(session, stack, "cloud", names[i : i + 100])
    kicked = time.monotonic() - started
    states = wait_all(session, stack, len(names), timeout=3600)
    elapsed = time.monotonic() - started
    used = rest_calls(stack, "cloud")
    done = states.get("completed", 0)
    print(f"kickoff of {len(names)} in {kicked:.1f} s; all terminal after {elapsed:.1f} s: {states}")
    print(f"repositories per minute: {done / (elapsed / 60):.0f}")
    print(f"API calls used: {used} ({used / max(1, done):.2f} per repository; minimum {4 * len(names)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--prs", type=int, default=20, help="pull requests per repository")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bitbridge-bench-")))
    try:
        economy(stack)
        if not args.skip_scale:
            scale(stack, args.repos, args.prs)
    finally:
        stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
