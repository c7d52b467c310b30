"""End-to-end helpers, in one place: signing in through the emulator, the bitbridge command line,
the emulator's control API, and reading imports and snapshots back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from bitbridge import edge
from tests.conftest import REPO_ROOT
from tests.e2e.browser import Browser, consent

PROVIDERS = {"cloud": "bitbucket-cloud", "datacenter": "acme-datacenter"}
SESSION = edge.SESSION_COOKIE


# ------------------------------------------------------------------------------------------------ sign-in


def emulator(stack, flavor: str) -> str:
    return stack.urls["bitbucket_cloud" if flavor == "cloud" else "bitbucket_datacenter"]


def host(stack) -> str:
    return urlsplit(stack.api).hostname or ""


def begin(stack, browser: Browser, provider: str, return_to: str = "/api/me") -> requests.Response:
    """Click "Sign in with Bitbucket": follow our 302 to the provider's consent page."""
    page = browser.get(f"{stack.api}/auth/{provider}/authorize?return_to={quote(return_to, safe='')}")
    assert page.status_code == 200 and "Grant access" in page.text, page.text[:300]
    return page


def callback_url(response: requests.Response) -> str:
    assert response.status_code == 302, response.text[:300]
    return response.headers["Location"]


def sign_in(stack, flavor: str, user: str = "alice") -> Browser:
    browser = Browser()
    page = begin(stack, browser, PROVIDERS[flavor])
    landed = browser.get(callback_url(consent(browser, page, user)))
    assert landed.status_code == 200, landed.text[:500]
    return browser


def session_cookie(stack, browser: Browser) -> str:
    return browser.cookie(host(stack), SESSION) or ""


def api_session(stack, flavor: str, user: str) -> requests.Session:
    """A requests session carrying the bitbridge session cookie of `user` signed in through `flavor`."""
    session = requests.Session()
    session.cookies.set(SESSION, session_cookie(stack, sign_in(stack, flavor, user)))
    return session


def set_on_stored_connections(stack, provider: str, **attributes: dict) -> None:
    """Set `attributes` (DynamoDB-typed values, e.g. status={"S": "reauth_required"}) on every stored
    connection to `provider`."""
    ddb = stack.aws("dynamodb")
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values = {f":v{i}": value for i, value in enumerate(attributes.values())}
    update = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
    for item in ddb.scan(TableName="bitbridge-local-AccountsTable")["Items"]:
        if item["sk"]["S"] == f"CONN#{provider}":
            ddb.update_item(
                TableName="bitbridge-local-AccountsTable",
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )


def expire_stored_token(stack, provider: str, in_seconds: int = -60) -> None:
    """Move every stored connection's access-token expiry to `in_seconds` from now (by default into the
    past: the next use refreshes; a few seconds ahead lands inside the refresh window)."""
    set_on_stored_connections(stack, provider, expires_at={"N": str(int(time.time()) + in_seconds)})


def token_requests(stack, flavor: str) -> int:
    """How many token-endpoint calls the emulator has answered for `flavor`."""
    stats = requests.get(f"{emulator(stack, flavor)}/_emulator/requests", timeout=5).json()
    endpoint = "POST /site/oauth2/access_token" if flavor == "cloud" else "POST /rest/oauth2/latest/token"
    return int(stats["flavors"].get(flavor, {}).get("endpoints", {}).get(endpoint, 0))


def user_id(stack, session: requests.Session) -> str:
    return str(session.get(f"{stack.api}/api/me", timeout=10).json()["user"]["id"])


# ------------------------------------------------------------------------------------------------ the CLI


def cli(stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`bitbridge --local <console> ...` in a subprocess, as an admin runs it (no AWS settings inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BITBRIDGE_"))}
    return subprocess.run(
        [sys.executable, "-m", "bitbridge.cli", "--local", stack.urls["console"], *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------------------------------------ imports


TERMINAL = {"completed", "failed", "cancelled"}


def control(stack, flavor: str, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    """The emulator's control API; `timeout` must outlast any wait the call asks the emulator for."""
    response = requests.request(method, f"{emulator(stack, flavor)}/_emulator/{path}", json=body, timeout=timeout)
    assert response.status_code < 400, response.text[:500]
    return response.json() if response.content else None


# Why a test or bench turns the emulator's rate limits off. Name it at each call, so each such place is found by it.
UNBUDGETED = "until bitbridge budgets its calls (issue 22)"


def without_rate_limits(stack, reason: str) -> None:
    """Turn off the emulator's Bitbucket rate limits for the rest of this stack's life (both flavours: one backend),
    for work that spends more than a person's hour of Bitbucket calls. ``reason`` says why, at the call.
    (bitbridge budgets its calls now: `limits_out_of_reach` raises both sides instead.)"""
    assert reason.strip(), "say why this stack needs no rate limit"
    control(stack, "cloud", "POST", "config", {"rate_limits_enabled": False})


def forget_budgets(stack) -> None:
    """Empty bitbridge's rate-limit budgets on a shared stack, after a test that made Bitbucket refuse someone:
    the budget rightly holds that person's window for the rest of the (hour-long) window, which the next test
    on the same stack must not inherit."""
    table = requests.get(f"{stack.urls['console']}/env", timeout=15).json()["BITBRIDGE_BUDGETS_TABLE"]
    ddb = stack.aws("dynamodb")
    for page in ddb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="pk, sk"):
        for item in page["Items"]:
            ddb.delete_item(TableName=table, Key=item)


OUT_OF_REACH = 10**9  # calls per window (Cloud classes) or tokens (a Data Center bucket, and refilled a second)


def limits_out_of_reach(stack, reason: str, flavors: tuple[str, ...] = ("cloud", "datacenter")) -> None:
    """Raise Bitbucket's limits (the emulator's) and bitbridge's budgets (the providers' settings) far beyond what
    a benchmark spends, for `flavors`: it measures speed with the budget's bookkeeping in place, and nothing waits.
    ``reason`` says why, at the call (each place is found by its name)."""
    assert reason.strip(), "say why this stack needs limits out of reach"
    if "cloud" in flavors:
        classes = ("repositories", "webhooks", "raw", "git", "other")
        control(stack, "cloud", "POST", "config", {"cloud_rate_limits": dict.fromkeys(classes, OUT_OF_REACH)})
        args = [a for c in classes for a in ("--class", f"{c}={OUT_OF_REACH}")]
        done = cli(stack, "providers", "set-limits", PROVIDERS["cloud"], *args)
        assert done.returncode == 0, done.stderr
    if "datacenter" in flavors:
        bucket = {"capacity": OUT_OF_REACH, "refill_per_second": OUT_OF_REACH}
        control(stack, "datacenter", "POST", "config", {"dc_rate_limit": bucket})
        args = ["--class", f"http={OUT_OF_REACH}", "--refill-per-second", str(OUT_OF_REACH)]
        done = cli(stack, "providers", "set-limits", PROVIDERS["datacenter"], *args)
        assert done.returncode == 0, done.stderr


def bench_seed(count: int, pull_requests: int, **more: int) -> dict[str, Any]:
    """An emulator seed of `count` generated Cloud repositories `bench/repo-0001`... (3 branches, 1 tag,
    `pull_requests` each, plus `more` counts) in one workspace alice owns: the benchmarks' bulk load."""
    repo = {"slug": "repo", "count": count, "branches": 3, "tags": 1, "pull_requests": pull_requests, **more}
    workspace = {"slug": "bench", "name": "Bench", "members": {"alice": "owner"}, "repositories": [repo]}
    return {"cloud": {"workspaces": [workspace]}}


def emulator_repo(stack, flavor: str, full_name: str) -> dict[str, Any]:
    state = control(stack, flavor, "GET", "state")
    flav = "cloud" if flavor == "cloud" else "datacenter"
    found = [r for r in state["repositories"] if r["full_name"] == full_name and r["flavor"] == flav]
    assert found, f"{full_name} is not in the emulator's state"
    return found[0]


def list_all_repos(session: requests.Session, stack, flavor: str, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {"provider": PROVIDERS[flavor], **params, **({"cursor": cursor} if cursor else {})}
        response = session.get(f"{stack.api}/api/repos", params=query, timeout=60)
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        out.extend(body["repositories"])
        cursor = body["next_cursor"]
        if not cursor:
            return out
    raise AssertionError("listing did not end")


def start_imports(
    session: requests.Session, stack, flavor: str, names: list[str], **flags: Any
) -> list[dict[str, Any]]:
    response = session.post(
        f"{stack.api}/api/imports",
        json={"provider": PROVIDERS[flavor], "repositories": names, **flags},
        timeout=60,
    )
    assert response.status_code == 202, response.text[:500]
    return list(response.json()["imports"])


def job(session: requests.Session, stack, job_id: str) -> dict[str, Any]:
    response = session.get(f"{stack.api}/api/imports/{job_id}", timeout=30)
    assert response.status_code == 200, response.text[:300]
    return dict(response.json())


def wait_for(
    session: requests.Session, stack, job_ids: list[str], timeout: float = 60.0, seen: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Poll until every job is terminal; `seen` collects every state observed on the way."""
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    done: dict[str, dict[str, Any]] = {}
    while pending:
        for job_id in list(pending):
            body = job(session, stack, job_id)
            if seen is not None:
                seen.add(body["state"])
            if body["state"] in TERMINAL:
                done[job_id] = body
                pending.discard(job_id)
        if pending and time.monotonic() > deadline:
            states = {j: job(session, stack, j)["state"] for j in pending}
            raise AssertionError(f"imports did not finish in {timeout} s: {states}\n{stack.log()[-3000:]}")
        if pending:
            time.sleep(0.2)
    return done


def bucket(stack) -> str:
    env = requests.get(f"{stack.urls['console']}/env", timeout=5).json()
    return str(env["BITBRIDGE_SNAPSHOTS_BUCKET"])


def snapshot(stack, prefix: str) -> dict[str, bytes]:
    """Every object under an import's prefix, by key relative to it."""
    s3 = stack.aws("s3")
    name = bucket(stack)
    out: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix) :]] = s3.get_object(Bucket=name, Key=obj["Key"])["Body"].read()
    return out


def manifest(files: dict[str, bytes]) -> dict[str, Any]:
    return dict(json.loads(files["manifest.json"]))


def lines(files: dict[str, bytes], entity: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in sorted(k for k in files if k.startswith(f"{entity}/")):
        out.extend(json.loads(line) for line in files[key].decode().splitlines())
    return out


def entity_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The snapshot without its manifest and git/latest.json (whose timestamps, ids and call counts differ
    between runs)."""
    return {k: v for k, v in files.items() if k not in ("manifest.json", "git/latest.json")}


def requests_made(stack, flavor: str) -> dict[str, int]:
    stats = control(stack, flavor, "GET", "requests")
    return dict(stats["flavors"].get("cloud" if flavor == "cloud" else "datacenter", {}).get("endpoints", {}))


def people_named(flavor: str, value: Any) -> set[str]:
    """Every person id `value` names: Bitbucket's user objects in the raw pages, `author` / `person` / `actor`
    in the review records."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if flavor == "cloud" and item.get("type") in ("user", "team", "app_user") and item.get("uuid"):
                found.add(str(item["uuid"]))
            if flavor == "datacenter" and {"id", "slug", "displayName"} <= item.keys():
                found.add(str(item["id"]))
            for key in ("author", "person", "actor"):
                if isinstance(item.get(key), str):
                    found.add(item[key])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
