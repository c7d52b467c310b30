"""The reconciler's reads: a repository's hook, ref heads and pull requests, as cheaply as each flavor
allows (`fields=`, the largest pages, pull requests newest-updated first so a run can stop early).

Cloud: refs at `pagelen=100` trimmed to name + target hash; pull requests at `pagelen=50` (the list's cap)
with `sort=-updated_on` and every state. Data Center: refs at `limit=1000`; pull requests
`state=ALL&order=NEWEST&withProperties=false` (newest *update* first). Every read goes through the
caller's `Fetch`, which counts calls, refreshes tokens and retries 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bitbridge.bitbucket.http import BitbucketError
from bitbridge.bitbucket.repos import DC_LIMIT, Fetch, dc_page_at, split_full_name

CLOUD_PAGELEN = 100
CLOUD_PR_PAGELEN = 50
DC_PR_LIMIT = 100  # a quiet repository needs one page; a busy one stops at the watermark
_CLOUD_REF_FIELDS = "next,values.name,values.target.hash"
_CLOUD_PR_FIELDS = ",".join(
    [
        "next",
        *(
            f"values.{f}"
            for f in (
                "id",
                "title",
                "state",
                "updated_on",
                "source.branch.name",
                "source.commit.hash",
                "source.repository.uuid",
                "source.repository.full_name",
                "destination.branch.name",
                "destination.commit.hash",
                "destination.repository.uuid",
                "destination.repository.full_name",
                "author.uuid",
                "author.display_name",
                "author.nickname",
                "merge_commit.hash",
                "links.html.href",
            )
        ),
    ]
)
_CLOUD_PR_STATES = ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"]


def _q(part: str) -> str:
    return quote(part, safe="~")


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Hook:
    """A hook as the reconciler checks it; `secret_set` is None where Bitbucket does not say (DC)."""

    def __init__(self, url: str, active: bool, events: list[str], secret_set: bool | None) -> None:
        self.url, self.active, self.events, self.secret_set = url, active, events, secret_set


def _hook_or_none(fetch: Fetch, url: str) -> dict[str, Any] | None:
    try:
        return dict(fetch(url, None))
    except BitbucketError as exc:
        if exc.status == 404:
            return None
        raise


class CloudTruth:
    def _base(self, api: str, full_name: str) -> str:
        owner, slug = split_full_name(full_name)
        return f"{api}/repositories/{_q(owner)}/{_q(slug)}"

    def hook(self, fetch: Fetch, api: str, full_name: str, hook_id: str) -> Hook | None:
        raw = _hook_or_none(fetch, f"{self._base(api, full_name)}/hooks/{quote(hook_id, safe='')}")
        if raw is None:
            return None
        return Hook(str(raw.get("url")), bool(raw.get("active")), list(raw.get("events") or []), raw.get("secret_set"))

    def refs(self, fetch: Fetch, api: str, full_name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, path in (("b", "branches"), ("t", "tags")):
            body = fetch(
                f"{self._base(api, full_name)}/refs/{path}", {"pagelen": CLOUD_PAGELEN, "fields": _CLOUD_REF_FIELDS}
            )
            while True:
                for ref in body.get("values", []):
                    out[f"{kind}:{ref['name']}"] = str(ref["target"]["hash"]).lower()
                if not body.get("next"):
                    break
                body = fetch(body["next"], None)
        return out

    def pull_requests(self, fetch: Fetch, api: str, full_name: str) -> Iterator[dict[str, Any]]:
        """Every pull request, most recently updated first (read lazily, page by page)."""
        params = {
            "state": _CLOUD_PR_STATES,
            "sort": "-updated_on",
            "pagelen": CLOUD_PR_PAGELEN,
            "fields": _CLOUD_PR_FIELDS,
        }
        body = fetch(f"{self._base(api, full_name)}/pullrequests", params)
        while True:
            yield from body.get("values", [])
            if not body.get("next"):
                return
            body = fetch(body["next"], None)

    def updated(self, pr: dict[str, Any]) -> str:
        return iso_utc(datetime.fromisoformat(str(pr["updated_on"])))


class DataCenterTruth:
    def _base(self, api: str, full_name: str) -> str:
        key, slug = split_full_name(full_name)
        return f"{api}/projects/{_q(key)}/repos/{_q(slug)}"

    def hook(self, fetch: Fetch, api: str, full_name: str, hook_id: str) -> Hook | None:
        raw = _hook_or_none(fetch, f"{self._base(api, full_name)}/webhooks/{quote(hook_id, safe='')}")
        if raw is None:
            return None
        # Data Center never shows whether a secret is set: None (a repair re-sends it anyway).
        return Hook(str(raw.get("url")), bool(raw.get("active")), list(raw.get("events") or []), None)

    def refs(self, fetch: Fetch, api: str, full_name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, path in (("b", "branches"), ("t", "tags")):
            url, params = f"{self._base(api, full_name)}/{path}", {"orderBy": "MODIFICATION", "limit": DC_LIMIT}
            cursor: str | None = "0"
            while cursor is not None:
                page = dc_page_at(fetch, url, params, cursor)
                for ref in page.values:
                    # latestCommit: for an annotated tag the tagged commit, as in events.
                    out[f"{kind}:{ref['displayId']}"] = str(ref.get("latestCommit") or ref["id"]).lower()
                cursor = page.next
        return out

    def pull_requests(self, fetch: Fetch, api: str, full_name: str) -> Iterator[dict[str, Any]]:
        url = f"{self._base(api, full_name)}/pull-requests"
        params = {"state": "ALL", "order": "NEWEST", "withProperties": "false", "limit": DC_PR_LIMIT}
        cursor: str | None = "0"
        while cursor is not None:
            page = dc_page_at(fetch, url, params, cursor)
            yield from page.values
            cursor = page.next

    def updated(self, pr: dict[str, Any]) -> str:
        return iso_utc(datetime.fromtimestamp(int(pr["updatedDate"]) / 1000, UTC))


def for_flavor(flavor: str) -> CloudTruth | DataCenterTruth:
    return CloudTruth() if flavor == "cloud" else DataCenterTruth()
