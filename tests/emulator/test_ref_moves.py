"""Ref moves as Bitbucket reports them: a pull-request merge moves the target branch and fires the push event of
each flavour (Cloud `repo:push`, Data Center `repo:refs_changed`); `push` with `"to"` moves a branch to an
existing commit (a rollback with `"force": true`, a fast-forward without)."""

from __future__ import annotations

import pytest
import requests

from .conftest import bearer, cloud_login, control, dc_login
from .test_delivery_faults import cloud_hook, dc_hook, log, push
from .test_webhooks import _fixture, assert_same_structure

# The real DC payloads come from a personal repository, so the structure comparison uses one too.
REPOS = {"cloud": "acme/api-service", "datacenter": "~ALICE/dotfiles"}
PUSH_KEY = {"cloud": "repo:push", "datacenter": "repo:refs_changed"}
MERGED_KEY = {"cloud": "pullrequest:fulfilled", "datacenter": "pr:merged"}
SOURCE_KEY = {"cloud": "pullrequest:push", "datacenter": "pr:from_ref_updated"}


def _hook(emu, receiver, flavor: str) -> None:
    if flavor == "cloud":
        events = ("repo:push", "pullrequest:fulfilled", "pullrequest:push")
        cloud_hook(emu, cloud_login(emu), receiver.url, REPOS[flavor], events)
    else:
        events = ("repo:refs_changed", "pr:merged", "pr:from_ref_updated")
        dc_hook(emu, dc_login(emu), receiver.url, REPOS[flavor], events)


def _moves(flavor: str, delivery: dict) -> list[tuple[str, str | None, str | None]]:
    """(branch, old head, new head) of each ref change in a push delivery, as a consumer reads it."""
    payload = delivery["payload"]
    if flavor == "cloud":
        return [
            (
                (c["new"] or c["old"])["name"],
                c["old"]["target"]["hash"] if c["old"] else None,
                c["new"]["target"]["hash"] if c["new"] else None,
            )
            for c in payload["push"]["changes"]
        ]
    zero = "0" * 40
    return [
        (c["ref"]["displayId"], None if c["fromHash"] == zero else c["fromHash"], c["toHash"])
        for c in payload["changes"]
    ]


def _rest_head(emu, flavor: str, branch: str) -> str:
    if flavor == "cloud":
        url = f"{emu.cloud_url}/2.0/repositories/{REPOS[flavor]}/refs/branches/{branch}"
        return requests.get(url, headers=bearer(cloud_login(emu)), timeout=10).json()["target"]["hash"]
    project, slug = REPOS[flavor].split("/")
    url = f"{emu.dc_url}/rest/api/1.0/projects/{project}/repos/{slug}/branches"
    values = requests.get(url, params={"filterText": branch}, headers=bearer(dc_login(emu)), timeout=10).json()
    return next(v["latestCommit"] for v in values["values"] if v["displayId"] == branch)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_merge_moves_the_target_branch_and_fires_the_push_event(emu, receiver, flavor):
    _hook(emu, receiver, flavor)
    repo = f"{flavor}/repos/{REPOS[flavor]}"
    main_before = _rest_head(emu, flavor, "main")
    pr = control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/merge-me"}).json()
    control(emu, "DELETE", "deliveries")

    merged = control(emu, "POST", f"{repo}/pullrequests/{pr['id']}/merge").json()
    deliveries = log(emu)
    assert [d["event_key"] for d in deliveries] == [MERGED_KEY[flavor], PUSH_KEY[flavor]]
    assert {d["state"] for d in deliveries} == {"delivered"}
    merge_commit = _rest_head(emu, flavor, "main")
    assert merge_commit != main_before
    short = merged["merge_commit"]["hash"] if flavor == "cloud" else merged["properties"]["mergeCommit"]["id"]
    assert merge_commit.startswith(short)
    assert _moves(flavor, deliveries[1]) == [("main", main_before, merge_commit)]
    push_payload = deliveries[1]["payload"]
    if flavor == "cloud":
        (change,) = push_payload["push"]["changes"]
        assert change["forced"] is False and change["created"] is False
        assert [c["hash"] for c in change["commits"]] == [merge_commit]
        assert change["new"]["target"]["parents"][0]["hash"] == main_before
    else:
        assert push_payload["changes"][0]["type"] == "UPDATE"
    assert_same_structure(push_payload, _fixture(flavor, PUSH_KEY[flavor]))


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_silent_merge_moves_the_branch_without_any_delivery(emu, receiver, flavor):
    _hook(emu, receiver, flavor)
    repo = f"{flavor}/repos/{REPOS[flavor]}"
    pr = control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/quiet"}).json()
    before = _rest_head(emu, flavor, "main")
    control(emu, "DELETE", "deliveries")
    assert control(emu, "POST", f"{repo}/pullrequests/{pr['id']}/merge", json={"deliver": False}).ok
    silent = log(emu)
    assert [d["event_key"] for d in silent] == [MERGED_KEY[flavor], PUSH_KEY[flavor]]
    assert {d["state"] for d in silent} == {"dropped"}
    assert _rest_head(emu, flavor, "main") != before


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_rollback_and_redeploy_move_main_between_existing_commits(emu, receiver, flavor):
    _hook(emu, receiver, flavor)
    x = push(emu, flavor, REPOS[flavor])["head"]
    y = push(emu, flavor, REPOS[flavor])["head"]
    control(emu, "DELETE", "deliveries")

    rollback = push(emu, flavor, REPOS[flavor], to=x, force=True)
    assert rollback == {"branch": "main", "commits": [], "head": x}
    assert _rest_head(emu, flavor, "main") == x
    redeploy = push(emu, flavor, REPOS[flavor], to=y)  # a fast-forward needs no force
    assert redeploy["head"] == y and _rest_head(emu, flavor, "main") == y

    deliveries = log(emu)
    assert [d["event_key"] for d in deliveries] == [PUSH_KEY[flavor]] * 2
    assert [_moves(flavor, d) for d in deliveries] == [[("main", y, x)], [("main", x, y)]]
    if flavor == "cloud":
        changes = [d["payload"]["push"]["changes"][0] for d in deliveries]
        assert [(c["forced"], c["commits"]) for c in changes] == [(True, []), (False, [])]
    else:
        assert [d["payload"]["changes"][0]["type"] for d in deliveries] == ["UPDATE", "UPDATE"]


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_push_to_refuses_a_rollback_without_force_and_unknown_commits(emu, receiver, flavor):
    _hook(emu, receiver, flavor)
    repo = f"{flavor}/repos/{REPOS[flavor]}"
    x = push(emu, flavor, REPOS[flavor])["head"]
    y = push(emu, flavor, REPOS[flavor])["head"]
    control(emu, "DELETE", "deliveries")

    behind = control(emu, "POST", f"{repo}/push", json={"branch": "main", "to": x})
    assert behind.status_code == 400 and "force" in behind.json()["error"]
    unknown = control(emu, "POST", f"{repo}/push", json={"branch": "main", "to": "f" * 40, "force": True})
    assert unknown.status_code == 400 and "does not exist" in unknown.json()["error"]
    both = control(emu, "POST", f"{repo}/push", json={"branch": "main", "to": x, "commits": 2})
    assert both.status_code == 400
    assert _rest_head(emu, flavor, "main") == y and log(emu) == []  # nothing moved, nothing fired
    # Moving a branch to where it is already is no change: Bitbucket fires nothing.
    assert push(emu, flavor, REPOS[flavor], to=y)["head"] == y
    assert log(emu) == []


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_moving_a_pull_requests_source_branch_back_updates_the_pull_request(emu, receiver, flavor):
    _hook(emu, receiver, flavor)
    repo = f"{flavor}/repos/{REPOS[flavor]}"
    first = push(emu, flavor, REPOS[flavor], branch="feature/pr")["head"]
    push(emu, flavor, REPOS[flavor], branch="feature/pr")
    pr = control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/pr"}).json()
    control(emu, "DELETE", "deliveries")

    push(emu, flavor, REPOS[flavor], branch="feature/pr", to=first, force=True)
    assert [d["event_key"] for d in log(emu)] == [PUSH_KEY[flavor], SOURCE_KEY[flavor]]
    if flavor == "cloud":
        url = f"{emu.cloud_url}/2.0/repositories/{REPOS[flavor]}/pullrequests/{pr['id']}"
        source = requests.get(url, headers=bearer(cloud_login(emu)), timeout=10).json()["source"]
        assert first.startswith(source["commit"]["hash"])
    else:
        project, slug = REPOS[flavor].split("/")
        url = f"{emu.dc_url}/rest/api/1.0/projects/{project}/repos/{slug}/pull-requests/{pr['id']}"
        assert requests.get(url, headers=bearer(dc_login(emu)), timeout=10).json()["fromRef"]["latestCommit"] == first
