"""Refresh-race benchmark: N concurrent callers need a token that has just expired, or is due for a refresh.

Boots the local stack (as `make dev` does), signs in through the emulator, then for each N
expires the stored token and fires N concurrent `GET /api/connections/{provider}` calls.
Prints the token-endpoint requests the emulator received (target: exactly 1 per race) and the
callers' median wait, against a baseline measured in the same run: the same N callers when no
refresh is needed.

Then the refresh windows (issue 24): Data Center tokens of each `--lifetimes`, a service end user whose
token is due for a refresh (still keeping the vend's promise), and bursts of N on the token vend, the proxy
and the console's connection check. Prints refreshes per burst (target: 1), the callers' median and
slowest wait, and the median of the same burst when no refresh is due (the baseline).

    .venv/bin/python tests/bench/refresh_race.py [--sizes 10 25 50] [--lifetimes 300 240 60] [--windows 10 25]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bitbridge import tokens  # noqa: E402
from bitbridge.client import Client  # noqa: E402
from bitbridge.service.api import TOKEN_MIN_VALIDITY_SECONDS  # noqa: E402
from bitbridge.service.cache import CACHE_SECONDS  # noqa: E402
from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.service_support import add_client, age_connection, connect, new_bitbucket_user  # noqa: E402
from tests.e2e.support import (  # noqa: E402
    PROVIDERS,
    SESSION,
    control,
    expire_stored_token,
    limits_out_of_reach,
    session_cookie,
    sign_in,
    token_requests,
    user_id,
)


def race(stack, provider: str, session: str, callers: int) -> list[float]:
    def call(_: int) -> float:
        started = time.perf_counter()
        response = requests.get(f"{stack.api}/api/connections/{provider}", cookies={SESSION: session}, timeout=60)
        response.raise_for_status()
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=callers) as pool:
        return list(pool.map(call, range(callers)))


def burst(call, callers: int) -> list[float]:
    def timed(_: int) -> float:
        started = time.perf_counter()
        response = call()
        assert response.status_code == 200, response.text[:300]
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=callers) as pool:
        return list(pool.map(timed, range(callers)))


def windows(stack, lifetimes: list[int], sizes: list[int]) -> None:
    """Bursts when the token is due for a refresh, per Data Center token lifetime and route."""
    provider = PROVIDERS["datacenter"]
    client_id, key = add_client(stack)
    headers = {"Authorization": f"Bearer {key}"}
    columns = ("lifetime", "route", "N", "refreshes", "median ms", "max ms", "baseline ms", "ratio")
    print("\n{:>8} {:<8} {:>4} {:>9} {:>10} {:>8} {:>12} {:>6}".format(*columns))
    for lifetime in lifetimes:
        control(stack, "datacenter", "POST", "config", {"dc_access_token_lifetime": lifetime})
        person = new_bitbucket_user(stack)
        end_user = f"eu-{person}"
        connect(stack, Client(stack.api, key), "datacenter", end_user, person)
        session = requests.Session()
        session.cookies.set(SESSION, session_cookie(stack, sign_in(stack, "datacenter", person)))
        who = user_id(stack, session)
        service = f"{stack.api}/service/v1"
        routes = {
            "vend": (
                TOKEN_MIN_VALIDITY_SECONDS,
                partial(requests.post, f"{service}/connections/{provider}/{end_user}/token", headers=headers),
            ),
            "proxy": (
                TOKEN_MIN_VALIDITY_SECONDS,
                partial(
                    requests.get, f"{service}/proxy/{provider}/{end_user}/projects/PLAT/repos/core", headers=headers
                ),
            ),
            "console": (tokens.STILL_GOOD_SECONDS, partial(session.get, f"{stack.api}/api/connections/{provider}")),
        }
        for route, (asked, call) in routes.items():
            due = int(tokens.term(asked, lifetime).refresh_at) - 1
            for n in sizes:
                time.sleep(CACHE_SECONDS)  # past the service function's token cache
                baseline = statistics.median(burst(call, n))  # a fresh token: nothing due
                if route == "console":
                    _age_user(stack, who, due)
                else:
                    age_connection(stack, client_id, end_user, provider, seconds_left=due)
                time.sleep(CACHE_SECONDS)
                before = token_requests(stack, "datacenter")
                waits = burst(call, n)
                time.sleep(2)  # the handed-over refresh lands
                refreshes = token_requests(stack, "datacenter") - before
                median = statistics.median(waits)
                print(
                    f"{lifetime:>8} {route:<8} {n:>4} {refreshes:>9} {median * 1000:>10.0f} {max(waits) * 1000:>8.0f} "
                    f"{baseline * 1000:>12.0f} {median / baseline:>6.2f}"
                )
    control(stack, "datacenter", "POST", "config", {"dc_access_token_lifetime": 3600})
    print("target: exactly 1 refresh per burst, callers answered as fast as when nothing is due")


def _age_user(stack, who: str, seconds_left: int) -> None:
    stack.aws("dynamodb").update_item(
        TableName="bitbridge-local-AccountsTable",
        Key={"pk": {"S": f"USER#{who}"}, "sk": {"S": f"CONN#{PROVIDERS['datacenter']}"}},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": {"N": str(int(time.time()) + seconds_left)}},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--lifetimes", type=int, nargs="+", default=[300, 240, 60])
    parser.add_argument("--windows", type=int, nargs="+", default=[10, 25], help="burst sizes in the windows part")
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
            windows(stack, args.lifetimes, args.windows)
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
