"""Helpers for the import end-to-end tests: signed-in API sessions, the emulator's control API, snapshots."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from tests.e2e.test_sign_in import PROVIDERS, SESSION, _host, sign_in

TERMINAL = {"completed", "failed", "cancelled"}


def emulator(stack, flavor: str) -> str:
    return stack.urls["bitbucket_cloud" if flavor == "cloud" else "bitbucket_datacenter"]


def api_session(stack, flavor: str, user: str) -> requests.Session:
    """A requests session carrying the bitbridge session cookie of `user` signed in through `flavor`."""
    browser = sign_in(stack, flavor, user)
    session = requests.Session()
    session.cookies.set(SESSION, browser.cookie(_host(stack), SESSION) or "")
    return session


def control(stack, flavor: str, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{emulator(stack, flavor)}/_emulator/{path}", json=body, timeout=30)
    assert response.status_code < 400, response.text[:500]
    return response.json() if response.content else None


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
    session: requests.Session, stack, flavor: str, names: list[str], **flags: bool
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
    """The snapshot without its manifest (whose timestamps and call counts differ between runs)."""
    return {k: v for k, v in files.items() if k != "manifest.json"}


def requests_made(stack, flavor: str) -> dict[str, int]:
    stats = control(stack, flavor, "GET", "requests")
    return dict(stats["flavors"].get("cloud" if flavor == "cloud" else "datacenter", {}).get("endpoints", {}))
