"""Cheap change detection as Bitbucket allows it. Cloud: the repository's updated_on follows pushes and metadata
edits (not pull request activity), and the workspace listing filters and sorts on it as datetimes. Data Center:
ref change activity, newest first, records every ref created, moved or deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from infra.emulator import Emulator

from .conftest import bearer, cloud_login, control, dc_login, validate


def listing(emu: Emulator, token: str, **params: str) -> list[dict]:
    resp = requests.get(
        f"{emu.cloud_url}/2.0/repositories/acme", params={"pagelen": "100", **params}, headers=bearer(token), timeout=10
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["values"]


def updated_on(emu: Emulator, token: str, slug: str) -> datetime:
    (repo,) = [r for r in listing(emu, token) if r["slug"] == slug]
    return datetime.fromisoformat(repo["updated_on"])


def act(emu: Emulator, path: str, method: str = "POST", **body: object) -> None:
    """A change through the control API; ``{pr}`` stands for one of api-service's open pull requests."""
    repo = emu.backend.get_repo("cloud", "acme", "api-service")
    open_pr = min(p.id for p in repo.pull_requests.values() if p.state == "OPEN")
    resp = control(emu, method, f"cloud/repos/acme/{path.format(pr=open_pr)}", json=body or None)
    assert resp.status_code < 300, resp.text


@pytest.mark.parametrize(
    ("change", "bumps"),
    [
        (lambda emu: act(emu, "api-service/push", branch="main", commits=1), True),
        (lambda emu: act(emu, "api-service/branches", name="fresh"), True),
        (lambda emu: act(emu, "api-service/tags", name="v9.9.9"), True),
        (lambda emu: act(emu, "api-service/branches/feature/0001", "DELETE"), True),
        (lambda emu: act(emu, "api-service/update", description="new words"), True),
        (lambda emu: act(emu, "api-service/pullrequests/{pr}/merge"), True),  # moves the destination branch
        (lambda emu: act(emu, "api-service/pullrequests/{pr}/approve", user="bob"), False),
        (lambda emu: act(emu, "api-service/pullrequests/{pr}/comments", text="hi"), False),
        (lambda emu: act(emu, "api-service/pullrequests/{pr}/decline"), False),
        (lambda emu: act(emu, "api-service/pullrequests/{pr}/update", title="retitled"), False),
        (lambda emu: act(emu, "api-service/issues", title="a bug"), False),
    ],
)
def test_what_moves_updated_on(emu, change, bumps):
    token = cloud_login(emu)
    before = updated_on(emu, token, "api-service")
    change(emu)
    after = updated_on(emu, token, "api-service")
    assert (after > before) is bumps


def test_listing_filters_and_sorts_on_real_datetimes(emu):
    token = cloud_login(emu)
    mark = datetime.now(UTC)
    act(emu, "infra/push", branch="main")
    act(emu, "api-service/push", branch="main")
    pushed = updated_on(emu, token, "api-service")
    # The same instant written several ways: quoted or not, Z or an offset, with or without fractions.
    since = mark - timedelta(microseconds=1)
    forms = [
        f'"{since.isoformat()}"',
        since.isoformat(),
        since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        since.astimezone(timezone_plus_two()).isoformat(),
    ]
    for form in forms:
        changed = listing(emu, token, q=f"updated_on > {form}", sort="-updated_on")
        assert [r["slug"] for r in changed] == ["api-service", "infra"], form
    # A repository updated exactly at the bound is not after it; >= includes it.
    exact = pushed.isoformat()
    assert "api-service" not in [r["slug"] for r in listing(emu, token, q=f'updated_on > "{exact}"')]
    assert "api-service" in [r["slug"] for r in listing(emu, token, q=f'updated_on >= "{exact}"')]
    # A date alone is midnight UTC; everything seeded in 2024 is after 2023-12-31.
    assert len(listing(emu, token, q="updated_on > 2023-12-31")) == 3
    # Sorting compares instants, not text ("…00+00:00" sorts after "…00.5+00:00" as text).
    oldest_first = [r["updated_on"] for r in listing(emu, token, sort="updated_on")]
    assert oldest_first == sorted(oldest_first, key=datetime.fromisoformat)


def timezone_plus_two():  # type: ignore[no-untyped-def]
    from datetime import timezone

    return timezone(timedelta(hours=2))


def test_a_bad_datetime_is_no_datetime(emu):
    token = cloud_login(emu)
    assert listing(emu, token, q='updated_on > "yesterday"') == []  # text against a datetime field: no match


# ---------------------------------------- Data Center
def activities(emu: Emulator, token: str, repo: str = "PLAT/core", **params: str) -> requests.Response:
    key, slug = repo.split("/")
    base = f"{emu.dc_url}/rest/api/1.0/projects/{key}/repos/{slug}"
    return requests.get(f"{base}/ref-change-activities", params=params, headers=bearer(token), timeout=10)


def test_ref_change_activity_records_every_ref_change_newest_first(emu):
    token = dc_login(emu)
    assert activities(emu, token).json()["values"] == []  # seeding is no activity
    dc = "datacenter/repos/PLAT/core"
    core = emu.backend.get_repo("datacenter", "PLAT", "core")
    open_pr = min(p.id for p in core.pull_requests.values() if p.state == "OPEN")
    for path, method, body in (
        ("push", "POST", {"branch": "main"}),
        ("branches", "POST", {"name": "fresh"}),
        ("tags", "POST", {"name": "v9"}),
        ("branches/fresh", "DELETE", None),
        (f"pullrequests/{open_pr}/merge", "POST", None),
    ):
        assert control(emu, method, f"{dc}/{path}", json=body).status_code < 300
    # A change made without a webhook is still a ref change.
    assert control(emu, "POST", f"{dc}/push", json={"branch": "main", "deliver": False}).status_code < 300
    values = activities(emu, token).json()["values"]
    summary = [(v["refChange"]["refId"], v["refChange"]["type"], v["trigger"]) for v in values]
    assert summary == [
        ("refs/heads/main", "UPDATE", "push"),
        ("refs/heads/main", "UPDATE", "pull-request-merge"),
        ("refs/heads/fresh", "DELETE", "branch-delete"),
        ("refs/tags/v9", "ADD", "tag-create"),
        ("refs/heads/fresh", "ADD", "branch-create"),
        ("refs/heads/main", "UPDATE", "push"),
    ]
    ids = [v["id"] for v in values]
    assert ids == sorted(ids, reverse=True)
    newest = activities(emu, token, limit="1").json()
    assert newest["values"][0]["id"] == ids[0] and newest["isLastPage"] is False
    assert [v["refChange"]["refId"] for v in activities(emu, token, ref="refs/tags/v9").json()["values"]] == [
        "refs/tags/v9"
    ]
    branches = requests.get(
        f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core/branches",
        params={"filterText": "main"},
        headers=bearer(token),
        timeout=10,
    ).json()["values"]
    assert values[0]["refChange"]["toHash"] == branches[0]["latestCommit"]


def test_ref_change_activity_needs_repository_admin(emu):
    token = dc_login(emu, user="carol", scope="REPO_ADMIN")  # carol reads PLAT
    assert activities(emu, token).status_code == 401
    reader = dc_login(emu, user="alice", scope="REPO_READ")
    assert activities(emu, reader).status_code == 401


@pytest.mark.needs_shared
def test_ref_change_activity_matches_the_openapi_document(emu, dc_spec):
    token = dc_login(emu)
    control(emu, "POST", "datacenter/repos/PLAT/core/push", json={"branch": "main"})
    control(emu, "POST", "datacenter/repos/PLAT/core/tags", json={"name": "v10"})
    resp = activities(emu, token)
    assert resp.status_code == 200 and len(resp.json()["values"]) == 2
    validate(dc_spec, resp, flavor="datacenter")


def _workspace_prs(emu: Emulator, token: str, author: str, **params: str) -> requests.Response:
    args = {"state": ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"], "pagelen": "50", **params}
    url = f"{emu.cloud_url}/2.0/workspaces/acme/pullrequests/{author}"
    return requests.get(url, params=args, headers=bearer(token), timeout=10)


def test_a_workspaces_pull_requests_by_author_tell_which_repositories_changed(emu):
    token = cloud_login(emu)
    members = requests.get(f"{emu.cloud_url}/2.0/workspaces/acme/members", headers=bearer(token), timeout=10).json()
    uuids = {m["user"]["nickname"]: m["user"]["uuid"] for m in members["values"]}
    assert set(uuids) == set(emu.backend.get_workspace("acme").members)
    since = datetime.now(UTC).isoformat()
    assert _workspace_prs(emu, token, uuids["bob"], q=f"updated_on > {since}").json()["values"] == []
    act(emu, "api-service/pullrequests/{pr}/update", title="retitled")  # by its author, whoever that is
    repo = emu.backend.get_repo("cloud", "acme", "api-service")
    changed = max(repo.pull_requests.values(), key=lambda p: p.updated_on)
    by_author = _workspace_prs(emu, token, uuids[changed.author], q=f"updated_on > {since}", sort="-updated_on")
    assert [(v["id"], v["destination"]["repository"]["full_name"]) for v in by_author.json()["values"]] == [
        (changed.id, "acme/api-service")
    ]
    others = [name for name in uuids if name != changed.author]
    assert all(_workspace_prs(emu, token, uuids[o], q=f"updated_on > {since}").json()["values"] == [] for o in others)
    # The author by username or Atlassian id too; OPEN only unless asked; a stranger is a 404.
    everything = _workspace_prs(emu, token, changed.author).json()
    mine = [
        p
        for r in emu.backend.list_repos("cloud", "acme")
        for p in r.pull_requests.values()
        if p.author == changed.author
    ]
    assert everything["size"] == len(mine)
    plain = requests.get(
        f"{emu.cloud_url}/2.0/workspaces/acme/pullrequests/{changed.author}", headers=bearer(token), timeout=10
    )
    assert {v["state"] for v in plain.json()["values"]} <= {"OPEN"}
    assert _workspace_prs(emu, token, "{00000000-0000-0000-0000-000000000000}").status_code == 404


def test_only_a_workspaces_members_see_its_members(emu):
    carol = cloud_login(emu, user="carol")  # in acme, not in globex
    members = requests.get(f"{emu.cloud_url}/2.0/workspaces/acme/members", headers=bearer(carol), timeout=10)
    assert members.status_code == 200
    resp = requests.get(f"{emu.cloud_url}/2.0/workspaces/globex/members", headers=bearer(carol), timeout=10)
    assert resp.status_code == 404
