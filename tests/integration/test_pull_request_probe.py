"""Cloud's pull request probe (`Cloud.pull_request_marks`, `reconcile.run.PullRequestMarks`) on the emulator over real
HTTP: for a workspace of many repositories, the member list and one query per member tell which repositories'
pull requests changed since they were last compared, in tens of calls where reading each repository's page costs
one each; a workspace of a few repositories is not probed; a pull request by someone outside the workspace is
not seen (the per-repository read on the hook's cadence finds it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import requests

from bitbridge.bitbucket.api import for_flavor
from bitbridge.calls import Caller
from bitbridge.change_ids import stamp
from bitbridge.reconcile.run import PR_PROBE_FROM, PullRequestMarks
from bitbridge.store.providers import ProviderRecord
from bitbridge.store.subscriptions import SubscriptionRecord
from infra.emulator import Emulator

WS, REPOS = "wide", PR_PROBE_FROM + 2
MEMBERS = {"alice": "owner", "bob": "member"}  # carol, who also authors pull requests here, is not a member


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator(cloud_port=0, dc_port=0, seed=True).start()
    emulator.backend.config.rate_limits_enabled = False
    spec = {"slug": "r", "count": REPOS, "branches": 2, "tags": 0, "pull_requests": 3}
    requests.post(
        f"{emulator.cloud_url}/_emulator/seed",
        json={"cloud": {"workspaces": [{"slug": WS, "name": WS, "members": MEMBERS, "repositories": [spec]}]}},
        timeout=30,
    ).raise_for_status()
    yield emulator
    emulator.stop()


def _caller(emu: Emulator) -> Caller:
    backend, scopes = emu.backend, ["repository", "pullrequest", "account"]
    if backend.get_client("cloud", "probe") is None:
        backend.register_client("cloud", "probe", "s", "http://127.0.0.1/cb", scopes)
    token = backend._new_token("cloud", "probe", "alice", scopes, None).access_token
    provider = ProviderRecord(
        "p-cloud", flavor="cloud", label="x", web_url=emu.cloud_url, api_url=emu.cloud_url + "/2.0"
    )
    return Caller.with_token(provider, token)


def _due(emu: Emulator, count: int, checked: datetime) -> list[SimpleNamespace]:
    """`count` of the workspace's repositories as the run holds them: subscription, caller, ledger watermark."""
    caller = _caller(emu)
    out = []
    for repo in sorted(emu.backend.list_repos("cloud", WS), key=lambda r: r.slug)[:count]:
        sub = SubscriptionRecord(
            f"sub-{repo.slug}",
            provider_id="p-cloud",
            repository_key=f"p-cloud#{repo.uuid}",
            repository_full_name=repo.full_name,
            owner_user_id="user-alice",
            checked_at=checked.isoformat(),
        )
        newest = max(p.updated_on for p in repo.pull_requests.values())
        out.append(
            SimpleNamespace(
                sub=sub,
                caller=caller,
                bitbucket=for_flavor("cloud"),
                fetch=caller.fetch,
                repository_id=repo.uuid,
                watermark=stamp(newest.isoformat()),
            )
        )
    return out


def _answers(due: list[SimpleNamespace]) -> tuple[dict[str, bool | None], int]:
    marks = PullRequestMarks([d.sub for d in due])
    answers = {}
    for d in due:
        answers[d.sub.repository_full_name] = marks.changed(d, d.watermark)  # type: ignore[arg-type]
    return answers, sum(d.caller.calls for d in due[:1])


def _open(emu: Emulator, slug: str, author: str) -> None:
    """A pull request `author` opens in the workspace's repository `slug` (Bitbucket tells nobody: no hook)."""
    repo = emu.backend.get_repo("cloud", WS, slug)
    source = next(name for name in repo.branches if name != repo.default_branch)
    path = f"cloud/repos/{WS}/{slug}/pullrequests"
    body = {"source": source, "title": f"opened by {author}", "user": author}
    requests.post(f"{emu.cloud_url}/_emulator/{path}", json=body, timeout=10).raise_for_status()


def test_a_quiet_workspace_costs_the_member_list_and_one_query_per_member(emu):
    due = _due(emu, REPOS, datetime.now(UTC))
    answers, calls = _answers(due)
    assert set(answers.values()) == {False}  # every repository cleared, none read
    assert calls == 1 + len(MEMBERS)  # members, then each member's pull requests: not one per repository


def test_a_members_change_names_its_repository_and_no_other(emu):
    due = _due(emu, REPOS, datetime.now(UTC) - timedelta(seconds=1))
    _open(emu, "r-0007", "bob")
    answers, _ = _answers(due)
    assert {name for name, changed in answers.items() if changed} == {f"{WS}/r-0007"}
    # Compared since (its watermark at the change): nothing to read.
    for d in due:
        d.watermark = stamp(
            max(
                p.updated_on
                for p in emu.backend.get_repo("cloud", *d.sub.repository_full_name.split("/")).pull_requests.values()
            ).isoformat()
        )
    assert set(_answers(due)[0].values()) == {False}


def test_a_non_members_change_is_left_to_the_per_repository_read(emu):
    due = _due(emu, REPOS, datetime.now(UTC) - timedelta(seconds=1))
    _open(emu, "r-0003", "carol")
    answers, _ = _answers(due)
    assert answers[f"{WS}/r-0003"] is False  # unseen here: the hook's cadence reads its page (reconcile.run)


def test_a_workspace_of_few_repositories_is_not_probed(emu):
    due = _due(emu, PR_PROBE_FROM - 1, datetime.now(UTC))
    answers, calls = _answers(due)
    assert set(answers.values()) == {None} and calls == 0  # each repository's page is read instead


def test_a_repository_never_compared_is_read(emu):
    due = _due(emu, REPOS, datetime.now(UTC))
    due[0].sub.checked_at = None
    answers, _ = _answers(due)
    assert answers[due[0].sub.repository_full_name] is None
    assert set(list(answers.values())[1:]) == {False}


def test_a_scheduled_run_keys_cloud_subscriptions_by_workspace_and_data_centers_by_their_own(aws):
    from bitbridge.reconcile.run import slot_keys

    for flavor in ("cloud", "datacenter"):
        ProviderRecord(f"p-{flavor}", flavor=flavor, label="x", web_url="http://b", api_url="http://b/api").save()
    subs = [
        SubscriptionRecord(
            "s1", provider_id="p-cloud", repository_key="k", repository_full_name="Wide/a", owner_user_id="u"
        ),
        SubscriptionRecord(
            "s2", provider_id="p-cloud", repository_key="k", repository_full_name="wide/b", owner_user_id="u"
        ),
        SubscriptionRecord("s3", provider_id="p-datacenter", repository_key="k", repository_full_name="PROJ/a"),
        SubscriptionRecord("s4", provider_id="p-gone", repository_key="k", repository_full_name="w/a"),
    ]
    key = slot_keys(subs)
    assert key(subs[0]) == key(subs[1]) != "s1"  # one workspace, one key
    assert (key(subs[2]), key(subs[3])) == ("s3", "s4")  # by id: Data Center, and a provider removed meanwhile


def test_a_probe_bitbucket_refuses_falls_back_to_each_repositorys_page_asked_once(emu):
    due = _due(emu, REPOS, datetime.now(UTC))
    fault = {"flavor": "cloud", "path_prefix": f"/2.0/workspaces/{WS}/pullrequests/", "status": 400}
    requests.post(f"{emu.cloud_url}/_emulator/faults", json=fault, timeout=10).raise_for_status()
    try:
        answers, calls = _answers(due)
    finally:
        requests.delete(f"{emu.cloud_url}/_emulator/faults", timeout=10)
    assert set(answers.values()) == {None}  # each repository's own page is read: nothing is skipped
    assert calls == 2  # the member list and the one refused query, once for the workspace, not once per repository
