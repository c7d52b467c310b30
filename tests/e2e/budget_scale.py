"""The budget's scale case, shared by the end-to-end test (`test_budget_scale.py`, scaled to fit `make test`)
and the benchmark (`tests/bench/budget.py`, the issue's 1,000 repositories): one person's bulk-seeded Cloud
repositories imported under Bitbucket's limits with the window scaled, while a product proxies calls for the
same person in the same resource class. Measured from the outside: the emulator's own counters (429s served,
calls in its window), the jobs' states in the imports table, the proxy's `X-Bitbridge-Budget-Wait`."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from bitbridge.client import Client
from tests.e2e.service_support import add_client, connect
from tests.e2e.support import PROVIDERS, api_session, bench_seed, cli, control

CLASSES = ("repositories", "webhooks", "other")
KICKOFF_BATCH = 10  # repositories per POST /api/imports (20 at most): short requests, far from its time limit
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Scale:
    repos: int
    window: float
    limit: int
    wall: float = 0.0
    kickoff_seconds: float = 0.0
    kickoff_refusals: int = 0  # bitbridge's own 429s to the kickoff (retried after retry_after)
    kickoff_retries: int = 0  # 5xx (its time limit on a loaded machine), sent again
    states: Counter[str] = field(default_factory=Counter)
    rejected: dict[str, int] = field(default_factory=dict)  # 429s the emulator served to the person, by class
    admitted: dict[str, int] = field(default_factory=dict)
    proxied_waits: list[float] = field(default_factory=list)  # seconds each proxied call waited for budget
    proxied_seconds: list[float] = field(default_factory=list)  # each proxied call end to end
    proxied_refused: int = 0
    # (seconds since the kickoff, calls in the emulator's window / limit, jobs waiting for budget) every second
    samples: list[tuple[float, float, int]] = field(default_factory=list)

    def share_used_while_waiting(self) -> float | None:
        """The mean share of the allowance (repositories, the emulator's own count) in use at the moments
        some import was waiting for the budget; None when nothing ever waited."""
        shares = [share for _, share, waiting in self.samples if waiting]
        return sum(shares) / len(shares) if shares else None

    def seconds_waited(self) -> float:
        return float(sum(1 for _, _, waiting in self.samples if waiting))

    def p99_proxied_wait(self) -> float:
        ordered = sorted(self.proxied_waits)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0

    def lines(self) -> list[str]:
        share = self.share_used_while_waiting()
        waits = sorted(self.proxied_waits)
        took = sorted(self.proxied_seconds)
        return [
            f"{self.repos} Cloud repositories of one person, limits {self.limit} per {self.window:g} s window "
            f"per class ({', '.join(CLASSES)}), an hour played in {self.window:g} s",
            f"  wall time {self.wall:.0f} s ({self.wall / self.window:.1f} windows); "
            f"kickoff {self.kickoff_seconds:.0f} s "
            f"({self.kickoff_refusals} of its requests told to come back by bitbridge's 429, "
            f"{self.kickoff_retries} sent again after a 5xx)",
            f"  jobs: {dict(self.states)}",
            f"  429s served by the emulator: {self.rejected} (calls admitted: {self.admitted})",
            "  allowance used while work waited for budget: "
            + (f"{share:.1%} (mean over {self.seconds_waited():.0f} s of waiting)" if share is not None else "never"),
            "  timeline (s: share of the allowance in use, jobs waiting for budget): "
            + " ".join(f"{t:.0f}:{share:.0%}/{waiting}" for t, share, waiting in self.samples[::5]),
            f"  proxied calls: {len(waits)} served, {self.proxied_refused} refused; wait for budget p50 "
            f"{waits[len(waits) // 2] if waits else 0:.3f} s, p99 {self.p99_proxied_wait():.3f} s, max "
            f"{max(waits, default=0):.3f} s; end to end p50 {took[len(took) // 2] if took else 0:.2f} s, "
            f"max {max(took, default=0):.2f} s",
        ]


def set_limits(stack: Any, window: float, limit: int) -> None:
    """Bitbucket's limits on the emulator and the same in bitbridge's provider settings."""
    control(
        stack,
        "cloud",
        "POST",
        "config",
        {"rate_limit_window_seconds": window, "cloud_rate_limits": dict.fromkeys(CLASSES, limit)},
    )
    classes = [arg for klass in CLASSES for arg in ("--class", f"{klass}={limit}")]
    done = cli(stack, "providers", "set-limits", PROVIDERS["cloud"], "--window-seconds", str(window), *classes)
    assert done.returncode == 0, done.stderr


def _job_states(stack: Any, table: str, job_ids: list[str]) -> Counter[str]:
    """The jobs' states read straight from the imports table (the key shape is the store's)."""
    dynamodb = stack.aws("dynamodb")
    states: Counter[str] = Counter()
    for i in range(0, len(job_ids), 100):
        keys: list[dict[str, Any]] = [{"pk": {"S": f"JOB#{j}"}, "sk": {"S": "JOB"}} for j in job_ids[i : i + 100]]
        while keys:
            answer = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
            states.update(item["state"]["S"] for item in answer["Responses"].get(table, []))
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
    return states


def _kickoff(session: requests.Session, stack: Any, names: list[str], result: Scale) -> list[str]:
    """POST /api/imports until accepted: after bitbridge's 429, once `retry_after` has passed; after a 5xx
    (the kickoff's time limit on a loaded machine) at once - safe, jobs already made come back."""
    body = {"provider": PROVIDERS["cloud"], "repositories": names}
    for _ in range(100):
        answer = session.post(f"{stack.api}/api/imports", json=body, timeout=60)
        if answer.status_code == 202:
            return [j["id"] for j in answer.json()["imports"]]
        if answer.status_code >= 500:
            result.kickoff_retries += 1
            continue
        assert answer.status_code == 429, answer.text[:300]
        result.kickoff_refusals += 1
        time.sleep(answer.json()["error"]["retry_after"])
    raise AssertionError("the kickoff never found room")


def run(stack: Any, repos: int, window: float, limit: int, proxy_every: float, timeout: float) -> Scale:
    """Seed, set the limits, import every repository (one request at a time, as the console sends them) while
    a product proxies a call for the same person every `proxy_every` seconds from the first accepted import
    until the last is done; measure."""
    result = Scale(repos, window, limit)
    control(stack, "cloud", "POST", "seed", bench_seed(repos, pull_requests=2, issues=0))
    set_limits(stack, window, limit)
    session = api_session(stack, "cloud", "alice")
    product = Client(stack.api, add_client(stack)[1], timeout=60)
    connect(stack, product, "cloud", "alice-at-scale", "alice")
    table = str(requests.get(f"{stack.urls['console']}/env", timeout=5).json()["BITBRIDGE_IMPORTS_TABLE"])
    control(stack, "cloud", "DELETE", "rate-limits")  # count from here: the import and the proxied calls
    names = [f"bench/repo-{n:04d}" for n in range(1, repos + 1)]
    job_ids: list[str] = []
    finished = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not finished.is_set():
            rows = control(stack, "cloud", "GET", "rate-limits?flavor=cloud&user=alice&class=repositories")["limits"]
            share = rows[0]["used"] / rows[0]["limit"] if rows else 0.0
            waiting = _job_states(stack, table, list(job_ids))["waiting_budget"] if job_ids else 0
            result.samples.append((time.monotonic() - started, share, waiting))
            finished.wait(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))

    def proxy() -> None:
        for n in range(1_000_000):
            if finished.wait(proxy_every):
                return
            t0 = time.monotonic()
            try:
                answer = product.proxy.get(PROVIDERS["cloud"], "alice-at-scale", f"repositories/{names[n % repos]}")
            except Exception:  # bitbridge's 429 (no room within a few seconds): counted, never expected
                result.proxied_refused += 1
                continue
            assert answer.status_code == 200, answer.content[:300]
            headers = {k.lower(): v for k, v in answer.headers.items()}
            result.proxied_waits.append(float(headers["x-bitbridge-budget-wait"]))
            result.proxied_seconds.append(time.monotonic() - t0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proxier = threading.Thread(target=proxy, daemon=True)
    for i in range(0, repos, KICKOFF_BATCH):
        job_ids += _kickoff(session, stack, names[i : i + KICKOFF_BATCH], result)
        if not proxier.is_alive():
            proxier.start()  # the person's product calls as soon as imports run
    result.kickoff_seconds = time.monotonic() - started
    while time.monotonic() - started < timeout:
        states = _job_states(stack, table, job_ids)
        if sum(states[s] for s in TERMINAL) >= len(job_ids):
            break
        time.sleep(2)
    result.wall = time.monotonic() - started
    finished.set()
    sampler.join(timeout=10)
    proxier.join(timeout=60)
    result.states = _job_states(stack, table, job_ids)
    for row in control(stack, "cloud", "GET", "rate-limits?flavor=cloud&user=alice")["limits"]:
        result.rejected[row["class"]] = int(row["rejected"])
        result.admitted[row["class"]] = int(row["admitted"])
    return result
