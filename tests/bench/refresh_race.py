"""Refresh-race benchmark: N concurrent callers need a token that has just expired.

Boots the local stack (as `make dev` does), signs in through the emulator, then for each N
expires the stored token and fires N concurrent `GET /api/connections/{provider}` calls.
Prints the token-endpoint requests the emulator received (target: exactly 1 per race) and the
callers' median wait, against a baseline measured in the same run: the same N callers when no
refresh is needed.

    .venv/bin/python tests/bench/refresh_race.py [--sizes 10 25 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import (  # noqa: E402
    PROVIDERS,
    SESSION,
    expire_stored_token,
    limits_out_of_reach,
    session_cookie,
    sign_in,
    token_requests,
)


def race(stack, provider: str, session: str, callers: int) -> list[float]:
    def call(_: int) -> float:
        started = time.perf_counter()
        response = requests.get(f"{stack.api}/api/connections/{provider}", cookies={SESSION: session}, timeout=60)
        response.raise_for_status()
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=callers) as pool:
        return list(pool.map(call, range(callers)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        # Cloud under its limits (a race spends its /2.0/user allowance, 1,000 an hour). Data Center's bucket (60,
        # 5 a second) would make 50 callers at once wait for tokens: the race measures the refresh's wait.
        limits_out_of_reach(stack, "50 callers at once are more than a Data Center bucket serves", ("datacenter",))
        try:
            print(f"{'flavor':<11} {'N':>4} {'refreshes':>9} {'median wait ms':>15} {'baseline ms':>12} {'ratio':>6}")
            for flavor in ("cloud", "datacenter"):
                provider = PROVIDERS[flavor]
                session = session_cookie(stack, sign_in(stack, flavor))
                for n in args.sizes:
                    baseline = statistics.median(race(stack, provider, session, n))
                    expire_stored_token(stack, provider)
                    before = token_requests(stack, flavor)
                    waits = race(stack, provider, session, n)
                    refreshes = token_requests(stack, flavor) - before
                    median = statistics.median(waits)
                    print(
                        f"{flavor:<11} {n:>4} {refreshes:>9} {median * 1000:>15.1f} "
                        f"{baseline * 1000:>12.1f} {median / baseline:>6.2f}"
                    )
            print("target: exactly 1 refresh per race, whatever N")
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
