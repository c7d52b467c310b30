"""Changed files on events, end to end (local stack + emulator over real HTTP, both flavors): the emulator's
real git pushes, its webhooks reach the receiver, and the publisher asks Bitbucket what changed - as the
subscription's owner - before the event goes on the bus (docs/events.md, "Changed files")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.support import (
    PROVIDERS,
    api_session,
    cli,
    control,
    expire_stored_token,
    forget_budgets,
    token_requests,
    user_id,
)

pytestmark = pytest.mark.e2e
OWNER = {"cloud": "acme", "datacenter": "PLAT"}
FLAVORS = ["cloud", "datacenter"]


class Repo:
    """A fresh emulator repository with bitbridge's hook installed by alice (the subscription's owner)."""

    def __init__(self, stack, flavor: str) -> None:
        self.stack, self.flavor = stack, flavor
        self.slug = f"cf-{uuid.uuid4().hex[:8]}"
        self.full_name = f"{OWNER[flavor]}/{self.slug}"
        self.path = f"{flavor}/repos/{self.full_name}"
        control(stack, flavor, "POST", f"{flavor}/repos", {"owner": OWNER[flavor], "slug": self.slug})
        alice = user_id(stack, api_session(stack, flavor, "alice"))
        args = ("hooks", "install", "--provider", PROVIDERS[flavor], "--repo", self.full_name, "--user", alice)
        installed = cli(stack, *args, timeout=120)
        assert installed.returncode == 0, installed.stderr

    def change(self, method: str, path: str, body: Any = None) -> Any:
        return control(self.stack, self.flavor, method, f"{self.path}/{path}", body)

    def push(self, **body: Any) -> str:
        return str(self.change("POST", "push", body)["head"])

    def events(self) -> list[dict[str, Any]]:
        return [
            e["detail"]
            for e in self.stack.events(0)[0]
            if (e["detail"].get("repository") or {}).get("full_name") == self.full_name
        ]

    def event(self, match: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if match(e)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, (
                f"no such event for {self.full_name}: {[e['type'] for e in self.events()]}"
            )
            time.sleep(0.3)

    def push_event(self, ref: str, head: str) -> dict[str, Any]:
        """The repository.push that moved `ref` to `head`, and that ref change."""
        event = self.event(
            lambda e: (
                e["type"] == "repository.push" and any(c["name"] == ref and c["new"] == head for c in e["ref_changes"])
            )
        )
        return event


def change_of(event: dict[str, Any], ref: str) -> dict[str, Any]:
    return next(c for c in event["ref_changes"] if c["name"] == ref)


def by_path(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(files, key=lambda f: f["path"])


@pytest.fixture(params=FLAVORS)
def repo(request, stack) -> Repo:
    return Repo(stack, request.param)


def test_a_push_that_adds_modifies_deletes_and_renames_gives_exactly_those_four(repo: Repo):
    repo.push(branch="main", files={"keep.txt": "1\n", "gone.txt": "x\n", "docs/old.md": "same\n"}, message="base")
    head = repo.push(
        branch="main",
        files={"src/new.py": "print('hi')\n", "keep.txt": "2\n"},
        delete=["gone.txt"],
        rename={"docs/old.md": "docs/new.md"},
        message="Four changes [ci skip]\n\nA body that is not the first line",
    )
    change = change_of(repo.push_event("main", head), "main")
    assert by_path(change["changed_files"]) == [
        {"path": "docs/new.md", "status": "renamed", "old_path": "docs/old.md"},
        {"path": "gone.txt", "status": "removed"},
        {"path": "keep.txt", "status": "modified"},
        {"path": "src/new.py", "status": "added"},
    ]
    assert (change["changed_files_count"], change["changed_files_truncated"], change["changed_files_reason"]) == (
        4,
        False,
        None,
    )
    ((commit,), cut) = change["commits"], change["commits_truncated"]
    assert (commit["id"], commit["message"], cut) == (head, "Four changes [ci skip]", False)
    assert commit["author"]["name"] and "@" not in str(commit["author"])


def test_a_push_of_2000_files_is_truncated_as_documented(repo: Repo):
    files = {f"bulk/{n:04d}.txt": f"{n}\n" for n in range(2000)}
    head = repo.push(branch="main", files=files, message="bulk")
    change = change_of(repo.push_event("main", head), "main")
    assert len(change["changed_files"]) == 500  # FILES_PER_LIST
    assert all(f["status"] == "added" and f["path"].startswith("bulk/") for f in change["changed_files"])
    assert (change["changed_files_count"], change["changed_files_truncated"]) == (2000, True)


def test_a_new_branch_its_tag_and_its_deletion_as_documented(repo: Repo):
    repo.push(branch="main", files={"README.md": "main\n"}, message="main moves")
    head = repo.push(branch="feature/new", files={"feature.txt": "f\n"}, message="First on the branch")
    created = change_of(repo.push_event("feature/new", head), "feature/new")
    assert created["old"] is None
    # Compared with the default branch it left: only what the branch brings, not main's history.
    assert created["changed_files"] == [{"path": "feature.txt", "status": "added"}]
    assert [c["message"] for c in created["commits"]] == ["First on the branch"]

    repo.change("POST", "tags", {"name": "v9.9", "target": "feature/new"})
    tagged = change_of(repo.event(lambda e: any(c["name"] == "v9.9" for c in e["ref_changes"] or [])), "v9.9")
    assert (tagged["changed_files"], tagged["changed_files_reason"], tagged["commits"]) == (None, "tag", None)

    repo.change("DELETE", "branches/feature/new")
    deleted = repo.event(lambda e: any(c["name"] == "feature/new" and c["new"] is None for c in e["ref_changes"] or []))
    assert change_of(deleted, "feature/new")["changed_files_reason"] == "ref_deleted"


def test_a_pull_requests_event_lists_the_pull_requests_changes(repo: Repo):
    repo.push(branch="topic", files={"a.txt": "a\n", "lib/b.py": "b\n"}, message="topic work")
    repo.push(branch="main", files={"elsewhere.txt": "main moved on\n"}, message="main moves")
    opened = repo.change("POST", "pullrequests", {"source": "topic", "destination": "main", "title": "Topic"})
    event = repo.event(lambda e: e["type"] == "pull_request.opened" and e["pull_request"]["id"] == opened["id"])
    pr = event["pull_request"]
    assert by_path(pr["changed_files"]) == [
        {"path": "a.txt", "status": "added"},
        {"path": "lib/b.py", "status": "added"},
    ]
    assert (pr["changed_files_count"], pr["changed_files_truncated"], pr["changed_files_reason"]) == (2, False, None)
    assert "commits" not in pr


def test_enrichment_failure_publishes_once_with_null_and_the_reason(repo: Repo, stack):
    diff_path = {
        "cloud": f"/2.0/repositories/{repo.full_name}/diffstat",
        "datacenter": f"/rest/api/1.0/projects/{OWNER['datacenter']}/repos/{repo.slug}/commits",
    }[repo.flavor]
    control(stack, repo.flavor, "POST", "faults", {"status": 500, "path_prefix": diff_path, "flavor": repo.flavor})
    try:
        head = repo.push(branch="main", files={"x.txt": "x\n"}, message="while Bitbucket fails")
        event = repo.push_event("main", head)
        time.sleep(3)  # a second publication would have arrived by now
        (rule,) = control(stack, repo.flavor, "GET", "faults")["faults"]
    finally:
        control(stack, repo.flavor, "DELETE", "faults")
    assert rule["fired"] >= 1  # enrichment asked, and Bitbucket failed it
    change = change_of(event, "main")
    assert (change["changed_files"], change["changed_files_count"], change["changed_files_truncated"]) == (None,) * 3
    assert (change["changed_files_reason"], change["commits"]) == ("bitbucket_error", None)
    assert [e["id"] for e in repo.events() if e["id"] == event["id"]] == [event["id"]]


def test_the_publisher_refreshes_the_owners_refused_token_under_its_own_policy(repo: Repo, stack):
    """Bitbucket refuses the owner's token (expired early): the publisher refreshes it - the connection's
    lease, KMS, the provider's client secret, all under EventPublisherFunction's policy - and lists the files."""
    before = token_requests(stack, repo.flavor)
    # Every access token alice holds stops working, and bitbridge's record says hers is past its expiry
    # (the record may hold a newer token than the publisher's: a later sign-in), so a refresh is due.
    control(stack, repo.flavor, "POST", "tokens/expire", {"user": "alice", "flavor": repo.flavor})
    expire_stored_token(stack, PROVIDERS[repo.flavor])
    head = repo.push(branch="main", files={"after-refresh.txt": "r\n"}, message="after the token expired")
    change = change_of(repo.push_event("main", head), "main")
    assert (change["changed_files"], change["changed_files_reason"]) == (
        [{"path": "after-refresh.txt", "status": "added"}],
        None,
    )
    assert token_requests(stack, repo.flavor) > before  # it did refresh
    assert "IAM denied: function=EventPublisherFunction" not in stack.log()


def test_a_push_of_more_commits_than_listed_gives_the_newest_ten_and_says_so(repo: Repo):
    """Cloud's delivery lists 5 of the push's 12 commits (truncated), Data Center's none: one read fetches
    the newest 10, each with its first line and author, and `commits_truncated` says there are more."""
    repo.push(branch="main", files={"CHANGES.md": "start\n"}, message="base")
    messages = [f"Step {n}\n\nbody {n}" for n in range(1, 13)]
    head = repo.push(branch="main", commits=messages)
    change = change_of(repo.push_event("main", head), "main")
    assert [c["message"] for c in change["commits"]] == [f"Step {n}" for n in range(12, 2, -1)]
    assert change["commits"][0]["id"] == head and change["commits_truncated"] is True
    assert all(c["author"] and c["author"]["name"] for c in change["commits"])
    assert change["changed_files"] == [{"path": "CHANGES.md", "status": "modified"}]


def _rate_limits(stack, flavor: str) -> dict[str, Any]:
    return {
        r["class"]: r
        for r in control(stack, flavor, "GET", f"rate-limits?flavor={flavor}&user=alice")["limits"]
        if r["user"] == "alice"
    }


def test_enrichment_spends_the_owners_allowance_and_a_spent_one_publishes_rate_limited_at_once(repo: Repo, stack):
    """The publisher asks Bitbucket as alice (the hook's owner), so her allowance pays: her counters move.
    With it spent, Bitbucket answers 429 and the event goes out once, `rate_limited`, without waiting."""
    klass = "repositories" if repo.flavor == "cloud" else "http"
    config = control(stack, repo.flavor, "GET", "config")
    saved = {k: config[k] for k in ("rate_limits_enabled", "cloud_rate_limits", "dc_rate_limit")}
    control(stack, repo.flavor, "POST", "config", {"rate_limits_enabled": True})
    try:
        before = _rate_limits(stack, repo.flavor).get(klass, {}).get("admitted", 0)
        head = repo.push(branch="main", files={"paid.txt": "p\n"}, message="paid for by alice")
        change = change_of(repo.push_event("main", head), "main")
        assert change["changed_files"] == [{"path": "paid.txt", "status": "added"}]
        assert _rate_limits(stack, repo.flavor)[klass]["admitted"] > before  # her calls, counted as hers

        spent = {"cloud_rate_limits": {"repositories": 0}, "dc_rate_limit": {"capacity": 1, "refill_per_second": 0.001}}
        control(stack, repo.flavor, "POST", "config", spent)
        rejected = _rate_limits(stack, repo.flavor)[klass]["rejected"]
        head = repo.push(branch="main", files={"unpaid.txt": "u\n"}, message="alice's allowance is spent")
        event = repo.push_event("main", head)
        time.sleep(3)  # a second publication would have arrived by now
        assert _rate_limits(stack, repo.flavor)[klass]["rejected"] > rejected  # Bitbucket refused alice
    finally:
        control(stack, repo.flavor, "POST", "config", saved)
        forget_budgets(stack)  # alice's budget holds the refused window: the stack's next tests are hers too
    change = change_of(event, "main")
    assert (change["changed_files"], change["changed_files_reason"], change["commits"]) == (None, "rate_limited", None)
    assert [e["id"] for e in repo.events() if e["id"] == event["id"]] == [event["id"]]
