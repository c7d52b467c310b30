"""Changed files on events (issue 25): what enrichment costs, measured on the local stack with the emulator.

1. Bitbucket calls per push and per pull request event for enrichment, against the minimum for the same
   answers (target <= 1.1x): an update push - Cloud 1 (diffstat; the delivery lists the commits), Data
   Center 2 (changes, commits); a new branch - the same plus the default branch's name once per container;
   a pull request opened - 1; a push to an open pull request's source on Data Center - 3 (the push's 2 and
   the pull request's 1; Cloud sends no pull request event for it). Counted by the emulator per repository.
2. Delivery -> event latency (the receiver's `received_at` to the event on the bus) with enrichment vs
   without, same run, pushes interleaved: "without" is the same push to a repository whose hook has no
   owner, so the publisher asks Bitbucket nothing. Median and p99; target: median ratio <= 1.5.

    .venv/bin/python tests/bench/changed_files.py [--pushes 30]

Prints, never fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import RunningStack, start_stack, stop_stack  # noqa: E402
from tests.e2e.support import PROVIDERS, api_session, cli, control, user_id  # noqa: E402

OWNER = {"cloud": "acme", "datacenter": "PLAT"}
CALLS_TARGET, LATENCY_TARGET = 1.1, 1.5
MINIMUM = {  # Bitbucket calls the documented answers need, per event
    ("cloud", "push"): 1,
    ("datacenter", "push"): 2,
    ("cloud", "new branch"): 1,
    ("datacenter", "new branch"): 2,
    ("cloud", "pull request opened"): 1,
    ("datacenter", "pull request opened"): 1,
    ("datacenter", "push to a pull request's source"): 3,
}


class Repo:
    def __init__(self, stack: RunningStack, flavor: str, *, owned: bool) -> None:
        self.stack, self.flavor = stack, flavor
        self.slug = f"bench-{uuid.uuid4().hex[:8]}"
        self.full_name = f"{OWNER[flavor]}/{self.slug}"
        control(stack, flavor, "POST", f"{flavor}/repos", {"owner": OWNER[flavor], "slug": self.slug})
        alice = user_id(stack, api_session(stack, flavor, "alice"))
        args = ("hooks", "install", "--provider", PROVIDERS[flavor], "--repo", self.full_name, "--user", alice)
        done = cli(stack, *args, timeout=120)
        assert done.returncode == 0, done.stderr
        if not owned:  # the hook stays; the publisher finds no one to ask Bitbucket as
            ddb = stack.aws("dynamodb")
            table = next(t for t in ddb.list_tables()["TableNames"] if "SubscriptionsTable" in t)
            for item in ddb.scan(TableName=table)["Items"]:
                if item["repository_full_name"]["S"] == self.full_name:
                    ddb.update_item(TableName=table, Key={"pk": item["pk"]}, UpdateExpression="REMOVE owner_user_id")

    def change(self, path: str, body: Any = None, method: str = "POST") -> Any:
        return control(self.stack, self.flavor, method, f"{self.flavor}/repos/{self.full_name}/{path}", body)

    def calls(self) -> int:
        stats = control(self.stack, self.flavor, "GET", "requests")["flavors"].get(self.flavor, {})
        key = self.full_name.lower() if self.flavor == "cloud" else self.full_name
        return int(stats.get("repositories", {}).get(key, 0))


class Bus:
    """Events as they reach the bus, with the moment this process first saw each."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.index = stack.events(0)[1]
        self.seen: list[tuple[float, dict[str, Any]]] = []

    def wait(self, match: Any, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            for at, detail in self.seen:
                if match(detail):
                    return at, detail
            events, self.index = self.stack.events(self.index)
            now = time.time()
            self.seen.extend((now, e["detail"]) for e in events)
            if time.monotonic() > deadline:
                raise TimeoutError("no such event")
            time.sleep(0.01)


def _pushed(repo: Repo, branch: str, head: str) -> Any:
    return lambda d: (
        d.get("type") == "repository.push"
        and any(c["name"] == branch and c["new"] == head for c in d["ref_changes"])
        and d["repository"]["full_name"] == repo.full_name
    )


def _latency(seen_at: float, detail: dict[str, Any]) -> float:
    return seen_at - datetime.fromisoformat(detail["received_at"].replace("Z", "+00:00")).timestamp()


def calls_per_event(stack: RunningStack, flavor: str, bus: Bus, rounds: int) -> dict[str, tuple[int, int]]:
    """scenario -> (calls measured, events)."""
    repo = Repo(stack, flavor, owned=True)
    out: dict[str, list[int]] = {}

    def measure(name: str, act: Any, *matches: Any) -> Any:
        before = repo.calls()
        result = act()
        details = [bus.wait(lambda d, m=m: m(d, result))[1] for m in matches]
        time.sleep(0.5)  # nothing else asks about this repository
        sections = [c for d in details for c in (d["ref_changes"] or [d.get("pull_request") or {}])]
        assert not [c["changed_files_reason"] for c in sections if c["changed_files_reason"]], name
        out.setdefault(name, []).append(repo.calls() - before)
        return result

    def push_of(branch: str) -> Any:
        return lambda d, head: (
            d.get("type") == "repository.push"
            and any(c["name"] == branch and c["new"] == head for c in d["ref_changes"])
        )

    def pull_request(kind: str) -> Any:
        return lambda d, pr: d.get("type") == kind and d["pull_request"]["id"] == pr

    for n in range(rounds):
        topic = f"topic/{n}"
        files = {f"src/m{n}.py": f"{n}\n", "README.md": f"round {n}\n"}
        measure("push", partial(_push, repo, "main", files), push_of("main"))
        measure("new branch", partial(_push, repo, topic, {f"t{n}.txt": "t\n"}), push_of(topic))
        pr = measure("pull request opened", partial(_open, repo, topic), pull_request("pull_request.opened"))
        if flavor == "datacenter":  # Cloud sends no pull request event for a push to its source
            head = measure(
                "push to a pull request's source",
                partial(_push, repo, topic, {f"t{n}.txt": "t2\n"}),
                push_of(topic),
            )
            assert bus.wait(lambda d, pr=pr: pull_request("pull_request.updated")(d, pr))[1] and head
    return {name: (sum(v), len(v)) for name, v in out.items()}


def _push(repo: Repo, branch: str, files: dict[str, str]) -> str:
    return str(repo.change("push", {"branch": branch, "files": files, "message": f"to {branch}"})["head"])


def _open(repo: Repo, source: str) -> int:
    return int(repo.change("pullrequests", {"source": source, "destination": "main", "title": source})["id"])


def latencies(stack: RunningStack, flavor: str, bus: Bus, pushes: int) -> dict[str, list[float]]:
    repos = {"with": Repo(stack, flavor, owned=True), "without": Repo(stack, flavor, owned=False)}
    out: dict[str, list[float]] = {"with": [], "without": []}
    for n in range(pushes + 2):  # the first two of each warm the containers up and are dropped
        for label, repo in repos.items():
            body = {"branch": "main", "files": {f"f{n}/a.txt": "a\n", f"f{n}/b.txt": "b\n"}, "message": f"push {n}"}
            head = str(repo.change("push", body)["head"])
            seen_at, detail = bus.wait(_pushed(repo, "main", head))
            change = detail["ref_changes"][0]
            assert (change["changed_files_reason"] is None) == (label == "with"), change
            if n >= 2:
                out[label].append(_latency(seen_at, detail))
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=30, help="pushes per flavor and side for the latency")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each call-count scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), timeout=180)
        try:
            bus = Bus(stack)
            print("Bitbucket calls for enrichment, per event (measured / minimum):")
            total, least = 0, 0
            for flavor in ("cloud", "datacenter"):
                for name, (calls, events) in calls_per_event(stack, flavor, bus, args.rounds).items():
                    # A new branch also needs the default branch's name: once per publisher container.
                    minimum = MINIMUM[(flavor, name)] * events + (1 if name == "new branch" else 0)
                    total, least = total + calls, least + minimum
                    print(f"  {flavor:10} {name:32} {calls / events:5.2f} / {minimum / events:4.2f}  ({events} events)")
            ratio = total / least
            print(f"  all: {total} calls for a minimum of {least}: ratio {ratio:.2f} (target <= {CALLS_TARGET})")

            print("Delivery -> event latency, ms (with enrichment / without, same run, interleaved):")
            ratios = []
            for flavor in ("cloud", "datacenter"):
                found = latencies(stack, flavor, bus, args.pushes)
                with_, without = found["with"], found["without"]
                r = statistics.median(with_) / statistics.median(without)
                ratios.append(r)
                median_with, median_without = statistics.median(with_) * 1000, statistics.median(without) * 1000
                print(
                    f"  {flavor:10} median {median_with:6.0f} / {median_without:6.0f}"
                    f"   p99 {p99(with_) * 1000:6.0f} / {p99(without) * 1000:6.0f}   median ratio {r:.2f}"
                    f" (target <= {LATENCY_TARGET})"
                )
            print(f"calls ratio {ratio:.2f}; latency median ratios {', '.join(f'{r:.2f}' for r in ratios)}")
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
