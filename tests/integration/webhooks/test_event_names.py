"""Issue 23 (4): a hook's secret vouches for its repository's id, never for names. Payloads generated from the
real ones, signed with one repository's secret and naming other repositories - in the repository, a pull
request's destination, and with links anywhere - go through the receiver, the stream and the publisher onto
the bus: only the subscription's own names and links reach it, a pull request into another repository is
not published, and nothing of the forgery persists (the observed state, the console's Activity)."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbridge.store.subscriptions import SubscriptionRecord
from bitbridge.webhooks.publish import forget_providers
from tests.integration.webhooks.support import PROVIDERS, payload_bytes, register_provider, subscription_for
from tests.integration.webhooks.test_publisher import Pipeline, _subscribe_as_an_import_would

pytestmark = pytest.mark.needs_shared

# (flavor, event key, file, where the repository sits, where a pull request's destination repository sits)
CASES = [
    ("cloud", "repo:push", "cloud/repo-push.json", ("repository",), None),
    ("cloud", "pullrequest:created", "cloud/pull-request-created.json", ("repository",),
     ("pullrequest", "destination", "repository")),
    ("datacenter", "repo:refs_changed", "datacenter/repo-refs-changed.json", ("repository",), None),
    ("datacenter", "pr:opened", "datacenter/pr-opened.json", ("pullRequest", "toRef", "repository"), None),
]  # fmt: skip

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=12)
foreign_names = st.builds(lambda a, b: (f"zz{a}", f"zz{b}"), words, words)  # marked: never a real name
foreign_urls = st.builds(lambda h, p: f"https://zz{h}.example/{p}", words, words)
# Each example's pull requests are new ones: the same pull request state delivered again is a change told
# before (bitbridge.change_ids), settled `duplicate` and not published again.
pull_request_numbers = itertools.count(1000)


def _at(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        payload = payload[key]
    return payload


def _rename(flavor: str, repo: dict[str, Any], owner: str, slug: str, url: str) -> None:
    """Make a payload's repository object say it is `owner/slug`, at `url` (its id untouched)."""
    repo["name"] = f"{owner} {slug}"
    if flavor == "cloud":
        repo["full_name"] = f"{owner}/{slug}"
        repo["links"]["html"] = {"href": url}
        repo["links"]["clone"] = [{"name": "https", "href": f"{url}/{owner}/{slug}.git"}]
    else:
        repo["slug"] = slug
        repo["project"]["key"] = owner.upper()
        repo["links"]["self"] = [{"href": url}]
        repo["links"]["clone"] = [{"name": "http", "href": f"{url}/scm/{owner}/{slug}.git"}]


@pytest.fixture
def pipeline(aws):
    forget_providers()
    for flavor, provider in PROVIDERS.items():
        register_provider(aws.ref("ProvidersTable"), provider, flavor)
    return Pipeline(aws)


def _walk_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk_strings(v)]
    return [value] if isinstance(value, str) else []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(foreign_names, min_size=4, max_size=4),
    urls=st.lists(foreign_urls, min_size=4, max_size=4),
    pr_url=foreign_urls,
    into_another=st.booleans(),
)
def test_only_the_subscriptions_own_names_reach_the_bus(pipeline, shared_dir, names, urls, pr_url, into_another):
    n = len(pipeline.seen)
    sent: dict[str, tuple[str, dict[str, Any], bool]] = {}
    for index, (flavor, key, file, repo_at, destination_at) in enumerate(CASES):
        original = payload_bytes(shared_dir, file)
        provider = PROVIDERS[flavor]
        _subscribe_as_an_import_would(flavor, key, original, provider)  # what Bitbucket's REST API said
        sub = subscription_for(flavor, key, original)
        repo_id = SubscriptionRecord.get(sub, consistent_read=True).repository_key.split("#", 1)[1]
        _imported(pipeline, provider, repo_id)
        forged = json.loads(original)
        _rename(flavor, _at(forged, repo_at), *names[index], urls[index])
        another = False
        if destination_at is not None:
            destination = _at(forged, destination_at)
            _rename(flavor, destination, *names[(index + 1) % 4], urls[(index + 1) % 4])
            if into_another:  # a pull request into another repository, signed with this one's secret
                destination["uuid"] = "{00000000-0000-4000-8000-0000000000ee}"
                another = True
        if "pullrequest" in forged:
            forged["pullrequest"]["id"] = next(pull_request_numbers)
            forged["pullrequest"]["links"]["html"] = {"href": pr_url}
        if "pullRequest" in forged:
            forged["pullRequest"]["id"] = next(pull_request_numbers)
            forged["pullRequest"]["links"]["self"] = [{"href": pr_url}]
        delivery_id = f"forged-{n}-{index}"
        assert pipeline.deliver(flavor, key, json.dumps(forged).encode(), delivery_id, subscription=sub) == 202
        record = SubscriptionRecord.get(sub, consistent_read=True)
        own = {"full_name": record.repository_full_name, "name": record.repository_name,
               "html": record.repository_html_url}  # fmt: skip
        sent[delivery_id] = (provider, own, another)

    published = {e["detail"]["id"]: e["detail"] for e in pipeline.run()}
    foreign = {part for pair in names for part in pair} | {u.split("//")[1].split("/")[0] for u in [*urls, pr_url]}
    for delivery_id, (provider, own, another) in sent.items():
        if another:  # the pull request names another repository as its destination: refused
            assert delivery_id not in published
            assert pipeline.item(f"{provider}#{delivery_id}")["status"]["S"] == "rejected"
            continue
        event = published[delivery_id]
        repository = event["repository"]
        assert (repository["full_name"], repository["name"], repository["links"]["html"]) == (
            own["full_name"], own["name"], own["html"],
        )  # fmt: skip
        pr = event.get("pull_request")
        if pr:
            assert pr["destination"]["repository"] is None or pr["destination"]["repository"] == repository
            assert pr["url"] is None  # the forged page is off the repository's web origin
        leaked = [s for s in _walk_strings(event) if any(f in s for f in foreign)]
        assert leaked == [], (delivery_id, leaked)
    # Nor does the forgery persist: what the reconciler compares with, and the console's Activity.
    kept = _boto_scan(pipeline.aws.ref("ImportsTable"))
    leaked = [s for s in _walk_strings(kept) if any(f in s for f in foreign)]
    assert leaked == [], leaked


def _ddb() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


def _imported(pipeline, provider: str, repo_id: str) -> None:
    """The repository was imported: its project item exists, so events update its state and Activity."""
    item = {"pk": {"S": f"PROJECT#{provider}#{repo_id}"}, "sk": {"S": "PROJECT"}, "default_branch": {"S": "main"}}
    with contextlib.suppress(_ddb().exceptions.ConditionalCheckFailedException):  # imported in an earlier example
        _ddb().put_item(
            TableName=pipeline.aws.ref("ImportsTable"), Item=item, ConditionExpression="attribute_not_exists(pk)"
        )


def _boto_scan(table: str) -> list[dict]:
    return list(_ddb().scan(TableName=table, ConsistentRead=True)["Items"])
