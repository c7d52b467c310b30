"""Issue 23 (12): Cloud's `next` links are followed with the user's token only on the provider's API origin."""

from __future__ import annotations

from typing import Any

import pytest

from bitbridge.bitbucket import cloud
from bitbridge.bitbucket.http import BitbucketError

API = "https://api.bitbucket.org/2.0"
OFF_ORIGIN = [
    "https://evil.example/2.0/repositories/ws/repo/refs/branches?page=2",
    "http://api.bitbucket.org/2.0/repositories/ws/repo/refs/branches?page=2",  # downgraded scheme
    "https://api.bitbucket.org:8443/2.0/x?page=2",  # another port
    "https://api.bitbucket.org.evil.example/2.0/x",
    "https://api.bitbucket.org@evil.example/2.0/x",  # userinfo trick: the host is evil.example
    "//evil.example/2.0/x",
    "/2.0/x?page=2",  # relative: not an absolute link on the API origin
]


class Recorder:
    """A fetch that answers the first page with a `next` link and records every URL it was asked for."""

    def __init__(self, next_link: str) -> None:
        self.next_link = next_link
        self.urls: list[str] = []

    def __call__(self, url: str, params: dict[str, Any] | None) -> Any:
        self.urls.append(url)
        if len(self.urls) == 1:
            return {"values": [{"name": "main", "target": {"hash": "a" * 40}}], "next": self.next_link}
        return {"values": [{"name": "dev", "target": {"hash": "b" * 40}}]}


@pytest.mark.parametrize("next_link", OFF_ORIGIN)
def test_a_next_link_off_the_api_origin_is_refused_before_it_is_fetched(next_link):
    fetch = Recorder(next_link)
    page = cloud.CLOUD_API.page(fetch, API, "ws/repo", "branches", None)
    with pytest.raises(BitbucketError) as refused:
        cloud.CLOUD_API.page(fetch, API, "ws/repo", "branches", page.next)
    assert refused.value.permanent and "origin" in str(refused.value)
    assert fetch.urls == [f"{API}/repositories/ws/repo/refs/branches"]  # the foreign link was never asked for


@pytest.mark.parametrize("next_link", OFF_ORIGIN)
def test_every_cloud_walk_refuses_a_foreign_next_link(next_link):
    walks = [
        lambda f: cloud.workspaces(f, API),
        lambda f: cloud.CLOUD_API.ref_heads(f, API, "ws/repo"),
        lambda f: list(cloud.CLOUD_API.pull_requests_newest_first(f, API, "ws/repo")),
        lambda f: cloud.CLOUD_API.hooks_page(f, f"{API}/repositories/ws/repo/hooks", next_link),
    ]
    for walk in walks:
        fetch = Recorder(next_link)
        with pytest.raises(BitbucketError):
            walk(fetch)
        assert all(u.startswith(API + "/") for u in fetch.urls), fetch.urls


def test_a_next_link_on_the_api_origin_is_followed():
    fetch = Recorder(f"{API}/repositories/ws/repo/refs/branches?page=2&pagelen=100")
    cloud.CLOUD_API.ref_heads(fetch, API, "ws/repo")
    assert fetch.urls[1] == f"{API}/repositories/ws/repo/refs/branches?page=2&pagelen=100"
    # Same origin, the host's letter case aside (hosts are case-insensitive).
    fetch = Recorder("https://API.Bitbucket.org/2.0/repositories/ws/repo/refs/branches?page=2")
    page = cloud.CLOUD_API.page(fetch, API, "ws/repo", "branches", None)
    cloud.CLOUD_API.page(fetch, API, "ws/repo", "branches", page.next)
    assert len(fetch.urls) == 2
