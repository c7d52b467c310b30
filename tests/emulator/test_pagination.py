"""Cloud next-link pagination, q/sort/fields/role/state; DC start/limit paging."""

from __future__ import annotations

import requests

from .conftest import bearer, cloud_login, control, dc_login


def _get(url: str, token: str, **params: object) -> requests.Response:
    return requests.get(url, headers=bearer(token), params=params, timeout=10)  # type: ignore[arg-type]


def test_cloud_branches_follow_next_links(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/repositories/acme/web-app/refs/branches?pagelen=100"
    names, pages = [], 0
    while url:
        body = requests.get(url, headers=bearer(token), timeout=10).json()
        names += [b["name"] for b in body["values"]]
        pages += 1
        url = body.get("next")
    assert pages == 2 and len(names) == len(set(names)) == 120
    assert names[:3] == ["feature/0001", "feature/0002", "feature/0003"]  # natural sort by name


def test_cloud_pagelen_is_clamped(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/repositories/acme/web-app/refs/branches"
    assert _get(url, token, pagelen=5).json()["pagelen"] == 10
    assert _get(url, token, pagelen=500).json()["pagelen"] == 100
    last = _get(url, token, pagelen=50, page=3).json()
    assert len(last["values"]) == 20 and "next" not in last and "previous" in last


def test_cloud_pullrequest_states(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/repositories/acme/web-app/pullrequests"
    assert _get(url, token).json()["size"] == 15  # OPEN by default
    both = requests.get(url + "?state=MERGED&state=DECLINED&pagelen=50", headers=bearer(token), timeout=10).json()
    assert both["size"] == 35 and {p["state"] for p in both["values"]} == {"MERGED", "DECLINED"}
    assert _get(url, token, state="BOGUS").status_code == 400


def test_cloud_q_sort_and_role(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    by_name = _get(url, token, q='name ~ "API"').json()
    assert [r["full_name"] for r in by_name["values"]] == ["acme/api-service"]
    by_full = _get(url, token, q='full_name ~ "acme/in" OR name = "web-app"', sort="-name").json()
    assert [r["name"] for r in by_full["values"]] == ["web-app", "infra"]
    assert _get(url, token, q="name ~ ").status_code == 400
    assert _get(url, token, role="owner").json()["size"] == 3
    carol = cloud_login(emu, user="carol")
    assert _get(url, carol, role="member").json()["size"] == 3
    assert _get(url, carol, role="contributor").json()["size"] == 0
    # globex: bob owns it, carol is no member and sees nothing private
    assert _get(f"{emu.cloud_url}/2.0/repositories/globex", carol).json()["size"] == 0


def test_cloud_fields_partial_responses(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    only = _get(url, token, fields="next,values.full_name", pagelen=10).json()
    assert set(only) == {"values"} and only["values"][0] == {"full_name": "acme/api-service"}
    slim = _get(url, token, fields="-values.links,-values.owner").json()
    assert "links" not in slim["values"][0] and "owner" not in slim["values"][0] and "pagelen" in slim
    prs = f"{emu.cloud_url}/2.0/repositories/acme/web-app/pullrequests"
    assert "reviewers" not in _get(prs, token).json()["values"][0]  # not in collections by default
    assert "reviewers" in _get(prs, token, fields="+values.reviewers").json()["values"][0]
    paged = _get(prs, token, fields="next,values.id", pagelen=10).json()
    assert set(paged) == {"next", "values"} and set(paged["values"][0]) == {"id"}
    assert "fields=" in paged["next"]


def test_dc_start_limit_paging(emu):
    token = dc_login(emu)
    url = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core/branches"
    start, names = 0, []
    while True:
        body = _get(url, token, start=start, limit=25).json()
        names += [b["displayId"] for b in body["values"]]
        if body["isLastPage"]:
            assert "nextPageStart" not in body
            break
        assert body["nextPageStart"] == start + 25 and body["limit"] == 25
        start = body["nextPageStart"]
    assert len(names) == len(set(names)) == 60 and names[0] == "main"  # default branch first
    capped = _get(url, token, limit=5000).json()
    assert capped["limit"] == 1000 and capped["isLastPage"] is True and capped["size"] == 60


def test_dc_pull_request_states_match_state_summary(emu):
    token = dc_login(emu)
    url = f"{emu.dc_url}/rest/api/latest/projects/PLAT/repos/core/pull-requests"
    summary = next(r for r in control(emu, "GET", "state").json()["repositories"] if r["full_name"] == "PLAT/core")
    assert _get(url, token).json()["size"] == summary["pull_requests"]["OPEN"]
    assert _get(url, token, state="ALL", limit=1000).json()["size"] == summary["pull_requests"]["total"]
    assert _get(url, token, state="MERGED", limit=1000).json()["size"] == summary["pull_requests"]["MERGED"]


def test_dc_repos_filters_and_permissions(emu):
    bob = dc_login(emu, user="bob", scope="REPO_READ")
    repos = _get(f"{emu.dc_url}/rest/api/1.0/repos", bob, limit=100).json()["values"]
    assert {f"{r['project']['key']}/{r['slug']}" for r in repos} == {
        "PLAT/core",
        "PLAT/tools",
        "WEB/site",
        "WEB/cms",
        "~BOB/scratch",
    }
    admin = _get(f"{emu.dc_url}/rest/api/1.0/repos", bob, permission="REPO_ADMIN").json()["values"]
    assert {r["slug"] for r in admin} == {"site", "cms", "scratch"}
    assert [p["key"] for p in _get(f"{emu.dc_url}/rest/api/1.0/projects", bob).json()["values"]] == [
        "PLAT",
        "WEB",
    ]
    # A REPO_READ token cannot manage webhooks even where the user is REPO_ADMIN.
    hooks = _get(f"{emu.dc_url}/rest/api/1.0/projects/WEB/repos/site/webhooks", bob)
    assert hooks.status_code == 401
