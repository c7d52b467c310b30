"""Issue 23 (4), the pure part: `with_subscription_names` keeps what is the subscription's repository's own -
its clone links on its web host (https, ssh:// and scp-like), pages on its web origin - and drops the rest.
(tests/integration/webhooks/test_event_names.py shows forged names never reach the bus; this shows the
genuine links still do.)"""

from __future__ import annotations

import copy
import json

import pytest

from bitbridge.webhooks.normalise import normalise
from bitbridge.webhooks.publish import with_subscription_names

pytestmark = pytest.mark.needs_shared

WEB = "https://server.bitbucket.local/users/gopher/repos/webhook-test/browse"
RECORD = {"full_name": "~gopher/webhook-test", "name": "Webhook test", "html_url": WEB}


@pytest.fixture
def pr_opened(shared_dir) -> dict:
    payload = json.loads((shared_dir / "bitbucket/webhooks/datacenter/pr-opened.json").read_text())
    return normalise(
        flavor="datacenter", provider_id="dc", event_key="pr:opened", payload=payload,
        delivery_id="d-1", received_at="2024-05-01T12:00:00.000Z",
    )  # fmt: skip


def test_the_repositorys_own_links_are_kept(pr_opened):
    clones = copy.deepcopy(pr_opened["repository"]["links"]["clone"])
    assert {c["name"] for c in clones} == {"ssh", "http"}  # the payload's genuine ssh:// and https links
    assert with_subscription_names(pr_opened, RECORD)
    repository = pr_opened["repository"]
    assert (repository["full_name"], repository["name"], repository["links"]) == (
        "~gopher/webhook-test", "Webhook test", {"html": WEB, "clone": clones},
    )  # fmt: skip
    assert (repository["workspace"], repository["slug"]) == ("~gopher", "webhook-test")
    assert pr_opened["pull_request"]["destination"]["repository"] == repository
    assert pr_opened["pull_request"]["url"] == (
        "https://server.bitbucket.local/users/gopher/repos/webhook-test/pull-requests/5"
    )


@pytest.mark.parametrize(
    ("href", "kept"),
    [
        ("git@server.bitbucket.local:~gopher/webhook-test.git", True),  # scp-like, as Cloud writes ssh
        ("https://x-token-auth@server.bitbucket.local/scm/~GOPHER/webhook-test.git", True),  # case, user part
        ("https://evil.example/scm/~gopher/webhook-test.git", False),  # another host
        ("https://server.bitbucket.local.evil.example/scm/~gopher/webhook-test.git", False),
        ("https://server.bitbucket.local/scm/~gopher/other.git", False),  # another repository
        ("git@evil.example:~gopher/webhook-test.git", False),
    ],
)
def test_a_clone_link_is_kept_only_for_that_repository_on_its_web_host(pr_opened, href, kept):
    pr_opened["repository"]["links"]["clone"] = [{"name": "x", "href": href}]
    assert with_subscription_names(pr_opened, RECORD)
    assert (pr_opened["repository"]["links"]["clone"] != []) is kept


def test_pages_off_the_web_origin_and_unknown_pages_are_dropped(pr_opened):
    pr_opened["pull_request"]["url"] = "http://server.bitbucket.local/users/gopher/repos/webhook-test/pull-requests/5"
    assert with_subscription_names(pr_opened, RECORD)
    assert pr_opened["pull_request"]["url"] is None  # another scheme: another origin
    # A subscription installed before bitbridge kept names and pages: the slug as name, no links at all.
    unknown = {"full_name": "~gopher/webhook-test", "name": None, "html_url": None}
    fresh = copy.deepcopy(pr_opened)
    fresh["pull_request"]["url"] = "https://server.bitbucket.local/users/gopher/repos/webhook-test/pull-requests/5"
    assert with_subscription_names(fresh, unknown)
    assert fresh["repository"]["name"] == "webhook-test"
    assert fresh["repository"]["links"] == {"html": None, "clone": []} and fresh["pull_request"]["url"] is None


def test_a_pull_request_into_another_repository_is_refused(pr_opened):
    pr_opened["pull_request"]["destination"]["repository"] = {**pr_opened["repository"], "id": "999"}
    assert with_subscription_names(pr_opened, RECORD) is False
