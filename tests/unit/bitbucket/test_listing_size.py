"""Issue 23 (6): a repository listing answer is bounded in bytes as well as in count - long names and
descriptions cut and marked, and a page stopping early (its state going on from there) when what it holds
would still be too big - on both flavors."""

from __future__ import annotations

import json
from typing import Any

from bitbridge.bitbucket import cloud, datacenter
from bitbridge.bitbucket.repos import MAX_DESCRIPTION, MAX_LISTING_BYTES, MAX_NAME, ListQuery

WIDE = "\U0001f600" * 5000  # JSON escapes each as 12 bytes: what makes a cut text as big as it gets


def _cloud_fetch(count: int):
    def fetch(url: str, params: dict[str, Any] | None) -> Any:
        if url.endswith("/user/workspaces"):
            return {"values": [{"workspace": {"slug": "ws", "name": "WS"}}]}
        assert params is not None and params["page"] == 1  # every repository is on the first page
        values = [
            {"uuid": f"{{{n}}}", "full_name": f"ws/r{n}", "slug": f"r{n}", "name": WIDE, "description": WIDE}
            for n in range(count)
        ]
        return {"values": values}

    return fetch


def _dc_fetch(count: int):
    def fetch(url: str, params: dict[str, Any] | None) -> Any:
        if "/users/" in url:  # the user's personal repositories: none
            return {"values": [], "isLastPage": True}
        values = [
            {"id": n, "slug": f"r{n}", "name": WIDE, "description": WIDE, "project": {"key": "P"}} for n in range(count)
        ]
        return {"values": values, "isLastPage": True}

    return fetch


def _walk(flavor, fetch, api: str) -> tuple[list[list[str]], list[int]]:
    pages, sizes, state = [], [], None
    for _ in range(10):
        listed = flavor.list_repositories(fetch, api, ListQuery("alice", None, None, state, 100))
        body = [r.public() for r in listed.repositories]
        sizes.append(len(json.dumps(body)))
        pages.append([r["full_name"] for r in body])
        state = listed.state
        if state is None:
            return pages, sizes
    raise AssertionError("the listing did not end")


def test_long_texts_are_cut_and_marked():
    listed = cloud.CLOUD_API.list_repositories(_cloud_fetch(1), "https://api/2.0", ListQuery("a", None, None, None, 5))
    shown = listed.repositories[0].public()
    assert len(shown["name"]) == MAX_NAME and len(shown["description"]) == MAX_DESCRIPTION
    assert shown["description"].endswith("…") and shown["description_truncated"] is True


def test_a_page_stops_at_its_byte_budget_and_the_next_goes_on_from_there():
    for flavor, fetch, api in (
        (cloud.CLOUD_API, _cloud_fetch(100), "https://api/2.0"),
        (datacenter.DATACENTER_API, _dc_fetch(100), "https://dc/rest/api/1.0"),
    ):
        pages, sizes = _walk(flavor, fetch, api)
        assert len(pages) >= 2 and len(pages[0]) < 100, [len(p) for p in pages]  # 100 would not fit
        assert all(size <= MAX_LISTING_BYTES for size in sizes), sizes
        names = [name for page in pages for name in page]
        assert len(names) == len(set(names)) == 100  # each once, none skipped
