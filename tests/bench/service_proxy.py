"""Service API benchmark: proxy overhead per call, and token-vend latency warm vs. refresh.

Boots the local stack (as `make dev` does), registers a service client, connects an end user through a
connect session, then measures in the same run:
  - GET a repository through /service/v1/proxy/... (warm) vs. the same GET straight to the emulator with
    the same token (the baseline); prints both medians and the ratio (target <= 1.5x warm);
  - POST .../token when the stored token is fresh (warm) vs. when it is near expiry (one refresh each).

    .venv/bin/python tests/bench/service_proxy.py [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bitbridge.client import Client  # noqa: E402
from bitbridge.service.cache import CACHE_SECONDS as TOKEN_CACHE_SECONDS  # noqa: E402
from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.service_support import (  # noqa: E402
    PROVIDERS,
    add_client,
    age_connection,
    connect,
    new_bitbucket_user,
)
from tests.e2e.support import emulator, limits_out_of_reach  # noqa: E402

PATHS = {"cloud": "repositories/acme/infra", "datacenter": "projects/PLAT/repos/core"}
DIRECT = {"cloud": "2.0", "datacenter": "rest/api/1.0"}


def timed(call, n: int) -> float:
    return interleaved([call], n)[0]


def interleaved(calls, n: int) -> list[float]:
    """Median ms of each call, taking turns, so a busy machine slows every column alike."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for call, kept in zip(calls, samples, strict=True):
            started = time.perf_counter()
            call()
            kept.append((time.perf_counter() - started) * 1000)
    return [statistics.median(kept) for kept in samples]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--refreshes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        # Cloud under its limits (the run spends ~400 of the end user's 1,000 an hour, direct calls included).
        # Data Center's bucket (60, 5 a second) would space 400 calls 0.2 s apart: the bench measures latency.
        limits_out_of_reach(stack, "hundreds of calls in seconds would wait for Data Center's bucket", ("datacenter",))
        try:
            client_id, key = add_client(stack)
            bb = Client(stack.api, key)
            direct_http = requests.Session()
            header = f"{'flavor':<11} {'proxy ms':>9} {'direct ms':>10} {'ratio':>6} {'api hop ms':>11} {'floor':>6}"
            print(header + f"   {'token warm ms':>13} {'refresh ms':>11}")
            for flavor in ("cloud", "datacenter"):
                provider, end_user = PROVIDERS[flavor], f"bench-{flavor}"
                connect(stack, bb, flavor, end_user, new_bitbucket_user(stack))
                token = bb.token(provider, end_user).access_token
                url = f"{emulator(stack, flavor)}/{DIRECT[flavor]}/{PATHS[flavor]}"
                headers = {"Authorization": f"Bearer {token}"}

                def direct(url=url, headers=headers) -> None:
                    direct_http.get(url, headers=headers, timeout=10).raise_for_status()

                def proxied(provider=provider, end_user=end_user, flavor=flavor) -> None:
                    assert bb.proxy.get(provider, end_user, PATHS[flavor]).status_code == 200

                def hop(provider=provider, end_user=end_user, flavor=flavor) -> None:
                    # No key: refused by the function before any AWS or Bitbucket call - the HTTP hop alone.
                    url = f"{stack.api}/service/v1/proxy/{provider}/{end_user}/{PATHS[flavor]}"
                    assert direct_http.get(url, timeout=10).status_code == 401

                interleaved([direct, proxied, hop], 10)
                direct_ms, proxy_ms, hop_ms = interleaved([direct, proxied, hop], args.calls)
                warm_ms = timed(lambda p=provider, e=end_user: bb.token(p, e), args.calls // 4)

                samples: list[float] = []
                for _ in range(args.refreshes):
                    age_connection(stack, client_id, end_user, provider, seconds_left=60)
                    time.sleep(TOKEN_CACHE_SECONDS)  # the function's vended-token cache (service.cache)
                    started = time.perf_counter()
                    bb.token(provider, end_user)
                    samples.append((time.perf_counter() - started) * 1000)
                refresh_ms = statistics.median(samples)
                print(
                    f"{flavor:<11} {proxy_ms:>9.1f} {direct_ms:>10.1f} {proxy_ms / direct_ms:>5.2f}x {hop_ms:>11.1f}"
                    f" {(hop_ms + direct_ms) / direct_ms:>5.2f}x   {warm_ms:>13.1f} {refresh_ms:>11.1f}"
                )
            print(
                "\nproxy overhead target: <= 1.5x the direct call (warm). A proxied call is two HTTP exchanges in a\n"
                "row (client -> API -> Bitbucket) where the direct call is one, so its floor is the direct call\n"
                "plus the API hop alone ('api hop': a request the function refuses before any AWS or Bitbucket\n"
                "call); 'floor' is that sum over the direct call. Against the emulator, which answers in about a\n"
                "millisecond, the floor is above 1.5x; against Bitbucket's own latency it is not. Warm, the key,\n"
                "end-user link, provider and token come from the function's caches (service.cache), and the audit\n"
                "record is a log line (the log subscription stores it), so proxy - floor is the function's own work."
            )
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
