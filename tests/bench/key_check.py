"""Key-id timing benchmark (issue 23, point 3): does a service request with an unknown key id cost the same
as one with a known key id and a wrong secret? If not, timing tells an attacker which key ids exist.

Boots the local stack (as `make dev` does), registers a service client and rotates it a few times (each
rotation adds a key that still works), then sends `GET /service/v1/connections/...` with a wrong secret:

  - warm: the same known id and the same unknown id again and again, taking turns (each answered from the
    function's key cache after its first request) - what an attacker probing a candidate id measures;
  - first sight: a key id never used before each time - a known one (a fresh rotated key) against a made-up
    one (each costs the table's reads once).

Prints both medians of each and their ratio (unknown / known); the target is within 20 % (0.8-1.2).

    .venv/bin/python tests/bench/key_check.py [--calls 300] [--keys 25]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.service_support import add_client  # noqa: E402
from tests.e2e.support import cli  # noqa: E402

WRONG = "W" * 43


def refused_ms(http: requests.Session, url: str, key_id: str) -> float:
    started = time.perf_counter()
    answer = http.get(url, headers={"Authorization": f"Bearer {key_id}.{WRONG}"}, timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 401, answer.text[:200]
    return elapsed


def row(label: str, known: list[float], unknown: list[float]) -> None:
    a, b = statistics.median(known), statistics.median(unknown)
    print(f"{label:<12} {a:>16.2f} {b:>16.2f} {b / a:>7.2f}   (n = {len(known)} + {len(unknown)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--keys", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        try:
            client_id, key = add_client(stack)
            fresh_known = []
            for _ in range(args.keys):
                done = cli(stack, "clients", "rotate", client_id, "--overlap", "1h")
                assert done.returncode == 0, done.stderr
                fresh_known.append(next(w for w in done.stdout.split() if w.startswith("bbk_")).split(".")[0])
            url = f"{stack.api}/service/v1/connections/bitbucket-cloud/bench-user"
            http = requests.Session()
            known_id, unknown_id = key.split(".")[0], "bbk_" + secrets.token_hex(8)
            for _ in range(20):  # warm up: the function's cold start, both ids in its cache
                refused_ms(http, url, known_id)
                refused_ms(http, url, unknown_id)
            warm_known, warm_unknown = [], []
            for _ in range(args.calls):
                warm_known.append(refused_ms(http, url, known_id))
                warm_unknown.append(refused_ms(http, url, unknown_id))
            first_known, first_unknown = [], []
            for fresh in fresh_known:
                first_known.append(refused_ms(http, url, fresh))
                first_unknown.append(refused_ms(http, url, "bbk_" + secrets.token_hex(8)))
            print(f"{'wrong secret':<12} {'known id ms':>16} {'unknown id ms':>16} {'ratio':>7}")
            row("warm", warm_known, warm_unknown)
            row("first sight", first_known, first_unknown)
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
