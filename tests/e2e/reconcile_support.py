"""What the reconciliation end-to-end tests share: repositories on the emulator with bitbridge's hook, the
CLI's reconcile and hooks list, and reading changes off the bus."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import requests

from bitbridge.change_ids import section_value
from tests.e2e.support import PROVIDERS, api_session, cli, control, emulator, start_imports, user_id, wait_for
from tests.emulator.conftest import bearer, cloud_login, dc_login

OWNER = {"cloud": "acme", "datacenter": "PLAT"}
DELIVERIES_WAIT = 240  # seconds: 200 changes take minutes to deliver on a loaded machine


def bitbridge(stack, *args: str):
    return cli(stack, *args, timeout=300)


def reconcile(stack, full_name: str) -> dict[str, Any]:
    done = bitbridge(stack, "reconcile", "--repo", full_name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(done.stdout)
    return dict(result)


def hooks_list(stack) -> dict[str, dict[str, Any]]:
    listed = bitbridge(stack, "hooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {r["repository"]: r for r in json.loads(listed.stdout)}


class Repo:
    """A fresh emulator repository with bitbridge's hook installed and a reconciliation baseline."""

    def __init__(
        self, stack, flavor: str, installer: str = "alice", permissions: dict | None = None, branches: int = 12
    ) -> None:
        self.stack, self.flavor = stack, flavor
        self.slug = f"rec-{uuid.uuid4().hex[:8]}"
        self.full_name = f"{OWNER[flavor]}/{self.slug}"
        self.path = f"{flavor}/repos/{self.full_name}"
        control(
            stack,
            flavor,
            "POST",
            f"{flavor}/repos",
            {"owner": OWNER[flavor], "slug": self.slug, "permissions": permissions},
        )
        for n in range(branches):  # feature branches to push to and to open pull requests from
            control(stack, flavor, "POST", f"{self.path}/branches", {"name": f"f/{n:02d}", "from": "main"})
        self.user = user_id(stack, api_session(stack, flavor, installer))
        args = ("hooks", "install", "--provider", PROVIDERS[flavor], "--repo", self.full_name, "--user", self.user)
        installed = bitbridge(stack, *args)
        assert installed.returncode == 0, installed.stderr
        assert reconcile(stack, self.full_name)["status"] == "baseline"

    def change(self, method: str, path: str, body: Any = None) -> Any:
        return control(self.stack, self.flavor, method, f"{self.path}/{path}", body)

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery Bitbucket attempted for this repository, once none is left to attempt (200 changes
        take minutes to deliver on a loaded machine)."""
        query = f"deliveries?wait=1&timeout={DELIVERIES_WAIT}&repository={self.full_name}"
        return list(control(self.stack, self.flavor, "GET", query, timeout=DELIVERIES_WAIT + 30)["deliveries"])

    def events(
        self, settle: float = 3.0, timeout: float = 240.0, until: Callable[[list[dict[str, Any]]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """This repository's events on the bus, once `until` holds for them and then no new one arrived for
        `settle` seconds (a duplicate would). Publishing is asynchronous (a stored delivery reaches the bus
        through the table's stream) and can take longer than `settle` on a loaded machine: a test that expects
        an event says so with `until`, rather than taking a quiet moment for the end."""
        deadline, last, stable_since = time.monotonic() + timeout, -1, time.monotonic()
        while True:
            found = [
                e["detail"]
                for e in self.stack.events(0)[0]
                if (e["detail"].get("repository") or {}).get("full_name") == self.full_name
            ]
            now = time.monotonic()
            if len(found) != last:
                last, stable_since = len(found), now
            elif now - stable_since >= settle and (until is None or until(found)):
                return found
            if now > deadline:
                assert until is None, f"the expected events were not all on the bus after {timeout:.0f} s"
                return found
            time.sleep(0.3)

    def rest(self, token: str) -> str:
        if self.flavor == "cloud":
            return f"{emulator(self.stack, 'cloud')}/2.0/repositories/{self.full_name}"
        return f"{emulator(self.stack, 'datacenter')}/rest/api/1.0/projects/{OWNER['datacenter']}/repos/{self.slug}"


def change_ids(events: list[dict[str, Any]]) -> list[str]:
    """One id per change: each ref change of a push, the event's for everything else."""
    out: list[str] = []
    for event in events:
        if event["type"] == "repository.push":
            out.extend(c["change_id"] for c in event["ref_changes"])
        else:
            out.append(event["change_id"])
    return out


def told(event: dict[str, Any]) -> list[tuple[tuple, Any]]:
    """What an event tells of each ref and pull request: its new head, or its state."""
    out: list[tuple[tuple, Any]] = [(("ref", c["kind"], c["name"]), c["new"]) for c in event["ref_changes"]]
    if event["pull_request"] is not None and event["type"] in LIFECYCLE:
        out.append((("pr", event["pull_request"]["id"]), section_value(event["pull_request"])))
    return out


LIFECYCLE = {f"pull_request.{t}" for t in ("opened", "updated", "merged", "declined", "deleted")}


def imported(stack, flavor: str) -> Repo:
    """A fresh repository imported through the API (the import installs the hook and records what it
    saw); no reconciliation has run."""
    repo = Repo.__new__(Repo)
    repo.stack, repo.flavor = stack, flavor
    repo.slug = f"imp-{uuid.uuid4().hex[:8]}"
    repo.full_name = f"{OWNER[flavor]}/{repo.slug}"
    repo.path = f"{flavor}/repos/{repo.full_name}"
    control(stack, flavor, "POST", f"{flavor}/repos", {"owner": OWNER[flavor], "slug": repo.slug})
    for n in range(2):
        control(stack, flavor, "POST", f"{repo.path}/branches", {"name": f"f/{n:02d}", "from": "main"})
    repo.change("POST", "pullrequests", {"source": "f/01", "destination": "main", "title": "before the import"})
    session = api_session(stack, flavor, "alice")
    (job,) = start_imports(session, stack, flavor, [repo.full_name])
    done = wait_for(session, stack, [job["id"]], timeout=120)[job["id"]]
    assert done["state"] == "completed" and done["webhook"]["status"] == "installed", done
    return repo


def delete_hook(stack, repo: Repo) -> None:
    emu = SimpleNamespace(cloud_url=emulator(stack, "cloud"), dc_url=emulator(stack, "datacenter"))
    token = cloud_login(emu) if repo.flavor == "cloud" else dc_login(emu)
    hook_id = hooks_list(stack)[repo.full_name]["hook_id"]
    path = "hooks" if repo.flavor == "cloud" else "webhooks"
    assert requests.delete(f"{repo.rest(token)}/{path}/{hook_id}", headers=bearer(token), timeout=10).status_code == 204
