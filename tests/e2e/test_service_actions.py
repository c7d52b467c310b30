"""Typed actions end to end (issue 26): the local stack and the emulator over real HTTP, both flavors, through the
SDK. Each action is checked in the emulator's state, and the webhook it fires arrives as the documented event,
once; writes with one Idempotency-Key happen once (the emulator's request counts say so)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests

from bitbridge.client import Client, Conflict, Forbidden, NotConnected, ServiceAPIError
from tests.e2e.service_support import ALL_SCOPES, PROVIDERS, add_client, connect, new_bitbucket_user
from tests.e2e.support import api_session, cli, control, user_id

pytestmark = pytest.mark.e2e

FLAVORS = ["cloud", "datacenter"]
# Repositories of this module's own: the pull requests it opens never change what other tests list in the seed's.
REPO = {"cloud": f"acme/write-back-{uuid.uuid4().hex[:8]}", "datacenter": f"PLAT/write-back-{uuid.uuid4().hex[:8]}"}
ACTION_SCOPES = "statuses:write,statuses:read,comments:write,pullrequests:write"


class Setup:
    """One product, one connected end user per flavor (write access), bitbridge's hook on each repository."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.client_id, key = add_client(stack, f"{ALL_SCOPES},{ACTION_SCOPES}")
        self.bb = Client(stack.api, key)
        self.users: dict[str, str] = {}
        for flavor in FLAVORS:
            name = new_bitbucket_user(stack)
            owner, slug = REPO[flavor].split("/")
            control(stack, flavor, "POST", f"{flavor}/repos", {"owner": owner, "slug": slug})
            control(stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/push", {"files": {"README.md": "Hi\n"}})
            control(stack, flavor, "PUT", f"{flavor}/repos/{owner}/{slug}/permissions", {name: "write"})
            connect(stack, self.bb, flavor, f"eu-{name}", name)
            self.users[flavor] = name
            admin = user_id(stack, api_session(stack, flavor, "alice"))
            args = ("hooks", "install", "--provider", PROVIDERS[flavor], "--repo", REPO[flavor], "--user", admin)
            done = cli(stack, *args)
            assert done.returncode == 0, done.stderr

    def end_user(self, flavor: str) -> str:
        return f"eu-{self.users[flavor]}"

    def args(self, flavor: str) -> tuple[str, str, str]:
        return PROVIDERS[flavor], self.end_user(flavor), REPO[flavor]

    def open_pr(self, flavor: str, **body: Any) -> int:
        branch = f"feature/e2e-{uuid.uuid4().hex[:8]}"
        owner, slug = REPO[flavor].split("/")
        made = control(
            self.stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/pullrequests", {"source": branch, **body}
        )
        return int(made["id"])


def _events(stack, since: int, predicate, want: int = 1, timeout: float = 25.0, settle: float = 1.5) -> list[dict]:
    """The events after `since` matching `predicate`, once `want` arrived (plus `settle` s, so a duplicate shows)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e["detail"] for e in stack.events(since)[0] if predicate(e["detail"])]
        if len(found) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    time.sleep(settle)
    return [e["detail"] for e in stack.events(since)[0] if predicate(e["detail"])]


def _state(stack, flavor: str, pull_request: int) -> dict[str, Any]:
    """What the emulator holds for a pull request: comments, reviewers, state (read through its control API)."""
    owner, slug = REPO[flavor].split("/")
    return control(stack, flavor, "GET", f"{flavor}/repos/{owner}/{slug}/pullrequests/{pull_request}")


@pytest.fixture(scope="module")
def setup(stack) -> Setup:
    return Setup(stack)


def _main_head(stack, flavor: str) -> str:
    owner, slug = REPO[flavor].split("/")
    pushed = control(stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/push", {"branch": "main"})
    return str(pushed["head"])


def _post_counts(stack, flavor: str, fragment: str) -> int:
    endpoints = control(stack, flavor, "GET", "requests")["flavors"][flavor]["endpoints"]
    return sum(n for name, n in endpoints.items() if name.startswith(("POST", "PUT")) and fragment in name)


# ------------------------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_status_is_set_once_per_key_and_its_webhook_arrives_as_the_event(stack, setup, flavor):
    provider, end_user, repo = setup.args(flavor)
    commit = _main_head(stack, flavor)
    _, since = stack.events()
    key = "bitbridge-e2e/" + "unit-tests-on-a-very-long-pipeline-name-" + uuid.uuid4().hex  # over Cloud's 40
    first = setup.bb.statuses.set(provider, end_user, repo, commit, key, "in_progress", "https://ci.example/1")
    done = setup.bb.statuses.set(
        provider, end_user, repo, commit, key, "successful", "https://ci.example/1", name="Unit tests"
    )
    assert first["bitbucket_key"] == done["bitbucket_key"]  # mapped the same way each time
    assert len(done["bitbucket_key"]) <= (40 if flavor == "cloud" else 255) and done["key"] == key
    listed = setup.bb.statuses.list(provider, end_user, repo, commit)
    mine = [s for s in listed if s["bitbucket_key"] == done["bitbucket_key"]]
    assert [(s["state"], s["url"]) for s in mine] == [("successful", "https://ci.example/1")]  # one per key
    events = _events(
        stack,
        since,
        lambda d: d["type"].startswith("commit_status.") and (d["commit_status"] or {}).get("commit") == commit,
        want=2 if flavor == "cloud" else 0,
        timeout=25 if flavor == "cloud" else 3,
    )
    if flavor == "cloud":
        assert [e["type"] for e in sorted(events, key=lambda e: e["occurred_at"])] == [
            "commit_status.created",
            "commit_status.updated",
        ]
        assert {e["commit_status"]["key"] for e in events} == {done["bitbucket_key"]}
    else:
        assert events == []  # Data Center fires no build-status webhook


# ------------------------------------------------------------------------------------------- comments


@pytest.mark.parametrize("flavor", FLAVORS)
def test_comments_create_reply_update_delete_each_arrive_once(stack, setup, flavor):
    provider, end_user, repo = setup.args(flavor)
    pr = setup.open_pr(flavor)
    _, since = stack.events()
    inline = {"path": "CHANGES.md", "line": 1, "side": "new"}
    made = setup.bb.comments.create(provider, end_user, repo, pr, "On this line.", inline=inline)
    assert made["inline"] == inline and made["pull_request"] == pr
    reply = setup.bb.comments.create(provider, end_user, repo, pr, "A reply.", parent=made["id"])
    assert reply["parent_id"] == made["id"]
    setup.bb.comments.update(provider, end_user, repo, pr, made["id"], "On this line, edited.")
    setup.bb.comments.delete(provider, end_user, repo, pr, reply["id"])
    state = _state(stack, flavor, pr)
    texts = {c["id"]: (c["text"], c["deleted"]) for c in state["comments"]}
    assert texts[made["id"]] == ("On this line, edited.", False)
    assert reply["id"] not in texts or texts[reply["id"]][1] is True  # Data Center removes, Cloud marks

    def ours(d: dict) -> bool:
        return d["type"].startswith("pull_request.comment.") and d["pull_request"]["id"] == pr

    events = _events(stack, since, ours, want=4)
    assert sorted((e["type"], e["comment"]["id"]) for e in events) == sorted(
        [
            ("pull_request.comment.created", made["id"]),
            ("pull_request.comment.created", reply["id"]),
            ("pull_request.comment.updated", made["id"]),
            ("pull_request.comment.deleted", reply["id"]),
        ]
    )
    created = next(e for e in events if e["comment"]["id"] == made["id"] and e["type"].endswith("created"))
    assert created["comment"]["inline"] == {"path": "CHANGES.md", "line": 1, "side": "new"}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_upsert_keeps_one_comment_per_marker_and_splits_long_texts_in_order(stack, setup, flavor):
    provider, end_user, repo = setup.args(flavor)
    pr = setup.open_pr(flavor)
    for text in ("Build 1: running", "Build 1: failed", "Build 2: passed"):
        result = setup.bb.comments.upsert(provider, end_user, repo, pr, "ci-summary", text)
    live = [c for c in _state(stack, flavor, pr)["comments"] if not c["deleted"]]
    assert len(live) == 1 and live[0]["text"].endswith("\n\nBuild 2: passed")
    assert result["comments"] == [{"part": 1, "id": live[0]["id"], "url": result["comments"][0]["url"]}]

    lines = [f"{n:05d} " + "x" * 64 for n in range(1, 1001)]  # 70,000 characters, 1,000 numbered lines
    long = "\n".join(lines)
    assert len(long) >= 70_000
    split = setup.bb.comments.upsert(provider, end_user, repo, pr, "ci-summary", long)
    parts = [c for c in _state(stack, flavor, pr)["comments"] if not c["deleted"]]
    assert [p["id"] for p in parts][:1] == [live[0]["id"]]  # part 1 is the comment that was there
    assert len(parts) == len(split["comments"]) == 3
    assert all(len(p["text"].encode("utf-16-le")) // 2 < 32_768 for p in parts)
    bodies = [p["text"].split("\n\n", 1)[1] for p in parts]
    assert "".join(bodies) == long  # in order, nothing lost or doubled
    assert [p["text"].split("\n", 1)[0] for p in parts] == [f"[//]: # (bitbridge:ci-summary {i}/3)" for i in (1, 2, 3)]

    shorter = setup.bb.comments.upsert(provider, end_user, repo, pr, "ci-summary", "All green now.")
    assert len(shorter["deleted"]) == 2 and shorter["updated"] == [live[0]["id"]]
    remaining = [c for c in _state(stack, flavor, pr)["comments"] if not c["deleted"]]
    assert [c["id"] for c in remaining] == [live[0]["id"]]
    again = setup.bb.comments.upsert(provider, end_user, repo, pr, "ci-summary", "All green now.")
    assert again["unchanged"] == [live[0]["id"]] and again["updated"] == again["created"] == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_retried_write_with_the_same_idempotency_key_writes_once(stack, setup, flavor):
    provider, end_user, repo = setup.args(flavor)
    pr = setup.open_pr(flavor)
    key = f"retry-{uuid.uuid4()}"
    before = _post_counts(stack, flavor, "comments")
    first = setup.bb.comments.create(provider, end_user, repo, pr, "Exactly once.", idempotency_key=key)
    url = f"{stack.api}/service/v1/repos/{provider}/{end_user}/{repo}/pull-requests/{pr}/comments"
    headers = {"Authorization": f"Bearer {setup.bb._credentials}", "Idempotency-Key": key}
    replay = requests.post(url, json={"text": "Exactly once."}, headers=headers, timeout=30)
    assert replay.status_code == 201 and replay.json() == first
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert _post_counts(stack, flavor, "comments") == before + 1  # Bitbucket was asked once
    assert [c["text"] for c in _state(stack, flavor, pr)["comments"]] == ["Exactly once."]
    other = requests.post(url, json={"text": "Something else."}, headers=headers, timeout=30)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


# ------------------------------------------------------------------------------------------- reviews


@pytest.mark.parametrize("flavor", FLAVORS)
def test_reviews_approve_request_changes_unapprove_each_arrive_once(stack, setup, flavor):
    provider, end_user, repo = setup.args(flavor)
    pr = setup.open_pr(flavor, reviewers=[setup.users[flavor]])
    _, since = stack.events()
    assert setup.bb.pull_requests.approve(provider, end_user, repo, pr)["state"] == "approved"
    assert setup.bb.pull_requests.request_changes(provider, end_user, repo, pr)["state"] == "changes_requested"
    assert setup.bb.pull_requests.unapprove(provider, end_user, repo, pr)["state"] is None
    reviewer = next(r for r in _state(stack, flavor, pr)["reviewers"] if r["user"] == setup.users[flavor])
    assert reviewer["status"] == "UNAPPROVED"

    def ours(d: dict) -> bool:
        return d["type"].startswith("pull_request.review.") and d["pull_request"]["id"] == pr

    events = sorted(_events(stack, since, ours, want=3), key=lambda e: e["occurred_at"])
    assert [e["type"] for e in events] == [
        "pull_request.review.approved",
        "pull_request.review.changes_requested",
        "pull_request.review.unapproved",
    ]
    assert {e["review"]["reviewer"]["username"] for e in events} == {setup.users[flavor]}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_merge_and_decline_with_their_refusals_mapped(stack, setup, flavor):
    provider, end_user, repo = setup.args(flavor)
    owner, slug = REPO[flavor].split("/")
    branch = f"feature/clash-{uuid.uuid4().hex[:6]}"
    path = f"clash-{uuid.uuid4().hex[:6]}.txt"
    control(stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/push", {"files": {path: "base\n"}})
    control(stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/push", {"branch": branch, "files": {path: "ours\n"}})
    control(stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/push", {"files": {path: "theirs\n"}})
    clash = int(control(stack, flavor, "POST", f"{flavor}/repos/{owner}/{slug}/pullrequests", {"source": branch})["id"])
    with pytest.raises(Conflict) as conflict:
        setup.bb.pull_requests.merge(provider, end_user, repo, clash)
    assert conflict.value.status == 409 and conflict.value.code == "merge_conflict"
    assert _state(stack, flavor, clash)["state"] == "OPEN"

    control(stack, flavor, "PUT", f"{flavor}/repos/{owner}/{slug}/permissions", {setup.users[flavor]: "read"})
    try:
        with pytest.raises(Forbidden) as refused:
            setup.bb.pull_requests.merge(provider, end_user, repo, setup.open_pr(flavor))
    finally:
        control(stack, flavor, "PUT", f"{flavor}/repos/{owner}/{slug}/permissions", {setup.users[flavor]: "write"})
    assert refused.value.code == "missing_permission" and "write" in refused.value.message.lower()

    pr = setup.open_pr(flavor)
    _, since = stack.events()
    merged = setup.bb.pull_requests.merge(provider, end_user, repo, pr, strategy="squash", message="Squashed")
    assert merged["state"] == "MERGED" and merged["merge_commit"]
    with pytest.raises(Conflict) as closed:
        setup.bb.pull_requests.merge(provider, end_user, repo, pr)
    assert closed.value.code == "pull_request_not_open"
    declined = setup.bb.pull_requests.decline(provider, end_user, repo, clash, reason="Superseded by a squash")
    assert declined["state"] == "DECLINED"
    assert "Superseded by a squash" in [c["text"] for c in _state(stack, flavor, clash)["comments"]]

    def closing(d: dict) -> bool:
        return d["type"] in ("pull_request.merged", "pull_request.declined") and d["pull_request"]["id"] in (pr, clash)

    events = _events(stack, since, closing, want=2)
    assert sorted((e["type"], e["pull_request"]["id"]) for e in events) == [
        ("pull_request.declined", clash),
        ("pull_request.merged", pr),
    ]


# ------------------------------------------------------------------------------------------- who may


def test_wrong_scope_is_403_and_another_clients_end_user_is_not_connected(stack, setup):
    provider, end_user, repo = setup.args("cloud")
    pr = setup.open_pr("cloud")
    _, narrow_key = add_client(stack, "statuses:read")
    narrow = Client(stack.api, narrow_key)
    with pytest.raises(Forbidden) as scope:
        narrow.comments.create(provider, end_user, repo, pr, "nope")
    assert scope.value.code == "insufficient_scope" and scope.value.details["required_scope"] == "comments:write"
    _, other_key = add_client(stack, ACTION_SCOPES)
    other = Client(stack.api, other_key)
    with pytest.raises(NotConnected) as stranger:  # end user ids are the product's own: not this one's
        other.pull_requests.approve(provider, end_user, repo, pr)
    assert stranger.value.code == "not_connected" and stranger.value.connect_url
    assert _state(stack, "cloud", pr)["comments"] == []
    with pytest.raises(ServiceAPIError) as bad:
        setup.bb.statuses.set(provider, end_user, repo, "abc123", "ci", "done", "https://ci.example/")
    assert bad.value.status == 400 and "`state`" in bad.value.message


def test_audit_records_keep_a_text_prefix_and_never_the_token(stack, setup):
    provider, end_user, repo = setup.args("cloud")
    pr = setup.open_pr("cloud")
    secret_tail = "SECRET-TAIL-" + uuid.uuid4().hex
    text = "Build passed: " + "y" * 80 + secret_tail
    setup.bb.comments.create(provider, end_user, repo, pr, text)
    token = setup.bb.token(provider, end_user).access_token
    deadline, rows = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        done = cli(stack, "audit", "--client", setup.client_id, "--since", "10m", "--json")
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        if any(
            r["action"] == "comment_create" and (r.get("detail") or {}).get("pull_request") == str(pr) for r in rows
        ):
            break
        time.sleep(0.5)
    row = next(r for r in rows if r["action"] == "comment_create" and r["detail"]["pull_request"] == str(pr))
    assert row["detail"]["text_prefix"] == text[:40] and row["detail"]["text_length"] == len(text)
    dumped = json.dumps(rows)
    assert secret_tail not in dumped and token not in dumped
