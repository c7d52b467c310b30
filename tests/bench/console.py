"""Console benchmark on the local stack + emulator, in headless Chromium (prints figures, never fails).

For a signed-in person (alice, Bitbucket Cloud emulator) opening `/` with an empty cache:
- time until the repository list appears (the console's first meaningful paint: the first repository row
  in the DOM, observed in the page) and the first contentful paint;
- bytes downloaded for HTML + JS + CSS (uncompressed bodies) and every request made before the list appears.
Baseline, measured in the same run and the same way: the /login page (one small server-rendered HTML page).
A second baseline: the data alone, `GET /api/me` then `GET /api/repos` (first page) over plain HTTP.
Then the same console visit with a warm cache (hashed, immutable assets are not fetched again).
Budget (issue 11): under 100 KB, and no more than 3 requests before the repository list appears.

    .venv/bin/python tests/bench/console.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.browser import CHROMIUM_FLAGS, chromium  # noqa: E402
from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import SESSION, api_session  # noqa: E402

BUDGET_BYTES = 100 * 1024
BUDGET_REQUESTS = 3

# Runs before any page script: notes when the first repository row enters the DOM.
OBSERVE_LIST = """
new MutationObserver((_, observer) => {
  if (document.querySelector("li[data-repo]")) {
    window.__listAt = performance.now();
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""

MEASURE = """(ready) => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const at = ready === "list" ? window.__listAt : (fcp ? fcp.startTime : performance.now());
  const resources = performance.getEntriesByType("resource").filter((r) => r.startTime <= at);
  return {
    ready_ms: at,
    document_ms: nav.responseEnd,
    fcp_ms: fcp ? fcp.startTime : null,
    requests: [{name: nav.name, type: "document", size: nav.decodedBodySize, cached: false}].concat(
      resources.map((r) => ({name: r.name, type: r.initiatorType, size: r.decodedBodySize,
                             cached: r.transferSize === 0 && r.decodedBodySize > 0}))),
  };
}"""


def visit(context: Any, url: str, ready: str) -> dict[str, Any]:
    page = context.new_page()
    page.goto(url)
    if ready == "list":
        page.wait_for_function("window.__listAt !== undefined", timeout=30_000)
    else:
        page.wait_for_load_state("load")
        page.wait_for_timeout(100)  # let the paint timing entry land
    found = dict(page.evaluate(MEASURE, ready))
    page.close()
    return found


def summarise(label: str, runs: list[dict[str, Any]], ready_label: str) -> dict[str, Any]:
    ready = statistics.median(r["ready_ms"] for r in runs)
    fcps = [r["fcp_ms"] for r in runs if r["fcp_ms"] is not None]
    last = runs[-1]
    fetched = [q for q in last["requests"] if not q["cached"]]
    static = sum(q["size"] for q in last["requests"] if q["type"] in ("document", "script", "link", "css"))
    print(f"\n{label}")
    print(f"  {ready_label:<36} {ready:8.1f} ms (median of {len(runs)})")
    print(f"  {'HTML received (responseEnd)':<36} {statistics.median(r['document_ms'] for r in runs):8.1f} ms")
    if fcps:
        print(f"  {'first contentful paint':<36} {statistics.median(fcps):8.1f} ms")
    print(f"  {'HTML + JS + CSS (uncompressed)':<36} {static:8d} bytes")
    print(f"  {'requests before it':<36} {len(last['requests']):8d} ({len(fetched)} over the network)")
    for q in last["requests"]:
        where = "cache" if q["cached"] else "network"
        print(f"      {q['type']:<9} {q['size']:7d} B  {where:<7}  {q['name'].split('/', 3)[-1][:70]}")
    return {"ready": ready, "bytes": static, "requests": len(last["requests"]), "fetched": len(fetched)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        try:
            session = api_session(stack, "cloud", "alice")
            token = session.cookies.get(SESSION)
            data_ms = []
            for _ in range(args.runs + 1):
                started = time.perf_counter()
                session.get(f"{stack.api}/api/me", timeout=30).raise_for_status()
                session.get(f"{stack.api}/api/repos", params={"provider": "bitbucket-cloud", "limit": 50}, timeout=30)
                data_ms.append((time.perf_counter() - started) * 1000)
            data = statistics.median(data_ms[1:])  # the first call warms the containers
            cookie = {"name": SESSION, "value": token, "url": stack.api, "httpOnly": True, "secure": True}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)

                def fresh() -> Any:
                    context = browser.new_context()
                    context.add_cookies([cookie])
                    context.add_init_script(OBSERVE_LIST)
                    return context

                visit(fresh(), f"{stack.api}/", "list")  # warm the Lambda containers; not counted
                visit(fresh(), f"{stack.api}/login", "paint")
                login, cold, warm = [], [], []
                for _ in range(args.runs):
                    login.append(visit(fresh(), f"{stack.api}/login", "paint"))
                    context = fresh()
                    cold.append(visit(context, f"{stack.api}/", "list"))
                    warm.append(visit(context, f"{stack.api}/", "list"))  # same context: assets cached
                    context.close()
                browser.close()
        finally:
            stop_stack(stack)

    base = summarise("Baseline: /login (server-rendered sign-in page)", login, "first contentful paint")
    console = summarise("Console /, empty cache", cold, "repository list visible")
    repeat = summarise("Console /, warm cache (immutable hashed assets)", warm, "repository list visible")
    print(f"\nData alone: GET /api/me + GET /api/repos      {data:8.1f} ms (median of {args.runs})")
    print("\nRatios (console / baseline)")
    print(f"  time to repository list vs /login paint   {console['ready'] / base['ready']:6.2f}x")
    print(f"  time to repository list vs the data alone {console['ready'] / data:6.2f}x")
    print(f"  bytes                                     {console['bytes'] / max(1, base['bytes']):6.2f}x")
    print(f"  warm-cache visit vs empty-cache visit     {repeat['ready'] / console['ready']:6.2f}x time")
    ok_bytes = "within" if console["bytes"] < BUDGET_BYTES else "OVER"
    ok_requests = "within" if console["requests"] <= BUDGET_REQUESTS else "OVER"
    print(f"\nBudget: {console['bytes']} B < {BUDGET_BYTES} B: {ok_bytes}; ", end="")
    print(f"{console['requests']} requests <= {BUDGET_REQUESTS} before the list: {ok_requests}")


if __name__ == "__main__":
    main()
