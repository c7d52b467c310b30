"""Write-back and review in the emulator, as Bitbucket's own clients use them over REST: commit statuses,
pull-request comments (threads, inline, edit, delete), reviewer states, merge (strategies, conflicts, permission),
decline, comment and activity listings. Every JSON answer is validated against Atlassian's OpenAPI documents, and
every webhook an action fires is compared with the real payload of its key."""

from __future__ import annotations

import json

import requests

from .conftest import bearer, cloud_login, control, dc_login, validate
from .test_openapi_contract import _cloud_validate
from .test_webhooks import SECRET, _fixture, assert_same_structure

CLOUD_WRITE = ["account", "email", "repository", "pullrequest", "pullrequest:write", "issue", "webhook"]
CLOUD_API = "/2.0/repositories/acme/web-app"
DC_API = "/rest/api/1.0/projects/PLAT/repos/core"


def _cloud(emu, user: str = "bob", scopes: list[str] | None = None) -> requests.Session:
    session = requests.Session()
    session.headers.update(bearer(cloud_login(emu, user, scopes or CLOUD_WRITE)))
    return session


def _dc(emu, user: str = "bob", scope: str = "REPO_WRITE") -> requests.Session:
    session = requests.Session()
    session.headers.update(bearer(dc_login(emu, user, scope)))
    return session


def _open_pr(emu, flavor: str, repo: str, source: str, author: str = "alice", reviewers: tuple[str, ...] = ()) -> int:
    body = {"source": source, "user": author, "reviewers": list(reviewers)}
    return int(control(emu, "POST", f"{flavor}/repos/{repo}/pullrequests", json=body).json()["id"])


def _head(emu, flavor: str, repo: str, branch: str = "main") -> str:
    owner, slug = repo.split("/")
    return emu.backend.get_repo(flavor, owner, slug).branches[branch].target


def _deliveries(emu, key: str | None = None) -> list[dict]:
    found = control(emu, "GET", "deliveries?wait=1").json()["deliveries"]
    return [d for d in found if key is None or d["event_key"] == key]


def _hook(emu, flavor: str, url: str, events: list[str], repo: str) -> None:
    if flavor == "cloud":
        session = requests.Session()
        session.headers.update(bearer(cloud_login(emu, "alice", CLOUD_WRITE)))
        body = {"description": "t", "url": url, "active": True, "secret": SECRET, "events": events}
        assert session.post(f"{emu.cloud_url}/2.0/repositories/{repo}/hooks", json=body, timeout=10).status_code == 201
    else:
        token = dc_login(emu, "alice", "REPO_ADMIN")
        body = {"name": "t", "url": url, "events": events, "configuration": {"secret": SECRET}}
        resp = requests.post(f"{emu.dc_url}/rest/api/1.0/{repo}/webhooks", json=body, headers=bearer(token), timeout=10)
        assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------------------------------- statuses


def test_cloud_status_is_one_per_key_and_fires_created_then_updated(emu, receiver, cloud_spec):
    _hook(emu, "cloud", receiver.url, ["repo:commit_status_created", "repo:commit_status_updated"], "acme/web-app")
    bob = _cloud(emu)
    head = _head(emu, "cloud", "acme/web-app")
    url = f"{emu.cloud_url}{CLOUD_API}/commit/{head}/statuses"
    first = {"key": "ci", "state": "INPROGRESS", "url": "https://ci.example/1", "name": "CI"}
    created = bob.post(f"{url}/build", json=first, timeout=10)
    assert created.status_code == 201, created.text
    _cloud_validate(cloud_spec, created)
    done = bob.post(f"{url}/build", json={**first, "state": "SUCCESSFUL", "description": "42 passed"}, timeout=10)
    assert done.status_code == 201 and done.json()["state"] == "SUCCESSFUL"
    listed = bob.get(url, timeout=10)
    _cloud_validate(cloud_spec, listed)
    assert [(s["key"], s["state"]) for s in listed.json()["values"]] == [("ci", "SUCCESSFUL")]
    one = bob.get(f"{url}/build/ci", timeout=10)
    _cloud_validate(cloud_spec, one)
    assert one.json()["description"] == "42 passed"

    sent = _deliveries(emu)
    assert [d["event_key"] for d in sent] == ["repo:commit_status_created", "repo:commit_status_updated"]
    for delivery in sent:
        assert_same_structure(delivery["payload"], _fixture("cloud", delivery["event_key"]))
        assert delivery["payload"]["commit_status"]["links"]["commit"]["href"].endswith(head)


def test_cloud_status_refusals_are_worded_as_bitbucket_words_them(emu):
    bob = _cloud(emu)
    url = f"{emu.cloud_url}{CLOUD_API}/commit/{_head(emu, 'cloud', 'acme/web-app')}/statuses/build"
    long_key = bob.post(url, json={"key": "k" * 41, "state": "FAILED", "url": "https://ci.example/"}, timeout=10)
    assert long_key.status_code == 400
    assert long_key.json()["error"]["message"] == "key: Ensure this value has at most 40 characters (it has 41)."
    no_url = bob.post(url, json={"key": "ci", "state": "FAILED"}, timeout=10)
    assert no_url.status_code == 400 and no_url.json()["error"]["fields"] == {"url": ["This field is required."]}
    bad_url = bob.post(url, json={"key": "ci", "state": "FAILED", "url": "not a url"}, timeout=10)
    assert bad_url.json()["error"]["fields"] == {"url": ["Enter a valid URL."]}
    unknown = bob.post(
        url.replace(_head(emu, "cloud", "acme/web-app"), "f" * 40),
        json={"key": "ci", "state": "FAILED", "url": "https://ci.example/"},
        timeout=10,
    )
    assert unknown.status_code == 404
    assert emu.backend.get_repo("cloud", "acme", "web-app").statuses == {}


def test_dc_build_status_is_stored_updated_listed_and_fires_nothing(emu, receiver, dc_spec):
    _hook(emu, "datacenter", receiver.url, ["repo:refs_changed", "pr:opened"], "projects/PLAT/repos/core")
    bob = _dc(emu, scope="REPO_READ")
    head = _head(emu, "datacenter", "PLAT/core")
    url = f"{emu.dc_url}{DC_API}/commits/{head}/builds"
    body = {"key": "ci", "state": "INPROGRESS", "url": "https://ci.example/1", "ref": "refs/heads/main"}
    assert bob.post(url, json=body, timeout=10).status_code == 204
    assert bob.post(url, json={**body, "state": "SUCCESSFUL"}, timeout=10).status_code == 204
    one = bob.get(url, params={"key": "ci"}, timeout=10)
    validate(dc_spec, one, flavor="datacenter")
    assert one.json()["state"] == "SUCCESSFUL" and one.json()["ref"] == "refs/heads/main"
    listed = bob.get(f"{emu.dc_url}/rest/build-status/1.0/commits/{head}", timeout=10)
    validate(dc_spec, listed, flavor="datacenter", path=f"/rest/build-status/latest/commits/{head}")
    assert [(s["key"], s["state"]) for s in listed.json()["values"]] == [("ci", "SUCCESSFUL")]
    too_long = bob.post(url, json={**body, "url": "https://ci.example/" + "x" * 450}, timeout=10)
    assert too_long.status_code == 400 and too_long.json()["errors"][0]["context"] == "url"
    short = bob.post(url.replace(head, head[:12]), json=body, timeout=10)
    assert short.status_code == 400
    assert _deliveries(emu) == []  # Data Center has no webhook for build statuses
    assert bob.delete(url, params={"key": "ci"}, timeout=10).status_code == 401  # REPO_ADMIN only


# ------------------------------------------------------------------------------------------- comments


def test_cloud_comments_thread_inline_edit_delete_with_their_webhooks(emu, receiver, cloud_spec):
    _hook(
        emu,
        "cloud",
        receiver.url,
        ["pullrequest:comment_created", "pullrequest:comment_updated", "pullrequest:comment_deleted"],
        "acme/web-app",
    )
    pr = _open_pr(emu, "cloud", "acme/web-app", "feature/0002")
    bob = _cloud(emu)
    url = f"{emu.cloud_url}{CLOUD_API}/pullrequests/{pr}/comments"
    top = bob.post(url, json={"content": {"raw": "general"}}, timeout=10)
    assert top.status_code == 201, top.text
    _cloud_validate(cloud_spec, top)
    inline = bob.post(
        url, json={"content": {"raw": "on a line"}, "inline": {"path": "notes/feature-0002.md", "to": 1}}, timeout=10
    )
    reply = bob.post(url, json={"content": {"raw": "reply"}, "parent": {"id": inline.json()["id"]}}, timeout=10)
    assert reply.json()["parent"]["id"] == inline.json()["id"]
    assert reply.json()["inline"]["path"] == "notes/feature-0002.md"  # a reply sits where its parent does
    edited = bob.put(f"{url}/{top.json()['id']}", json={"content": {"raw": "general, edited"}}, timeout=10)
    assert edited.status_code == 200 and edited.json()["content"]["raw"] == "general, edited"
    _cloud_validate(cloud_spec, edited)
    carol = _cloud(emu, "carol")
    assert carol.put(f"{url}/{top.json()['id']}", json={"content": {"raw": "hijack"}}, timeout=10).status_code == 403
    assert bob.delete(f"{url}/{reply.json()['id']}", timeout=10).status_code == 204
    listed = bob.get(url, timeout=10)
    values = listed.json()["values"]
    _cloud_validate(cloud_spec, listed)  # (drops the nulls it validates around)
    assert [(c["content"]["raw"], c["deleted"]) for c in values] == [
        ("general, edited", False),
        ("on a line", False),
        ("reply", True),  # Cloud keeps a deleted comment, marked
    ]
    assert values[1]["inline"] == {"from": None, "to": 1, "path": "notes/feature-0002.md"}

    sent = _deliveries(emu)
    assert [d["event_key"] for d in sent] == [
        "pullrequest:comment_created",
        "pullrequest:comment_created",
        "pullrequest:comment_created",
        "pullrequest:comment_updated",
        "pullrequest:comment_deleted",
    ]
    for delivery in sent[2:]:  # the fixtures are threaded inline replies
        expected = _fixture("cloud", delivery["event_key"])
        if delivery["event_key"] == "pullrequest:comment_updated":
            expected = {
                **expected,
                "comment": {k: v for k, v in expected["comment"].items() if k not in ("parent", "inline")},
            }
        assert_same_structure(delivery["payload"], expected)


def test_dc_comments_need_the_version_keep_threads_and_vanish_when_deleted(emu, receiver, dc_spec):
    repo = "~ALICE/dotfiles"  # the real payloads come from a personal repository
    control(emu, "PUT", f"datacenter/repos/{repo}/permissions", json={"bob": "write"})
    _hook(
        emu,
        "datacenter",
        receiver.url,
        ["pr:comment:added", "pr:comment:edited", "pr:comment:deleted"],
        "users/alice/repos/dotfiles",
    )
    control(emu, "POST", f"datacenter/repos/{repo}/branches", json={"name": "feature/notes"})
    pr = _open_pr(emu, "datacenter", repo, "feature/notes")
    bob = _dc(emu)
    url = f"{emu.dc_url}/rest/api/1.0/projects/~ALICE/repos/dotfiles/pull-requests/{pr}/comments"
    top = bob.post(url, json={"text": "general"}, timeout=10)
    assert top.status_code == 201, top.text
    validate(dc_spec, top, flavor="datacenter")
    anchor = {"path": "CHANGES.md", "line": 1, "lineType": "ADDED", "fileType": "TO", "diffType": "EFFECTIVE"}
    inline = bob.post(url, json={"text": "on a line", "anchor": anchor}, timeout=10).json()
    reply = bob.post(url, json={"text": "reply", "parent": {"id": inline["id"]}}, timeout=10).json()
    item = f"{url}/{top.json()['id']}"
    stale = bob.put(item, json={"text": "edited", "version": 5}, timeout=10)
    assert stale.status_code == 409
    edited = bob.put(item, json={"text": "edited", "version": 0}, timeout=10)
    assert edited.status_code == 200 and edited.json()["version"] == 1
    validate(dc_spec, edited, flavor="datacenter")
    assert bob.delete(f"{url}/{inline['id']}", params={"version": 0}, timeout=10).status_code == 409  # has a reply
    assert bob.delete(f"{url}/{reply['id']}", params={"version": 0}, timeout=10).status_code == 204
    assert bob.get(f"{url}/{reply['id']}", timeout=10).status_code == 404
    too_long = bob.post(url, json={"text": "x" * 32768}, timeout=10)
    assert too_long.status_code == 400
    assert too_long.json()["errors"][0]["message"] == "Please enter a non-empty value less than 32768 characters"
    assert bob.post(url, json={"text": "x" * 32767}, timeout=10).status_code == 201
    assert bob.post(url, json={"text": "\U0001f600" * 16384}, timeout=10).status_code == 400  # Java counts 2 each
    assert bob.get(url, timeout=10).status_code == 400  # `path` is required
    on_file = bob.get(url, params={"path": "CHANGES.md"}, timeout=10)
    validate(dc_spec, on_file, flavor="datacenter")
    assert [c["text"] for c in on_file.json()["values"]] == ["on a line"]

    sent = _deliveries(emu)
    keys = [d["event_key"] for d in sent]
    assert keys == ["pr:comment:added"] * 3 + ["pr:comment:edited", "pr:comment:deleted", "pr:comment:added"]
    assert sent[3]["payload"]["previousComment"] == "general"
    assert sent[4]["payload"]["commentParentId"] == inline["id"]
    for delivery in (sent[2], sent[3], sent[4]):  # a reply, an edit, a deleted reply: as the fixtures are
        payload = delivery["payload"]
        payload["comment"].pop("anchor", None)  # replies on a line carry its anchor; the fixtures are general
        assert_same_structure(payload, _fixture("datacenter", delivery["event_key"]))


# ------------------------------------------------------------------------------------------- reviews


def test_cloud_review_states_fire_their_events_and_show_on_the_pull_request(emu, receiver, cloud_spec):
    events = [
        "pullrequest:approved",
        "pullrequest:unapproved",
        "pullrequest:changes_request_created",
        "pullrequest:changes_request_removed",
    ]
    _hook(emu, "cloud", receiver.url, events, "acme/web-app")
    pr = _open_pr(emu, "cloud", "acme/web-app", "feature/0003", reviewers=("bob",))
    bob = _cloud(emu)
    base = f"{emu.cloud_url}{CLOUD_API}/pullrequests/{pr}"
    approved = bob.post(f"{base}/approve", timeout=10)
    assert approved.status_code == 200
    _cloud_validate(cloud_spec, approved)
    assert approved.json()["state"] == "approved" and approved.json()["role"] == "REVIEWER"
    assert bob.post(f"{base}/approve", timeout=10).status_code == 200  # already approved: nothing fires
    assert bob.delete(f"{base}/approve", timeout=10).status_code == 204
    changes = bob.post(f"{base}/request-changes", timeout=10)
    assert changes.json()["state"] == "changes_requested"
    shown = bob.get(base, timeout=10).json()
    assert [(p["user"]["nickname"], p["state"]) for p in shown["participants"]] == [("bob", "changes_requested")]
    assert bob.delete(f"{base}/request-changes", timeout=10).status_code == 204
    carol = _cloud(emu, "carol")
    assert carol.post(f"{base}/approve", timeout=10).json()["role"] == "PARTICIPANT"  # not asked to review
    own = _cloud(emu, "alice").post(f"{base}/approve", timeout=10)
    assert own.status_code == 400  # the author cannot review
    read_only = _cloud(emu, "bob", ["repository", "pullrequest"])
    refused = read_only.post(f"{base}/approve", timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["detail"]["required"] == ["pullrequest:write"]

    keys = [d["event_key"] for d in _deliveries(emu)]
    assert keys == [
        "pullrequest:approved",
        "pullrequest:unapproved",
        "pullrequest:changes_request_created",
        "pullrequest:changes_request_removed",
        "pullrequest:approved",
    ]
    for delivery in _deliveries(emu):
        if delivery["event_key"] in ("pullrequest:approved", "pullrequest:unapproved"):
            assert_same_structure(delivery["payload"], _fixture("cloud", delivery["event_key"]))
        else:  # no shared sample: the approval payload under `changes_request`
            payload = dict(delivery["payload"])
            payload["approval"] = payload.pop("changes_request")
            assert_same_structure(payload, _fixture("cloud", "pullrequest:approved"))


def test_dc_participant_status_fires_approved_needs_work_unapproved(emu, receiver, dc_spec):
    repo = "~ALICE/dotfiles"
    control(emu, "PUT", f"datacenter/repos/{repo}/permissions", json={"bob": "read"})
    events = ["pr:reviewer:approved", "pr:reviewer:unapproved", "pr:reviewer:needs_work"]
    _hook(emu, "datacenter", receiver.url, events, "users/alice/repos/dotfiles")
    control(emu, "POST", f"datacenter/repos/{repo}/branches", json={"name": "feature/review"})
    pr = _open_pr(emu, "datacenter", repo, "feature/review", reviewers=("bob",))
    bob = _dc(emu, scope="REPO_READ")
    url = f"{emu.dc_url}/rest/api/1.0/projects/~ALICE/repos/dotfiles/pull-requests/{pr}/participants/bob"
    for status in ("NEEDS_WORK", "APPROVED", "UNAPPROVED"):
        resp = bob.put(url, json={"status": status}, timeout=10)
        assert resp.status_code == 200, resp.text
        validate(dc_spec, resp, flavor="datacenter")
        assert resp.json()["status"] == status
    assert bob.put(url.replace("/bob", "/alice"), json={"status": "APPROVED"}, timeout=10).status_code == 400
    stale = bob.put(url, json={"status": "APPROVED", "lastReviewedCommit": "0" * 40}, timeout=10)
    assert stale.status_code == 409

    sent = _deliveries(emu)
    assert [(d["event_key"], d["payload"]["previousStatus"]) for d in sent] == [
        ("pr:reviewer:needs_work", "UNAPPROVED"),
        ("pr:reviewer:approved", "NEEDS_WORK"),
        ("pr:reviewer:unapproved", "APPROVED"),
    ]
    for delivery in sent:
        assert_same_structure(delivery["payload"], _fixture("datacenter", delivery["event_key"]))


# ------------------------------------------------------------------------------------------- merge, decline


def _conflicting_pr(emu, flavor: str, repo: str) -> int:
    """A pull request whose source and destination changed the same line of README.md."""
    control(
        emu, "POST", f"{flavor}/repos/{repo}/push", json={"branch": "feature/clash", "files": {"README.md": "ours\n"}}
    )
    control(emu, "POST", f"{flavor}/repos/{repo}/push", json={"branch": "main", "files": {"README.md": "theirs\n"}})
    return _open_pr(emu, flavor, repo, "feature/clash")


def test_cloud_merge_strategies_conflicts_and_permission(emu, cloud_spec):
    bob = _cloud(emu)
    api = f"{emu.cloud_url}{CLOUD_API}/pullrequests"
    squash = _open_pr(emu, "cloud", "acme/web-app", "feature/0004")
    merged = bob.post(f"{api}/{squash}/merge", json={"merge_strategy": "squash", "message": "One commit"}, timeout=10)
    assert merged.status_code == 200, merged.text
    _cloud_validate(cloud_spec, merged)
    head = emu.backend.get_repo("cloud", "acme", "web-app").git.commit(_head(emu, "cloud", "acme/web-app"))
    assert len(head.parents) == 1 and head.message == b"One commit\n"
    again = bob.post(f"{api}/{squash}/merge", json={}, timeout=10)
    assert again.status_code == 400 and "already merged" in again.json()["error"]["message"]

    clash = _conflicting_pr(emu, "cloud", "acme/web-app")
    conflict = bob.post(f"{api}/{clash}/merge", json={}, timeout=10)
    assert conflict.status_code == 400
    assert conflict.json()["error"]["message"] == "You can't merge until you resolve all merge conflicts."
    assert emu.backend.get_repo("cloud", "acme", "web-app").pull_requests[clash].state == "OPEN"

    other = _open_pr(emu, "cloud", "acme/web-app", "feature/0005")
    carol = _cloud(emu, "carol")  # read access only
    refused = carol.post(f"{api}/{other}/merge", json={}, timeout=10)
    assert refused.status_code == 403 and "write" in refused.json()["error"]["message"]
    declined = bob.post(f"{api}/{other}/decline", timeout=10)
    assert declined.status_code == 200 and declined.json()["state"] == "DECLINED"
    _cloud_validate(cloud_spec, declined)


def test_dc_merge_needs_the_version_and_write_and_is_vetoed_on_conflicts(emu, dc_spec):
    bob = _dc(emu)
    api = f"{emu.dc_url}{DC_API}/pull-requests"
    pr = _open_pr(emu, "datacenter", "PLAT/core", "feature/0004")
    can = bob.get(f"{api}/{pr}/merge", timeout=10)
    validate(dc_spec, can, flavor="datacenter")
    assert can.json()["canMerge"] is True
    version = bob.get(f"{api}/{pr}", timeout=10).json()["version"]
    stale = bob.post(f"{api}/{pr}/merge", params={"version": version + 1}, json={}, timeout=10)
    assert stale.status_code == 409 and stale.json()["errors"][0]["exceptionName"].endswith("OutOfDateException")
    merged = bob.post(f"{api}/{pr}/merge", params={"version": version}, json={"strategyId": "no-ff"}, timeout=10)
    assert merged.status_code == 200, merged.text
    validate(dc_spec, merged, flavor="datacenter")
    assert merged.json()["state"] == "MERGED"

    clash = _conflicting_pr(emu, "datacenter", "PLAT/core")
    assert bob.get(f"{api}/{clash}/merge", timeout=10).json()["conflicted"] is True
    vetoed = bob.post(f"{api}/{clash}/merge", json={}, timeout=10)
    assert vetoed.status_code == 409
    validate(dc_spec, vetoed, flavor="datacenter")
    error = vetoed.json()["errors"][0]
    assert error["conflicted"] is True and error["exceptionName"].endswith("PullRequestMergeVetoedException")

    carol = _dc(emu, "carol", "REPO_ADMIN")  # REPO_READ on the project
    refused = carol.post(f"{api}/{clash}/merge", json={}, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["exceptionName"] == "com.atlassian.bitbucket.AuthorisationException"
    version = bob.get(f"{api}/{clash}", timeout=10).json()["version"]
    declined = bob.post(
        f"{api}/{clash}/decline", params={"version": version}, json={"comment": "Superseded"}, timeout=10
    )
    assert declined.status_code == 200 and declined.json()["state"] == "DECLINED"
    validate(dc_spec, declined, flavor="datacenter")


# ------------------------------------------------------------------------------------------- activity


def test_activity_lists_comments_reviews_and_state_newest_first(emu, cloud_spec, dc_spec):
    cloud_pr = _open_pr(emu, "cloud", "acme/web-app", "feature/0006", reviewers=("bob",))
    bob = _cloud(emu)
    base = f"{emu.cloud_url}{CLOUD_API}/pullrequests/{cloud_pr}"
    bob.post(f"{base}/comments", json={"content": {"raw": "a note"}}, timeout=10)
    bob.post(f"{base}/approve", timeout=10)
    activity = bob.get(f"{base}/activity", timeout=10)
    assert activity.status_code == 200
    validate(cloud_spec, activity, flavor="cloud")
    kinds = [next(k for k in v if k != "pull_request") for v in activity.json()["values"]]
    assert kinds == ["approval", "comment", "update"]
    bob.delete(f"{base}/approve", timeout=10)  # a withdrawn approval leaves the log
    kinds = [
        next(k for k in v if k != "pull_request") for v in bob.get(f"{base}/activity", timeout=10).json()["values"]
    ]
    assert kinds == ["comment", "update"]

    dc_pr = _open_pr(emu, "datacenter", "PLAT/core", "feature/0006", reviewers=("bob",))
    dc = _dc(emu)
    api = f"{emu.dc_url}{DC_API}/pull-requests/{dc_pr}"
    root = dc.post(f"{api}/comments", json={"text": "root"}, timeout=10).json()
    dc.post(f"{api}/comments", json={"text": "reply", "parent": {"id": root["id"]}}, timeout=10)
    dc.put(f"{api}/participants/bob", json={"status": "NEEDS_WORK"}, timeout=10)
    listed = dc.get(f"{api}/activities", timeout=10)
    validate(dc_spec, listed, flavor="datacenter")
    values = listed.json()["values"]
    assert [v["action"] for v in values] == ["REVIEWED", "COMMENTED", "OPENED"]
    thread = values[1]["comment"]
    assert thread["text"] == "root" and [c["text"] for c in thread["comments"]] == ["reply"]


def test_the_default_seed_carries_review_data(emu):
    """README "Seeded review data": by pull request number n, n % 4 == 1 approved with a comment, 2 changes
    requested with an inline thread and an edited comment, 3 a comment and a deleted one, 0 nothing."""
    cloud = emu.backend.get_repo("cloud", "acme", "web-app")
    dc = emu.backend.get_repo("datacenter", "PLAT", "core")
    for repo in (cloud, dc):
        for n, pr in repo.pull_requests.items():
            states = {r.user: r.status for r in pr.reviewers}
            (reviewer,) = states
            kind = n % 4
            assert states[reviewer] == {1: "APPROVED", 2: "NEEDS_WORK"}.get(kind, "UNAPPROVED"), (repo.full_name, n)
            live = [c for c in pr.comments if not c.deleted]
            assert len(live) == {0: 0, 1: 1, 2: 3, 3: 1}[kind]
            if kind == 2:
                inline, reply, edited = live
                assert inline.inline and inline.inline["to"] == 1 and reply.parent == inline.id
                assert edited.version == 1 and edited.updated_on > edited.created_on
            if kind == 3:  # Cloud keeps the deleted one, marked; Data Center removed it
                assert len(pr.comments) == (2 if repo is cloud else 1)
    bob = _cloud(emu)
    listed = bob.get(f"{emu.cloud_url}{CLOUD_API}/pullrequests/3/comments", timeout=10).json()["values"]
    assert [c["deleted"] for c in listed] == [False, True]
    dc = _dc(emu)
    acts = dc.get(f"{emu.dc_url}{DC_API}/pull-requests/2/activities", timeout=10).json()["values"]
    assert [a["action"] for a in acts] == ["MERGED", "REVIEWED", "COMMENTED", "COMMENTED", "OPENED"]
    assert json.dumps(acts).count('"text": "Explained in the next commit."') == 1  # the reply, nested once


def test_dc_refuses_a_hook_on_the_documented_but_unknown_keys(emu):
    token = dc_login(emu, "alice", "REPO_ADMIN")
    for key in ("pr:reviewer:changes_requested", "pr:to_ref_updated"):
        body = {"name": "t", "url": "http://127.0.0.1:9/h", "events": ["pr:opened", key]}
        resp = requests.post(f"{emu.dc_url}{DC_API}/webhooks", json=body, headers=bearer(token), timeout=10)
        assert resp.status_code == 400 and resp.json()["errors"][0]["message"] == f"the event {key} is unknown"
    assert emu.backend.get_repo("datacenter", "PLAT", "core").hooks == {}


# ------------------------------------------------------------------------------------------- pull request commits


def test_pull_request_commits_are_what_the_source_brings_newest_first(emu, cloud_spec, dc_spec):
    for flavor, repo in (("cloud", "acme/web-app"), ("datacenter", "PLAT/core")):
        path = f"{flavor}/repos/{repo}"
        control(emu, "POST", f"{path}/branches", json={"name": "topic/commits", "from": "main"})
        control(emu, "POST", f"{path}/push", json={"branch": "topic/commits", "commits": ["one", "two"]})
        number = _open_pr(emu, flavor, repo, "topic/commits", reviewers=("bob",))
        head = _head(emu, flavor, repo, "topic/commits")
        if flavor == "cloud":
            listed = _cloud(emu).get(f"{emu.cloud_url}{CLOUD_API}/pullrequests/{number}/commits", timeout=10)
            _cloud_validate(cloud_spec, listed)
            values = listed.json()["values"]
            assert values[0]["hash"] == head and len(values) == 2
            assert [c["message"] for c in values] == ["two\n", "one\n"]
            assert values[0]["author"]["user"]["nickname"] == "alice"
        else:
            listed = _dc(emu).get(f"{emu.dc_url}{DC_API}/pull-requests/{number}/commits", timeout=10)
            validate(dc_spec, listed, flavor="datacenter")
            values = listed.json()["values"]
            assert values[0]["id"] == head and [c["message"] for c in values] == ["two", "one"]
            assert values[0]["author"]["name"] == "alice"  # a known author is rendered as the user


def test_cloud_lists_no_commits_once_the_source_branch_is_gone_and_data_center_keeps_them(emu):
    """Seeded merged pull requests come from branches deleted since (README): Cloud documents an empty list."""
    cloud_pr = emu.backend.get_repo("cloud", "acme", "web-app").pull_requests[1]
    assert (
        cloud_pr.state == "MERGED"
        and cloud_pr.source_branch not in emu.backend.get_repo("cloud", "acme", "web-app").branches
    )
    listed = _cloud(emu).get(f"{emu.cloud_url}{CLOUD_API}/pullrequests/1/commits", timeout=10).json()
    assert listed["values"] == [] and listed["size"] == 0
    dc = _dc(emu).get(f"{emu.dc_url}{DC_API}/pull-requests/1/commits", timeout=10).json()
    assert [c["message"] for c in dc["values"]] == ["Change #1"]


# ------------------------------------------------------------------------------------------- issue comments


def test_cloud_issue_comments_are_seeded_and_listed_oldest_first(emu, cloud_spec):
    """Issue i has i % 3 comments, by the users after its reporter (README "Seeded review data")."""
    repo = emu.backend.get_repo("cloud", "acme", "web-app")
    assert [len(repo.issues[i].comments) for i in (1, 2, 3, 4, 5)] == [1, 2, 0, 1, 2]
    state = control(emu, "GET", "state").json()
    web = next(r for r in state["repositories"] if r["full_name"] == "acme/web-app")
    assert web["issue_comments"] == sum(i % 3 for i in range(1, 13)) == 12
    session = _cloud(emu)
    listed = session.get(f"{emu.cloud_url}{CLOUD_API}/issues/5/comments", timeout=10)
    _cloud_validate(cloud_spec, listed)
    values = listed.json()["values"]
    assert [c["content"]["raw"] for c in values] == ["Comment 1 on issue 5.", "Comment 2 on issue 5."]
    assert [c["user"]["nickname"] for c in values] == ["alice", "bob"]  # issue 5's reporter is carol
    assert values[0]["issue"]["id"] == 5 and values[0]["type"] == "issue_comment"
    one = session.get(values[1]["links"]["self"]["href"], timeout=10)
    _cloud_validate(cloud_spec, one)
    assert one.json()["id"] == values[1]["id"]
    assert session.get(f"{emu.cloud_url}{CLOUD_API}/issues/99/comments", timeout=10).status_code == 404
    no_issue_scope = requests.Session()
    no_issue_scope.headers.update(bearer(cloud_login(emu, "bob", ["account", "repository", "pullrequest"])))
    assert no_issue_scope.get(f"{emu.cloud_url}{CLOUD_API}/issues/5/comments", timeout=10).status_code in (401, 403)
