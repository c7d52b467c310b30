"""Pagination and worker constants that must agree with Bitbucket and with template.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from bitbridge.bitbucket import cloud, datacenter
from bitbridge.imports import jobs, kickoff, output, worker
from infra.local.template import load_template


def _dc_fetch(pages: dict[int, dict[str, Any]], calls: list[int]):
    def fetch(url: str, params: dict[str, Any] | None) -> Any:
        start = int((params or {}).get("start", 0))
        calls.append(start)
        return pages[start]

    return fetch


def _walk(fetch) -> list[Any]:
    values: list[Any] = []
    cursor: str | None = None
    for _ in range(10):
        page = datacenter.DATACENTER_API.page(fetch, "http://dc/rest/api/1.0", "P/r", "branches", cursor)
        values.extend(page.values)
        cursor = page.next
        if cursor is None:
            return values
    raise AssertionError("pagination did not end")


def test_datacenter_pages_follow_next_page_start_at_the_largest_limit():
    calls: list[int] = []
    pages = {
        0: {"values": [1, 2], "isLastPage": False, "nextPageStart": 2, "limit": 1000},
        2: {"values": [3], "isLastPage": True},
    }
    assert _walk(_dc_fetch(pages, calls)) == [1, 2, 3]
    assert calls == [0, 2]


def test_datacenter_missing_next_page_start_continues_after_the_page_and_cannot_loop():
    calls: list[int] = []
    pages = {
        0: {"values": [1, 2], "isLastPage": False},  # BSERV-12725: no nextPageStart
        2: {"values": [3], "isLastPage": False, "nextPageStart": 0},  # and one pointing backwards
        3: {"values": [], "isLastPage": False},  # an empty non-last page ends it
    }
    assert _walk(_dc_fetch(pages, calls)) == [1, 2, 3]
    assert calls == [0, 2, 3]


def test_cloud_pull_requests_ask_for_every_state_participants_and_stable_order():
    url, params = cloud.first("https://api/2.0", "ws/repo", "pull_requests")
    assert url.endswith("/repositories/ws/repo/pullrequests")
    assert params["state"] == ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"]
    assert params["sort"] == "id" and params["pagelen"] == 50
    assert "+values.participants" in params["fields"]


def test_worker_receive_limit_is_the_queues_redrive_limit():
    queue = load_template()["Resources"]["ImportQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == worker.MAX_RECEIVES


def test_snapshot_serialisation_is_canonical_and_keys_drop_uuid_braces():
    assert output.canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert output.prefix("bitbucket-cloud", "{abc}", "j1") == "imports/bitbucket-cloud/abc/j1/"
    assert output.page_key("pull_requests", 3) == "pull_requests/page-00003.jsonl"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"provider": "p"},
        {"provider": "p", "repositories": []},
        {"provider": "p", "repositories": ["no-slash"]},
        {"provider": "p", "repositories": ["a/b/c"]},
        {"provider": "p", "repositories": ["a/b"], "reimport": "yes"},
        {"provider": "p", "repositories": [f"a/r{i}" for i in range(101)]},
    ],
)
def test_bad_import_requests_are_refused(body):
    with pytest.raises(jobs.ImportRequestError) as caught:
        kickoff.parse_request(body)
    assert caught.value.code == "invalid_request"


def test_a_request_over_the_limit_says_the_limit_and_what_to_do():
    names = [f"a/r{i}" for i in range(kickoff.MAX_REPOSITORIES_PER_REQUEST + 1)]
    with pytest.raises(jobs.ImportRequestError) as caught:
        kickoff.parse_request({"provider": "p", "repositories": names})
    assert caught.value.code == "invalid_request" and caught.value.details == {"limit": 20}
    assert "At most 20 repositories per request (21 given)" in caught.value.message
    assert "further requests" in caught.value.message
    assert kickoff.parse_request({"provider": "p", "repositories": names[:-1]})[1] == names[:-1]


def test_import_request_dedupes_repositories():
    assert kickoff.parse_request({"provider": "p", "repositories": ["a/b", "a/b", {"full_name": "c/d"}]}) == (
        "p",
        ["a/b", "c/d"],
        False,
    )
