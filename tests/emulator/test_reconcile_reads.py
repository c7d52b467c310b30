"""The cheap reads a reconciler makes (only what the real APIs have): Cloud `fields=`, page caps, repeated
`state`, `sort=-updated_on`; DC `orderBy=MODIFICATION`, `limit` up to 1000, `state=ALL&order=NEWEST` with
`version`, `withProperties=false`; and request counts per repository to measure calls per repository."""

from __future__ import annotations

import requests

from .conftest import bearer, cloud_login, control, dc_login


def _get(url: str, token: str, **params: object) -> dict:
    resp = requests.get(url, headers=bearer(token), params=params, timeout=10)  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_cloud_pullrequests_newest_update_first_with_fields_and_a_50_cap(emu):
    token = cloud_login(emu)
    url = f"{emu.cloud_url}/2.0/repositories/acme/web-app/pullrequests"
    pr_id = min(v["id"] for v in _get(url, token, pagelen=50)["values"])  # the oldest open one
    assert control(emu, "POST", "cloud/repos/acme/web-app/pullrequests", json={"source": "feature/0100"}).ok  # 51
    assert control(emu, "POST", f"cloud/repos/acme/web-app/pullrequests/{pr_id}/update", json={"title": "x"}).ok
    body = _get(
        url,
        token,
        state=["OPEN", "MERGED", "DECLINED"],
        sort="-updated_on",
        pagelen=100,
        fields="next,pagelen,values.id,values.state,values.updated_on,values.source.commit.hash",
    )
    assert body["pagelen"] == 50  # bitbucket.org caps the pull-request list at 50
    assert len(body["values"]) == 50 and body["next"].count("state=") == 3
    first = body["values"][0]
    assert first["id"] == pr_id and set(first) == {"id", "state", "updated_on", "source"}
    assert set(first["source"]) == {"commit"}
    stamps = [v["updated_on"] for v in body["values"]]
    assert stamps == sorted(stamps, reverse=True)
    rest = requests.get(body["next"], headers=bearer(token), timeout=10).json()
    assert (
        len(rest["values"]) == 1
        and "next" not in rest
        and set(rest["values"][0]) == {"id", "state", "updated_on", "source"}
    )
    assert {v["state"] for v in body["values"] + rest["values"]} == {"OPEN", "MERGED", "DECLINED"}


def test_cloud_branches_and_tags_slim_pages_of_100_newest_first(emu):
    token = cloud_login(emu)
    head = control(emu, "POST", "cloud/repos/acme/web-app/push", json={"branch": "feature/0042"}).json()["head"]
    base = f"{emu.cloud_url}/2.0/repositories/acme/web-app/refs"
    branches = _get(
        f"{base}/branches", token, pagelen=100, sort="-target.date", fields="next,values.name,values.target.hash"
    )
    assert len(branches["values"]) == 100 and "next" in branches
    assert branches["values"][0] == {"name": "feature/0042", "target": {"hash": head}}
    tags = _get(f"{base}/tags", token, pagelen=100, fields="values.name,values.target.hash")
    assert len(tags["values"]) == 30 and set(tags) == {"values"}


def test_dc_refs_by_modification_with_the_largest_limit(emu):
    token = dc_login(emu)
    head = control(emu, "POST", "datacenter/repos/PLAT/core/push", json={"branch": "feature/0007"}).json()["head"]
    created = control(emu, "POST", "datacenter/repos/PLAT/core/tags", json={"name": "v9.0.0"}).json()
    base = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core"
    branches = _get(f"{base}/branches", token, orderBy="MODIFICATION", limit=5000)
    assert branches["limit"] == 1000 and branches["isLastPage"] is True and branches["size"] == 60
    assert (branches["values"][0]["displayId"], branches["values"][0]["latestCommit"]) == ("feature/0007", head)
    tags = _get(f"{base}/tags", token, orderBy="MODIFICATION", limit=1000)
    assert tags["values"][0]["displayId"] == "v9.0.0" and tags["values"][0]["latestCommit"] == created["target"]
    alphabetical = _get(f"{base}/branches", token, orderBy="ALPHABETICAL", limit=3)
    assert [b["displayId"] for b in alphabetical["values"]] == ["feature/0001", "feature/0002", "feature/0003"]


def test_dc_pull_requests_all_states_newest_first_with_versions(emu):
    token = dc_login(emu)
    url = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core/pull-requests"
    pr_id = min(v["id"] for v in _get(url, token, limit=100)["values"])  # the oldest open one
    before = _get(f"{url}/{pr_id}", token)["version"]
    assert control(emu, "POST", f"datacenter/repos/PLAT/core/pullrequests/{pr_id}/update", json={"title": "edited"}).ok
    listed = _get(url, token, state="ALL", order="NEWEST", limit=1000, withProperties="false")
    assert listed["size"] == 38 and listed["isLastPage"] is True
    first = listed["values"][0]
    assert (first["id"], first["version"], first["title"]) == (pr_id, before + 1, "edited")
    assert all("properties" not in v for v in listed["values"])
    stamps = [v["updatedDate"] for v in listed["values"]]
    assert stamps == sorted(stamps, reverse=True)
    oldest = _get(url, token, state="ALL", order="OLDEST", limit=1)
    assert oldest["values"][0]["id"] != pr_id and "properties" in oldest["values"][0]
    bad = requests.get(url, headers=bearer(token), params={"order": "SIDEWAYS"}, timeout=10)
    assert bad.status_code == 400


def test_request_counts_per_repository(emu):
    cloud = cloud_login(emu)
    dc = dc_login(emu)
    assert control(emu, "DELETE", "requests").status_code == 204
    _get(f"{emu.cloud_url}/2.0/repositories/acme/web-app/refs/branches", cloud)
    _get(f"{emu.cloud_url}/2.0/repositories/ACME/Web-App/pullrequests", cloud)
    _get(f"{emu.cloud_url}/2.0/repositories/acme/api-service", cloud)
    _get(f"{emu.cloud_url}/2.0/user", cloud)
    _get(f"{emu.dc_url}/rest/api/1.0/users/alice/repos/dotfiles/branches", dc)
    _get(f"{emu.dc_url}/rest/api/latest/projects/~alice/repos/dotfiles/pull-requests", dc)
    _get(f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core/tags", dc)
    stats = control(emu, "GET", "requests").json()["flavors"]
    assert stats["cloud"]["repositories"] == {"acme/api-service": 1, "acme/web-app": 2}
    assert stats["cloud"]["total"] == 4  # /2.0/user is counted, but for no repository
    assert stats["datacenter"]["repositories"] == {"PLAT/core": 1, "~ALICE/dotfiles": 2}
