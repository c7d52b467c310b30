"""Repositories and their contents, listed with the fewest calls each flavor allows.

Cloud: `/2.0/user/workspaces`, then `/2.0/repositories/{workspace}?role=member` (the cross-workspace
listing is gone), every list at its largest page and trimmed with `fields=`; pages follow the opaque
`next` URL. Data Center: `/rest/api/1.0/repos` (plus the user's personal repositories) with
`limit=1000`, paged by `start` / `isLastPage` / `nextPageStart` - guarded, because some endpoints answer
`isLastPage: false` without a `nextPageStart`.

Nothing here knows about tokens: every function takes a `Fetch` (url, params) -> JSON, which the
caller builds around its token (and its retry policy). A page cursor is a string: Cloud's `next` URL,
Data Center's `start`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bitbridge.bitbucket.http import BitbucketError

Fetch = Callable[[str, dict[str, Any] | None], Any]

CLOUD = "cloud"
DATACENTER = "datacenter"

CLOUD_PAGELEN = 100  # Cloud's global maximum
CLOUD_PR_PAGELEN = 50  # the pull request list caps lower on bitbucket.org
DC_LIMIT = 1000  # Data Center's default page.max.* cap

CLOUD_PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")

# The repository listing needs only what the picker shows (the rest is fetched when importing).
_CLOUD_LIST_FIELDS = ",".join(
    [
        "next",
        *(
            f"values.{f}"
            for f in (
                "uuid",
                "full_name",
                "slug",
                "name",
                "description",
                "is_private",
                "updated_on",
                "mainbranch.name",
                "workspace.slug",
                "links.html.href",
            )
        ),
    ]
)
# Pull requests: participants and reviewers only come when asked for; links are not needed.
_CLOUD_PR_FIELDS = "+values.participants,+values.reviewers,-values.links,-values.summary"

ENTITIES = ("branches", "tags", "pull_requests", "issues")


@dataclass(frozen=True)
class Page:
    values: list[dict[str, Any]]
    next: str | None  # cursor of the following page, None on the last


@dataclass(frozen=True)
class Repo:
    """What bitbridge needs to know about a repository, the same for both flavors."""

    id: str  # Cloud uuid with braces, Data Center numeric id as a string (as in events)
    full_name: str  # workspace/slug or PROJECT_KEY/slug (personal: ~USER/slug)
    owner: str  # workspace slug or project key
    slug: str
    name: str
    description: str
    is_private: bool
    default_branch: str | None
    has_issues: bool
    html_url: str | None
    updated_on: str | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "full_name": self.full_name,
            "owner": self.owner,
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "is_private": self.is_private,
            "default_branch": self.default_branch,
            "html_url": self.html_url,
            "updated_on": self.updated_on,
        }


def split_full_name(full_name: str) -> tuple[str, str]:
    owner, sep, slug = full_name.strip().strip("/").partition("/")
    if not sep or not owner or not slug or "/" in slug:
        raise ValueError(f"not a repository full name (owner/slug): {full_name!r}")
    return owner, slug


def _q(part: str) -> str:
    return quote(part, safe="~")


# ------------------------------------------------------------------------------------------------ Cloud


def cloud_repo(raw: dict[str, Any]) -> Repo:
    full_name = str(raw.get("full_name") or "")
    owner, _, slug = full_name.partition("/")
    html = (raw.get("links") or {}).get("html") or {}
    return Repo(
        id=str(raw["uuid"]),
        full_name=full_name,
        owner=(raw.get("workspace") or {}).get("slug") or owner,
        slug=raw.get("slug") or slug,
        name=raw.get("name") or slug,
        description=raw.get("description") or "",
        is_private=bool(raw.get("is_private", True)),
        default_branch=(raw.get("mainbranch") or {}).get("name"),
        has_issues=bool(raw.get("has_issues")),
        html_url=html.get("href"),
        updated_on=raw.get("updated_on"),
    )


def cloud_workspaces(fetch: Fetch, api: str) -> list[dict[str, Any]]:
    """Every workspace the user belongs to: [{slug, name, uuid, administrator}]."""
    out: list[dict[str, Any]] = []
    url: str | None = f"{api}/user/workspaces"
    params: dict[str, Any] | None = {"pagelen": CLOUD_PAGELEN, "sort": "slug"}
    while url:
        body = fetch(url, params)
        for access in body.get("values", []):
            ws = access.get("workspace") or {}
            out.append(
                {
                    "slug": ws.get("slug"),
                    "name": ws.get("name") or ws.get("slug"),
                    "uuid": ws.get("uuid"),
                    "administrator": bool(access.get("administrator")),
                }
            )
        url, params = body.get("next"), None
    return out


def cloud_repos_page(fetch: Fetch, api: str, workspace: str, page: int, search: str | None) -> Page:
    """One page (pagelen 100) of a workspace's repositories the user can read, sorted by slug.

    Page numbers (not the `next` URL) make the caller's cursor small and stable."""
    params: dict[str, Any] = {
        "role": "member",
        "pagelen": CLOUD_PAGELEN,
        "page": page,
        "sort": "slug",
        "fields": _CLOUD_LIST_FIELDS,
    }
    if search:
        escaped = search.replace("\\", "\\\\").replace('"', '\\"')
        params["q"] = f'name ~ "{escaped}"'
    body = fetch(f"{api}/repositories/{_q(workspace)}", params)
    return Page(list(body.get("values", [])), str(page + 1) if body.get("next") else None)


def cloud_repository(fetch: Fetch, api: str, full_name: str) -> dict[str, Any]:
    owner, slug = split_full_name(full_name)
    return dict(fetch(f"{api}/repositories/{_q(owner)}/{_q(slug)}", None))


def cloud_first(api: str, full_name: str, entity: str) -> tuple[str, dict[str, Any]]:
    """URL and parameters of an entity's first page."""
    owner, slug = split_full_name(full_name)
    base = f"{api}/repositories/{_q(owner)}/{_q(slug)}"
    if entity == "branches":
        return f"{base}/refs/branches", {"pagelen": CLOUD_PAGELEN}
    if entity == "tags":
        return f"{base}/refs/tags", {"pagelen": CLOUD_PAGELEN}
    if entity == "pull_requests":
        # Sorted by id, so pull requests opened during the import land on later pages instead of
        # shifting earlier ones (page-number pagination would otherwise skip or repeat some).
        return f"{base}/pullrequests", {
            "state": list(CLOUD_PR_STATES),
            "pagelen": CLOUD_PR_PAGELEN,
            "sort": "id",
            "fields": _CLOUD_PR_FIELDS,
        }
    if entity == "issues":
        return f"{base}/issues", {"pagelen": CLOUD_PAGELEN, "sort": "id"}
    raise ValueError(f"unknown entity {entity}")


def cloud_page(fetch: Fetch, api: str, full_name: str, entity: str, cursor: str | None) -> Page:
    if cursor is None:
        url, params = cloud_first(api, full_name, entity)
        body = fetch(url, params)
    else:
        body = fetch(cursor, None)  # `next` is opaque and already carries every parameter
    return Page(list(body.get("values", [])), body.get("next"))


# ------------------------------------------------------------------------------------------------ Data Center


def dc_repo(raw: dict[str, Any]) -> Repo:
    project = raw.get("project") or {}
    key = str(project.get("key") or "")
    self_links = (raw.get("links") or {}).get("self") or []
    html = self_links[0].get("href") if self_links else None
    return Repo(
        id=str(raw["id"]),
        full_name=f"{key}/{raw['slug']}",
        owner=key,
        slug=str(raw["slug"]),
        name=raw.get("name") or raw["slug"],
        description=raw.get("description") or "",
        is_private=not raw.get("public", False),
        default_branch=None,  # not part of the repository resource; the branch list marks it
        has_issues=False,  # Data Center has no issue tracker
        html_url=html,
        updated_on=None,
    )


def _dc_next(body: dict[str, Any], start: int) -> str | None:
    if body.get("isLastPage", True):
        return None
    nxt = body.get("nextPageStart")
    if not isinstance(nxt, int) or nxt <= start:
        # BSERV-12725: not the last page, yet no (or no forward) nextPageStart. Continue after what
        # this page held rather than loop on the same start forever; stop if it held nothing.
        size = len(body.get("values") or [])
        return str(start + size) if size else None
    return str(nxt)


def dc_page_at(fetch: Fetch, url: str, params: dict[str, Any], cursor: str | None) -> Page:
    start = int(cursor or 0)
    body = fetch(url, {**params, "start": start, "limit": params.get("limit", DC_LIMIT)})
    return Page(list(body.get("values", [])), _dc_next(body, start))


def dc_repos_page(
    fetch: Fetch, api: str, start: int, limit: int, search: str | None, project: str | None
) -> tuple[Page, int]:
    """A page of the repositories the user can read; returns the page and the start it was read at."""
    params: dict[str, Any] = {"limit": limit}
    if search:
        params["name"] = search
    if project:
        params["projectkey"] = project
    return dc_page_at(fetch, f"{api}/repos", params, str(start)), start


def dc_personal_repos_page(fetch: Fetch, api: str, user_slug: str, start: int, limit: int) -> Page:
    return dc_page_at(fetch, f"{api}/users/{_q(user_slug)}/repos", {"limit": limit}, str(start))


def dc_projects(fetch: Fetch, api: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = dc_page_at(fetch, f"{api}/projects", {"limit": DC_LIMIT}, cursor)
        out.extend({"key": p.get("key"), "name": p.get("name"), "type": p.get("type")} for p in page.values)
        cursor = page.next
    return out


def _dc_base(api: str, full_name: str) -> str:
    key, slug = split_full_name(full_name)
    return f"{api}/projects/{_q(key)}/repos/{_q(slug)}"


def dc_repository(fetch: Fetch, api: str, full_name: str) -> dict[str, Any]:
    return dict(fetch(_dc_base(api, full_name), None))


def dc_first(api: str, full_name: str, entity: str) -> tuple[str, dict[str, Any]]:
    base = _dc_base(api, full_name)
    if entity == "branches":
        return f"{base}/branches", {"orderBy": "ALPHABETICAL", "details": "false"}
    if entity == "tags":
        return f"{base}/tags", {"orderBy": "ALPHABETICAL"}
    if entity == "pull_requests":
        # Oldest first: pull requests created or updated during the import move to the end.
        return f"{base}/pull-requests", {"state": "ALL", "order": "OLDEST"}
    raise ValueError(f"Data Center has no {entity}")


def dc_page(fetch: Fetch, api: str, full_name: str, entity: str, cursor: str | None) -> Page:
    url, params = dc_first(api, full_name, entity)
    return dc_page_at(fetch, url, params, cursor)


# ------------------------------------------------------------------------------------------------ both


def repository(fetch: Fetch, flavor: str, api: str, full_name: str) -> tuple[Repo, dict[str, Any]]:
    """The repository (normalised and raw); a 404 or 403 means the user cannot import it."""
    if flavor == CLOUD:
        raw = cloud_repository(fetch, api, full_name)
        return cloud_repo(raw), raw
    raw = dc_repository(fetch, api, full_name)
    return dc_repo(raw), raw


def entities(flavor: str, repo: Repo) -> list[str]:
    """What an import copies, in order (issues only where Cloud's tracker is on)."""
    if flavor == CLOUD:
        return ["branches", "tags", "pull_requests", *(["issues"] if repo.has_issues else [])]
    return ["branches", "tags", "pull_requests"]


def page(fetch: Fetch, flavor: str, api: str, full_name: str, entity: str, cursor: str | None) -> Page:
    if flavor == CLOUD:
        return cloud_page(fetch, api, full_name, entity, cursor)
    if flavor == DATACENTER:
        return dc_page(fetch, api, full_name, entity, cursor)
    raise BitbucketError(f"unknown flavor {flavor}", permanent=True)


def default_branch_head(flavor: str, branches: list[dict[str, Any]], default_branch: str | None) -> str | None:
    """The default branch's commit, from one page of branches (None if it is not on the page)."""
    for b in branches:
        if flavor == CLOUD and b.get("name") == default_branch:
            return (b.get("target") or {}).get("hash")
        if flavor == DATACENTER and (b.get("isDefault") or (default_branch and b.get("displayId") == default_branch)):
            return b.get("latestCommit")
    return None


def default_branch_name(flavor: str, branches: list[dict[str, Any]]) -> str | None:
    if flavor == DATACENTER:
        for b in branches:
            if b.get("isDefault"):
                return str(b.get("displayId"))
    return None


def pull_request_open(flavor: str, pr: dict[str, Any]) -> bool:
    return str(pr.get("state", "")).upper() == "OPEN"
