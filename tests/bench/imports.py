"""Import benchmarks on the local stack + emulator (prints figures, never fails).

1. Economy, for the seeded repositories of both flavors:
   - Bitbucket REST calls per imported repository, counted by the emulator (`/_emulator/requests`, OAuth token
     calls excluded), against the minimum for the same data with every list at its largest page (Cloud 100,
     pull requests 50 - bitbucket.org's cap, which the emulator enforces; Data Center 1000): one call for the
     repository, one per page, at least one page per list (an empty list still costs a call), issues only
     where the tracker is on, and one call per webhook step that reached Bitbucket (the POST that installs
     the hook, or the refused attempt that shows the user may not). Target <= 1.1.
   - AWS calls per imported repository, by service and operation, as the worker counted them (the job's
     `aws_calls`), against the minimum the design needs (`aws_minimum`, printed with its reasons).
   With review depth (`include`: comments, activity, commits), the same repositories again: Bitbucket calls
   against the minimum with every nested list at its largest page (at least one call per pull request per
   read: Cloud comments, activity, commits and issue comments; Data Center activities and commits), AWS calls
   against the design's minimum (one checkpoint write per nested page, one object per non-empty one, one read
   of each parent page).
2. Scale: a bulk-seeded N-repository Cloud workspace (20 pull requests each) imported through the API:
   repositories per minute, Bitbucket and AWS calls per repository against their minimums. The wait reads
   the states of exactly the jobs it started straight from the imports table (one BatchGetItem per 100 jobs,
   every --interval seconds), so it neither loads the API nor counts anyone else's jobs.

    .venv/bin/python tests/bench/imports.py [--repos 1000] [--prs 20] [--interval 5] [--skip-scale]
        [--skip-economy] [--skip-review]

`--repos 50` finishes in a couple of minutes; the default 1,000 takes about ten.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import (  # noqa: E402
    api_session,
    bench_seed,
    control,
    limits_out_of_reach,
    lines,
    snapshot,
    start_imports,
)

# The scale run imports 1,000 repositories: four hours of one person's Cloud allowance. It measures the import's
# speed and calls; tests/bench/budget.py plays the same import under Bitbucket's limits with the hour scaled.
SCALE_BEYOND_AN_HOUR = "measures import speed; 4,000+ calls are hours of one person's allowance (see bench/budget.py)"

DEFAULT_REPOS = {
    "cloud": ["acme/web-app", "acme/api-service", "acme/infra", "globex/mobile", "globex/docs"],
    "datacenter": ["PLAT/core", "PLAT/tools", "WEB/site", "WEB/cms", "~ALICE/dotfiles", "~BOB/scratch"],
}
TERMINAL = ("completed", "failed", "cancelled")
PAGE = {"cloud": {"branches": 100, "tags": 100, "pull_requests": 50, "issues": 100}, "datacenter": {}}

AWS_MINIMUM_WHY = """\
AWS minimum per repository (one invocation, as the design needs it):
  dynamodb:PutItem     +1             the rate-limit budget: one versioned write per lease of calls (a lease
                                      outlives a repository in a busy container, so it may cost less)
  dynamodb:UpdateItem  1 + pages + 2  take the job's lease (the write returns the job: no separate read),
    + observed pages + 1              one conditional write per page (cursor, counts, the part written),
                                      link the PROJECT record, complete the job; the repository's observed
                                      state (what the first reconciliation compares with): one write per
                                      page of branches, of tags and of pull requests with an open one,
                                      and one when the data steps are done
  dynamodb:GetItem     2 (+1 hook)    the provider record, the user's connection (its encrypted token),
                                      the subscription (does a hook exist already)
  dynamodb:PutItem     2 (hook)       the subscription recorded before the hook is created (a crash then
                                      finds it, never a second hook), then with Bitbucket's hook id
                                      (a refused hook: that record is deleted (DeleteItem), then the
                                      manual subscription is read and put (+1 GetItem, PutItem 2))
  kms:Decrypt          1              the token, once per invocation
  s3:PutObject         3 + non-empty pages   repository.json, one object per page with entities, people.jsonl,
                                      manifest.json
  events:PutEvents     2              import.started and import.completed (progress: at most every 30 s)
  (secretsmanager:GetSecretValue: the webhook master key, cached 5 min per container: ~0 per repository)"""


def pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


def entity_pages(flavor: str, repo: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """entity -> (Bitbucket pages at the largest page size, items)."""
    size = PAGE[flavor]
    counts = {"branches": repo["branches"], "tags": repo["tags"], "pull_requests": repo["pull_requests"]["total"]}
    if flavor == "cloud" and repo["issues"]:  # the tracker is on only where the seed has issues
        counts["issues"] = repo["issues"]
    return {e: (pages(n, size.get(e, 1000)), n) for e, n in counts.items()}


def bitbucket_minimum(flavor: str, repo: dict[str, Any]) -> int:
    return 1 + sum(p for p, _ in entity_pages(flavor, repo).values())


def aws_minimum(flavor: str, repo: dict[str, Any], webhook: dict[str, Any] | None) -> dict[str, int]:
    lists = entity_pages(flavor, repo)
    page_count = sum(p for p, _ in lists.values())
    nonempty = sum(p for p, n in lists.values() if n)
    observed = sum(p for e, (p, n) in lists.items() if n and e != "issues") + 1
    minimum = {
        "dynamodb:UpdateItem": 1 + page_count + 2 + observed,
        "dynamodb:PutItem": 1,  # the rate-limit budget's lease
        "dynamodb:GetItem": 2,
        "kms:Decrypt": 1,
        "s3:PutObject": 3 + nonempty,
        "events:PutEvents": 2,
    }
    status = (webhook or {}).get("status")
    if status == "installed":  # read the subscription, put it before the hook is created and with its id
        minimum["dynamodb:GetItem"] += 1
        minimum["dynamodb:PutItem"] += 2
    elif status == "manual_required":  # the refused attempt (put, then delete) and the manual subscription
        minimum["dynamodb:GetItem"] += 2
        minimum["dynamodb:PutItem"] += 2
        minimum["dynamodb:DeleteItem"] = 1
    return minimum


def hook_attempted(webhook: dict[str, Any] | None) -> bool:
    """Whether the webhook step reached Bitbucket (not when no public base URL was known)."""
    return (webhook or {}).get("status") in ("installed", "manual_required")


def rest_calls(stack: Any, flavor: str) -> int:
    """REST calls counted by the emulator for `flavor` (OAuth token calls excluded)."""
    stats = control(stack, flavor, "GET", "requests")
    endpoints = stats["flavors"].get(flavor, {}).get("endpoints", {})
    return sum(n for name, n in endpoints.items() if "oauth2" not in name)


def job_states(stack: Any, table: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs' items read straight from the imports table (test code: the key shape is the store's)."""
    dynamodb = stack.aws("dynamodb")
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(job_ids), 100):
        keys: list[dict[str, Any]] = [{"pk": {"S": f"JOB#{j}"}, "sk": {"S": "JOB"}} for j in job_ids[i : i + 100]]
        while keys:
            answer = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
            for item in answer["Responses"].get(table, []):
                found[item["job_id"]["S"]] = item
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
    return found


def aws_calls_of(item: dict[str, Any]) -> Counter[str]:
    raw = item.get("aws_calls", {}).get("S")
    return Counter(json.loads(raw) if raw else {})


def webhook_of(item: dict[str, Any]) -> dict[str, Any] | None:
    """The job item's webhook outcome (JobRecord.webhook is stored as `webhook_outcome`, JSON)."""
    raw = item.get("webhook_outcome", {}).get("S")
    return json.loads(raw) if raw else None


def ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def economy(stack: Any) -> None:
    print("\n== Calls per imported repository vs the minimum (seeded repositories) ==")
    print(AWS_MINIMUM_WHY)
    for flavor, names in DEFAULT_REPOS.items():
        session = api_session(stack, flavor, "alice")
        state = {r["full_name"]: r for r in control(stack, flavor, "GET", "state")["repositories"]}
        control(stack, flavor, "DELETE", "requests")
        jobs = start_imports(session, stack, flavor, names, reimport=True)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 180
        while len(done) < len(jobs) and time.monotonic() < deadline:
            for j in jobs:
                if j["id"] not in done:
                    body = session.get(f"{stack.api}/api/imports/{j['id']}", timeout=30).json()
                    if body["state"] in TERMINAL:
                        done[j["id"]] = body
            time.sleep(0.5)
        used = rest_calls(stack, flavor)
        bodies = list(done.values())
        bb_min = sum(bitbucket_minimum(flavor, state[b["repository"]["full_name"]]) for b in bodies)
        hooks = sum(1 for b in bodies if hook_attempted(b["webhook"]))
        print(f"\n{flavor}: {len(bodies)} repositories imported")
        print(
            f"  Bitbucket: {used} REST calls ({used / max(1, len(bodies)):.2f}/repository) with {hooks} webhook "
            f"steps; minimum {bb_min} + {hooks} = {bb_min + hooks}: ratio {used / max(1, bb_min + hooks):.3f} "
            "(target <= 1.1)"
        )
        total = mtotal = 0
        for b in sorted(bodies, key=lambda b: b["repository"]["full_name"]):
            repo = state[b["repository"]["full_name"]]
            got, need = b.get("aws_calls") or {}, aws_minimum(flavor, repo, b["webhook"])
            total, mtotal = total + sum(got.values()), mtotal + sum(need.values())
            shape = ", ".join(f"{e} {n}" for e, (_, n) in entity_pages(flavor, repo).items())
            print(
                f"  {b['repository']['full_name']:<18} AWS {sum(got.values()):>3} vs minimum {sum(need.values()):>3} "
                f"(ratio {sum(got.values()) / sum(need.values()):.2f})  [{shape}; {b['state']}]"
            )
            print(f"      measured: {ops(got)}")
            print(f"      minimum:  {ops(need)}")
        print(
            f"  AWS per repository: {total / max(1, len(bodies)):.1f} vs minimum {mtotal / max(1, len(bodies)):.1f}: "
            f"ratio {total / max(1, mtotal):.2f} (target <= 1.5)"
        )
        missing = [b["repository"]["full_name"] for b in bodies if b["state"] != "completed"]
        if missing or len(done) < len(jobs):
            print(f"  NOT COMPLETED: {missing or 'timed out'}")


EVERYTHING = ["comments", "activity", "commits"]
# Nested reads per parent: (entity whose lines count the read's items, page size); Data Center's /activities
# gives comments and activity in one read, counted by its activity lines (one per entry).
REVIEW_READS = {
    "cloud": {
        "pull_requests": [("pull_request_comments", 100), ("pull_request_activity", 50), ("pull_request_commits", 100)],
        "issues": [("issue_comments", 100)],
    },
    "datacenter": {"pull_requests": [("pull_request_activity", 1000), ("pull_request_commits", 1000)]},
}
NESTED = ("pull_request_comments", "pull_request_activity", "pull_request_reviews", "pull_request_commits")
PARENT_KEY = {"pull_requests": "pull_request_id", "issues": "issue_id"}


def review_minimum(flavor: str, files: dict[str, bytes]) -> tuple[int, int, int]:
    """(Bitbucket calls, parent pages, nested files) the review of one snapshot needs at the least."""
    calls = parents = 0
    for parent, reads in REVIEW_READS[flavor].items():
        ids = [item["id"] for item in lines(files, parent)]
        if ids:
            parents += len([k for k in files if k.startswith(f"{parent}/")])
        for entity, size in reads:
            per = Counter(line[PARENT_KEY[parent]] for line in lines(files, entity))
            calls += sum(pages(per[i], size) for i in ids)
    nested = len([k for k in files if k.split("/")[0] in (*NESTED, "issue_comments")])
    return calls, parents, nested


def review_economy(stack: Any) -> None:
    print("\n== Calls per imported repository with review depth vs the minimum (seeded repositories) ==")
    for flavor, names in DEFAULT_REPOS.items():
        session = api_session(stack, flavor, "alice")
        state = {r["full_name"]: r for r in control(stack, flavor, "GET", "state")["repositories"]}
        control(stack, flavor, "DELETE", "requests")
        # One repository per request: a kickoff's access checks then fit its timeout on a loaded machine.
        jobs = [
            j
            for name in names
            for j in start_imports(session, stack, flavor, [name], reimport=True, include=EVERYTHING)
        ]
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 300
        while len(done) < len(jobs) and time.monotonic() < deadline:
            for j in jobs:
                if j["id"] not in done:
                    body = session.get(f"{stack.api}/api/imports/{j['id']}", timeout=30).json()
                    if body["state"] in TERMINAL:
                        done[j["id"]] = body
            time.sleep(0.5)
        used = rest_calls(stack, flavor)
        bodies = list(done.values())
        bb_min = total = mtotal = review_calls = 0
        for b in sorted(bodies, key=lambda b: b["repository"]["full_name"]):
            repo = state[b["repository"]["full_name"]]
            files = snapshot(stack, b["snapshot"]["prefix"])
            calls, parents, nested = review_minimum(flavor, files)
            review_calls += calls
            bb_min += bitbucket_minimum(flavor, repo) + calls + (1 if hook_attempted(b["webhook"]) else 0)
            need = Counter(aws_minimum(flavor, repo, b["webhook"]))
            need.update({"dynamodb:UpdateItem": calls, "s3:PutObject": nested, "s3:GetObject": parents})
            got = b.get("aws_calls") or {}
            got = {k: v for k, v in got.items() if k != "secretsmanager:GetSecretValue"}  # cached per container
            total, mtotal = total + sum(got.values()), mtotal + sum(need.values())
            print(
                f"  {b['repository']['full_name']:<18} AWS {sum(got.values()):>3} vs minimum {sum(need.values()):>3} "
                f"(ratio {sum(got.values()) / max(1, sum(need.values())):.2f}); review reads {calls} "
                f"[{b['state']}]"
            )
            print(f"      measured: {ops(got)}")
            print(f"      minimum:  {ops(dict(need))}")
        print(f"\n{flavor} with review depth: {len(bodies)} repositories imported")
        print(
            f"  Bitbucket: {used} REST calls ({used / max(1, len(bodies)):.2f}/repository, {review_calls} of the "
            f"minimum for the review); minimum {bb_min}: ratio {used / max(1, bb_min):.3f} (target <= 1.1)"
        )
        print(
            f"  AWS per repository: {total / max(1, len(bodies)):.1f} vs minimum {mtotal / max(1, len(bodies)):.1f}: "
            f"ratio {total / max(1, mtotal):.2f} (target <= 1.5)"
        )
        missing = [b["repository"]["full_name"] for b in bodies if b["state"] != "completed"]
        if missing or len(done) < len(jobs):
            print(f"  NOT COMPLETED: {missing or 'timed out'}")


KICKOFF_BATCH = 20  # repositories per POST /api/imports: the most it takes (jobs.MAX_REPOSITORIES_PER_REQUEST)


def kickoff(session: requests.Session, stack: Any, names: list[str], took: list[float]) -> list[dict[str, Any]]:
    """POST /api/imports; after a 5xx (e.g. the kickoff's timeout) the same batch once more: safe, as jobs
    already made come back (`created: false`) and one whose message was never sent is sent then.
    Each request's seconds go to `took` (a retry as a negative number, so it can be counted)."""
    body = {"provider": "bitbucket-cloud", "repositories": names}
    for attempt in (1, 2):
        t0 = time.monotonic()
        response = session.post(f"{stack.api}/api/imports", json=body, timeout=120)
        took.append((time.monotonic() - t0) * (1 if attempt == 1 else -1))
        if response.status_code == 202:
            return list(response.json()["imports"])
        if response.status_code < 500 or attempt == 2:
            raise AssertionError(f"POST /api/imports answered {response.status_code}: {response.text[:300]}")
        print(f"  POST /api/imports answered {response.status_code}; sending the same {len(names)} again")
    raise AssertionError("unreachable")


def scale(stack: Any, repos: int, prs: int, interval: float) -> None:
    print(f"\n== {repos} repositories / {repos * prs} pull requests, imported through the API ==")
    t0 = time.monotonic()
    control(stack, "cloud", "POST", "seed", bench_seed(repos, pull_requests=prs, issues=0))
    print(f"seeded in {time.monotonic() - t0:.1f} s")
    session = api_session(stack, "cloud", "alice")
    table = str(requests.get(f"{stack.urls['console']}/env", timeout=5).json()["BITBRIDGE_IMPORTS_TABLE"])
    names: list[str] = []
    cursor = None
    t0 = time.monotonic()
    while True:
        params = {"provider": "bitbucket-cloud", "workspace": "bench", **({"cursor": cursor} if cursor else {})}
        body = session.get(f"{stack.api}/api/repos", params=params, timeout=120).json()
        names += [r["full_name"] for r in body["repositories"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    print(f"listed {len(names)} repositories in {time.monotonic() - t0:.1f} s")
    control(stack, "cloud", "DELETE", "requests")
    started = time.monotonic()
    job_ids: list[str] = []
    took: list[float] = []
    for i in range(0, len(names), KICKOFF_BATCH):
        job_ids += [j["id"] for j in kickoff(session, stack, names[i : i + KICKOFF_BATCH], took)]
    kicked = time.monotonic() - started
    assert len(set(job_ids)) == len(job_ids) == len(names), "one job per repository"
    polls = 0
    while True:
        items = job_states(stack, table, job_ids)
        polls += 1
        states = Counter(item["state"]["S"] for item in items.values())
        if sum(states[s] for s in TERMINAL) >= len(job_ids) or time.monotonic() - started > 3600:
            break
        time.sleep(interval)
    elapsed = time.monotonic() - started
    used = rest_calls(stack, "cloud")
    done = states["completed"]
    repo = {"branches": 3, "tags": 1, "pull_requests": {"total": prs}, "issues": 0}
    hooks = sum(1 for item in items.values() if hook_attempted(webhook_of(item)))
    bb_min = bitbucket_minimum("cloud", repo) * len(job_ids) + hooks
    aws = Counter[str]()
    need = Counter[str]()
    for item in items.values():
        aws.update(aws_calls_of(item))
        need.update(aws_minimum("cloud", repo, webhook_of(item)))
    n = max(1, len(job_ids))
    print(f"kickoff of {len(job_ids)} in {kicked:.1f} s; all {len(job_ids)} jobs terminal after {elapsed:.1f} s")
    firsts = [t for t in took if t >= 0]
    print(
        f"  POST /api/imports of {KICKOFF_BATCH}: {len(took)} requests, {len(took) - len(firsts)} of them retries "
        f"after a 5xx; seconds each: mean {sum(map(abs, took)) / len(took):.1f}, slowest {max(map(abs, took)):.1f} "
        "(the kickoff's Timeout is 10 s)"
    )
    print(f"  states: {dict(states)} (read from the table {polls} times, every {interval:g} s)")
    print(f"  repositories per minute: {done / (elapsed / 60):.0f}")
    print(
        f"  Bitbucket calls: {used} ({used / n:.2f}/repository, hooks included), minimum {bb_min} "
        f"({bb_min / n:.2f}: 1 repository + 3 lists, + 1 for each of the {hooks} webhook steps): "
        f"ratio {used / max(1, bb_min):.3f} (target <= 1.1)"
    )
    print(
        f"  AWS calls: {sum(aws.values()) / n:.2f}/repository, minimum {sum(need.values()) / n:.2f}: "
        f"ratio {sum(aws.values()) / max(1, sum(need.values())):.2f} (target <= 1.5)"
    )
    print(f"      measured per repository: {', '.join(f'{k}={v / n:.2f}' for k, v in sorted(aws.items()))}")
    print(f"      minimum per repository:  {', '.join(f'{k}={v / n:.2f}' for k, v in sorted(need.items()))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000, help="repositories in the scale run (50: ~2 min)")
    parser.add_argument("--prs", type=int, default=20, help="pull requests per repository")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reads of the jobs' states")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-economy", action="store_true", help="no economy run without review depth")
    parser.add_argument("--skip-review", action="store_true", help="no economy run with review depth")
    args = parser.parse_args()
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bitbridge-bench-")))
    try:
        if not args.skip_economy:
            economy(stack)  # under Bitbucket's limits, as deployed: the budget's calls are counted too
        if not args.skip_review:
            review_economy(stack)
        if not args.skip_scale:
            limits_out_of_reach(stack, SCALE_BEYOND_AN_HOUR)
            scale(stack, args.repos, args.prs, args.interval)
    finally:
        stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
