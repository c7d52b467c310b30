"""Bitbucket Cloud behind `api.Bitbucket`.

Listing: `/2.0/user/workspaces`, then `/2.0/repositories/{workspace}?role=member` (the cross-workspace
listing is gone), every list at its largest page and trimmed with `fields=`; pages follow the opaque
`next` URL. OAuth: client credentials as HTTP Basic only, scopes fixed on the consumer, no PKCE.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from bitbridge.bitbucket import CLOUD, cloud_review, review
from bitbridge.bitbucket.event_keys import SUBSCRIBED_EVENTS
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.bitbucket.identity import Identity
from bitbridge.bitbucket.limits import CLOUD_CLASSES, Limits, cloud_class, cloud_defaults
from bitbridge.bitbucket.repos import (
    BadListState,
    ByteBudget,
    Fetch,
    Get,
    HookState,
    Listed,
    ListQuery,
    Page,
    Repo,
    counter,
    found_or_none,
    hook_or_none,
    iso_utc,
    q,
    split_full_name,
)

WEB_URL = "https://bitbucket.org"
API_URL = "https://api.bitbucket.org/2.0"
PAGELEN = 100  # Cloud's global maximum
PR_PAGELEN = 50  # the pull request list caps lower on bitbucket.org
PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")
MAX_WORKSPACES = 10_000  # in a listing state (a client's cursor): more than anyone belongs to
MAX_PAGE = 100_000

# The repository listing needs only what the picker shows (the rest is fetched when importing).
_LIST_FIELDS = ",".join(
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
_PR_FIELDS = "+values.participants,+values.reviewers,-values.links,-values.summary"
# A granted scope implies these narrower ones.
_IMPLIED_BY = {
    "repository": {"repository:write", "pullrequest", "pullrequest:write", "project", "project:admin"},
    "email": {"account", "account:write"},
    "pullrequest": {"pullrequest:write"},
    "issue": {"issue:write"},
    "account": {"account:write"},
}


def first(api: str, full_name: str, entity: str) -> tuple[str, dict[str, Any]]:
    """URL and parameters of an entity's first page."""
    owner, slug = split_full_name(full_name)
    base = f"{api}/repositories/{q(owner)}/{q(slug)}"
    if entity == "branches":
        return f"{base}/refs/branches", {"pagelen": PAGELEN}
    if entity == "tags":
        return f"{base}/refs/tags", {"pagelen": PAGELEN}
    if entity == "pull_requests":
        # Sorted by id, so pull requests opened during the import land on later pages instead of
        # shifting earlier ones (page-number pagination would otherwise skip or repeat some).
        return f"{base}/pullrequests", {
            "state": list(PR_STATES),
            "pagelen": PR_PAGELEN,
            "sort": "id",
            "fields": _PR_FIELDS,
        }
    if entity == "issues":
        return f"{base}/issues", {"pagelen": PAGELEN, "sort": "id"}
    raise ValueError(f"unknown entity {entity}")


def workspaces(fetch: Fetch, api: str) -> list[dict[str, Any]]:
    """Every workspace the user belongs to: [{slug, name, uuid, administrator}]."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = _paged(fetch, f"{api}/user/workspaces", {"pagelen": PAGELEN, "sort": "slug"}, cursor)
        for access in page.values:
            ws = access.get("workspace") or {}
            out.append(
                {
                    "slug": ws.get("slug"),
                    "name": ws.get("name") or ws.get("slug"),
                    "uuid": ws.get("uuid"),
                    "administrator": bool(access.get("administrator")),
                }
            )
        if page.next is None:
            return out
        cursor = page.next


def repos_page(fetch: Fetch, api: str, workspace: str, page: int, search: str | None) -> Page:
    """One page (pagelen 100) of a workspace's repositories the user can read, sorted by slug.

    Page numbers (not the `next` URL) make the listing's cursor small and stable."""
    params: dict[str, Any] = {
        "role": "member",
        "pagelen": PAGELEN,
        "page": page,
        "sort": "slug",
        "fields": _LIST_FIELDS,
    }
    if search:
        escaped = search.replace("\\", "\\\\").replace('"', '\\"')
        params["q"] = f'name ~ "{escaped}"'
    body = fetch(f"{api}/repositories/{q(workspace)}", params)
    return Page(list(body.get("values", [])), str(page + 1) if body.get("next") else None)


def _checked_state(state: dict[str, Any]) -> tuple[list[str], int, int]:
    """(workspaces still to read, page, skip) of a listing state this module handed out; BadListState else."""
    ws = state.get("ws")
    if set(state) - {"ws", "page", "skip"} or not isinstance(ws, list) or len(ws) > MAX_WORKSPACES:
        raise BadListState("not a Cloud listing state")
    if not all(isinstance(slug, str) and 0 < len(slug) <= 100 for slug in ws):
        raise BadListState("not a workspace")
    return list(ws), counter(state, "page", 1, MAX_PAGE), counter(state, "skip", 0, PAGELEN)


def _paged(fetch: Fetch, url: str, params: dict[str, Any], cursor: str | None) -> Page:
    # `next` is opaque and already carries every parameter; it is fetched with the user's token, so only
    # on the API's own origin (a page that points elsewhere would hand the token to another host).
    if cursor is not None and _origin(cursor) != _origin(url):
        raise BitbucketError("Bitbucket's next page link is not on its API origin; not followed", permanent=True)
    body = fetch(url, params) if cursor is None else fetch(cursor, None)
    return Page(list(body.get("values", [])), body.get("next"))


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an absolute http(s) URL, None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


class Cloud:
    flavor = CLOUD
    display_name = "Bitbucket Cloud"
    # repository:admin: adding the provider's deploy key (it does not imply repository, so both are asked).
    default_scopes: tuple[str, ...] = (
        "account",
        "email",
        "repository",
        "repository:admin",
        "pullrequest",
        "issue",
        "webhook",
    )
    permissions_to_tick = (
        "Account: Email, Read; Repositories: Read, Admin; Pull requests: Read (Write too, for products that approve, "
        "merge or decline through bitbridge); Issues: Read; Webhooks: Read and write"
    )
    default_web_url: str | None = WEB_URL
    web_url_name = "web URL"
    requires_https = False  # bitbucket.org is HTTPS; a custom URL is checked like any other
    deletes_pull_requests = False
    probes_workspaces = True
    uses_pkce = False

    # -- registry and OAuth ------------------------------------------------------------------------
    def default_api_url(self, web_url: str, web_url_given: bool) -> str:
        return f"{web_url}/2.0" if web_url_given else API_URL

    def default_label(self, web_url: str) -> str:
        return "Bitbucket"

    def authorize_url(self, web_url: str) -> str:
        return f"{web_url.rstrip('/')}/site/oauth2/authorize"

    def token_url(self, web_url: str) -> str:
        return f"{web_url.rstrip('/')}/site/oauth2/access_token"

    def oauth_options(self, scopes: str) -> dict[str, Any]:
        # Cloud accepts client credentials only as HTTP Basic; its scopes are fixed on the consumer.
        return {"token_endpoint_auth_method": "client_secret_basic", "scope": None, "code_challenge_method": None}

    def refresh_parameters(self, redirect_uri: str | None) -> dict[str, Any]:
        return {}

    def missing_scopes(self, wanted: list[str], granted: set[str]) -> list[str]:
        return [s for s in wanted if s not in granted and not (_IMPLIED_BY.get(s, set()) & granted)]

    def token_probe(self, client_id: str, client_secret: str, callback: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": "bitbridge-preflight", "redirect_uri": callback}
        return {"data": form, "auth": (client_id, client_secret)}

    def revocation_note(self, web_url: str) -> str:
        # No documented token-revocation endpoint (../shared/docs/bitbucket-api.md, "Revocation").
        return (
            "Bitbucket Cloud has no API to revoke the grant: to revoke it too, open "
            f"{web_url.rstrip('/')}/account/settings/app-authorizations/ and revoke bitbridge."
        )

    # -- identity ----------------------------------------------------------------------------------
    def identify(self, get: Get, web_url: str, api_url: str) -> Identity:
        user = get(f"{api_url}/user", "reading the Bitbucket user", None).json()
        emails = get(f"{api_url}/user/emails", "reading the user's email addresses", None).json()
        primary = next(
            (e["email"] for e in emails.get("values", []) if e.get("is_primary") and e.get("is_confirmed")), None
        )
        external_id = user.get("uuid") or user.get("account_id")
        if not external_id:
            raise BitbucketError("Bitbucket returned a user without a uuid or account id", permanent=True)
        return Identity(str(external_id), user.get("nickname"), user.get("display_name"), primary)

    # -- repositories ------------------------------------------------------------------------------
    def to_repo(self, raw: dict[str, Any]) -> Repo:
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
            size=int(raw["size"]) if isinstance(raw.get("size"), int) else None,
        )

    def repository(self, fetch: Fetch, api: str, full_name: str) -> tuple[Repo, dict[str, Any]]:
        owner, slug = split_full_name(full_name)
        raw = dict(fetch(f"{api}/repositories/{q(owner)}/{q(slug)}", None))
        return self.to_repo(raw), raw

    def list_repositories(self, fetch: Fetch, api: str, query: ListQuery) -> Listed:
        """State: `{"ws": [workspaces still to read], "page": n, "skip": k}` (page numbers over
        `sort=slug`, so the same state gives the same repositories)."""
        search, scope, state, limit = query.search, query.scope, query.state, query.limit
        if state is None:
            slugs = [scope] if scope else [w["slug"] for w in workspaces(fetch, api)]
            state = {"ws": slugs, "page": 1, "skip": 0}
        out: list[Repo] = []
        ws, page_no, skip = _checked_state(state)
        budget = ByteBudget()
        while ws and len(out) < limit:
            page = repos_page(fetch, api, ws[0], page_no, search)
            rest = [self.to_repo(v) for v in page.values[skip:]]
            take = budget.take(rest, limit - len(out))
            out.extend(take)
            if len(take) < len(rest):
                return Listed(out, {"ws": ws, "page": page_no, "skip": skip + len(take)})
            if page.next:
                page_no, skip = page_no + 1, 0
            else:
                ws, page_no, skip = ws[1:], 1, 0
        return Listed(out, {"ws": ws, "page": page_no, "skip": skip} if ws else None)

    def scopes(self, fetch: Fetch, api: str, username: str) -> list[dict[str, Any]]:
        return [
            {"key": w["slug"], "name": w["name"], "kind": "workspace", "administrator": w["administrator"]}
            for w in workspaces(fetch, api)
        ]

    def entities(self, repo: Repo) -> list[str]:
        return ["branches", "tags", "pull_requests", *(["issues"] if repo.has_issues else [])]

    def page(self, fetch: Fetch, api: str, full_name: str, entity: str, cursor: str | None) -> Page:
        url, params = first(api, full_name, entity)
        return _paged(fetch, url, params, cursor)

    def default_branch(self, branches: list[dict[str, Any]], known: str | None) -> tuple[str | None, str | None]:
        # The repository resource names it (`mainbranch`); the branch list only gives its head.
        head = next(((b.get("target") or {}).get("hash") for b in branches if known and b.get("name") == known), None)
        return known, head

    # -- review data --------------------------------------------------------------------------------
    def review_reads(self, repo: Repo, wanted: set[str]) -> list[review.Read]:
        return cloud_review.reads(wanted, repo.has_issues)

    def review_page(
        self, fetch: Fetch, api: str, full_name: str, read: review.Read, parent: dict[str, Any], cursor: str | None
    ) -> review.NestedPage:
        return cloud_review.page(fetch, api, full_name, read, parent, cursor)

    def derived(self, entity: str, values: list[dict[str, Any]], wanted: set[str]) -> dict[str, list[dict[str, Any]]]:
        if entity == "pull_requests" and review.PULL_REQUEST_REVIEWS in wanted:
            return {review.PULL_REQUEST_REVIEWS: cloud_review.reviews(values)}
        return {}

    def people_in(self, value: Any) -> list[dict[str, Any]]:
        return cloud_review.people_in(value)

    # -- hooks -------------------------------------------------------------------------------------
    @property
    def webhook_events(self) -> tuple[str, ...]:
        return SUBSCRIBED_EVENTS[CLOUD]

    def hooks_url(self, api: str, owner: str, slug: str) -> str:
        return f"{api}/repositories/{q(owner)}/{q(slug)}/hooks"

    def hook_body(self, url: str, events: tuple[str, ...], secret: str) -> dict[str, Any]:
        return {"description": "bitbridge", "url": url, "active": True, "events": list(events), "secret": secret}

    def hooks_page(self, fetch: Fetch, hooks_url: str, cursor: str | None) -> Page:
        return _paged(fetch, hooks_url, {"pagelen": PAGELEN}, cursor)

    # -- reconciliation ----------------------------------------------------------------------------
    def _repo_url(self, api: str, full_name: str) -> str:
        owner, slug = split_full_name(full_name)
        return f"{api}/repositories/{q(owner)}/{q(slug)}"

    def hook(self, fetch: Fetch, api: str, full_name: str, hook_id: str) -> HookState | None:
        raw = hook_or_none(fetch, f"{self._repo_url(api, full_name)}/hooks/{quote(hook_id, safe='')}")
        if raw is None:
            return None
        events = list(raw.get("events") or [])
        return HookState(str(raw.get("url")), bool(raw.get("active")), events, raw.get("secret_set"))

    def ref_heads(self, fetch: Fetch, api: str, full_name: str) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for kind, path in (("b", "branches"), ("t", "tags")):
            url, params = f"{self._repo_url(api, full_name)}/refs/{path}", {"pagelen": PAGELEN, "fields": _REF_FIELDS}
            cursor: str | None = None
            while True:
                page = _paged(fetch, url, params, cursor)
                for name, ident, commit in map(self.ref_head, page.values):
                    out[f"{kind}:{name}"] = (ident, commit)
                if page.next is None:
                    break
                cursor = page.next
        return out

    def ref_head(self, value: dict[str, Any]) -> tuple[str, str, str]:
        commit = str(value["target"]["hash"]).lower()  # a tag's target is its commit, in pushes too
        return str(value["name"]), commit, commit

    def refs_marks(self, fetch: Fetch, api: str, owner: str, since: list[str]) -> dict[str, str] | None:
        # A repository's `updated_on` moves with pushes and ref changes (pull request activity alone leaves
        # it; README "Limits", infra/emulator/README.md "updated_on"): the workspace's listing filtered past
        # the oldest mark, newest first, 100 a page - one call when nothing changed.
        params: dict[str, Any] = {"pagelen": PAGELEN, "sort": "-updated_on", "fields": _MARK_FIELDS}
        if since:
            params["q"] = f"updated_on > {min(since, key=datetime.fromisoformat)}"
        out: dict[str, str] = {}
        url, cursor = f"{api}/repositories/{q(owner)}", None
        while True:
            page = _paged(fetch, url, params, cursor)
            out.update((str(v["uuid"]), str(v["updated_on"])) for v in page.values)
            if page.next is None:
                return out
            cursor = page.next

    def refs_mark(self, fetch: Fetch, api: str, full_name: str) -> str | None:
        return str(fetch(self._repo_url(api, full_name), {"fields": "updated_on"})["updated_on"])

    def pull_request_marks(self, fetch: Fetch, api: str, owner: str, since: str, most: int) -> dict[str, str] | None:
        # The workspace's members, then each one's pull requests updated after `since` across the workspace
        # (Cloud OpenAPI: GET /workspaces/{workspace}/pullrequests/{selected_user}, filtered and sorted as any
        # collection): tens of calls for a workspace of a thousand repositories, where each repository's own
        # page costs one each. Counted in the `other` class, not `repositories`.
        if most < 2:
            return None  # one repository's page is cheaper than any member list
        try:
            members = self._members(fetch, api, owner, most - 1)
        except BitbucketError as exc:
            if exc.status in (401, 403, 404):  # no `account` scope, or not a member: read each repository
                return None
            raise
        if members is None:  # more members than due repositories: each repository's page costs less
            return None
        params: dict[str, Any] = {
            "state": list(PR_STATES),
            "q": f"updated_on > {since}",
            "sort": "-updated_on",
            "pagelen": PR_PAGELEN,
            "fields": _PR_MARK_FIELDS,
        }
        out: dict[str, str] = {}
        for member in members:
            url, cursor = f"{api}/workspaces/{q(owner)}/pullrequests/{q(member)}", None
            while True:
                page = _paged(fetch, url, params, cursor)
                for pr in page.values:
                    repository, updated = str(pr["destination"]["repository"]["uuid"]), self.pull_request_updated(pr)
                    out[repository] = max(out.get(repository, updated), updated)
                if page.next is None:
                    break
                cursor = page.next
        return out

    def _members(self, fetch: Fetch, api: str, owner: str, most: int) -> list[str] | None:
        """The workspace's members' uuids; None as soon as there are more than `most` (no page more is read)."""
        url, params, cursor = (
            f"{api}/workspaces/{q(owner)}/members",
            {"pagelen": PAGELEN, "fields": _MEMBER_FIELDS},
            None,
        )
        uuids: list[str] = []
        while True:
            page = _paged(fetch, url, params, cursor)
            uuids += [str(m["user"]["uuid"]) for m in page.values]
            if len(uuids) > most:
                return None
            if page.next is None:
                return uuids
            cursor = page.next

    def pull_requests_newest_first(self, fetch: Fetch, api: str, full_name: str) -> Iterator[dict[str, Any]]:
        url = f"{self._repo_url(api, full_name)}/pullrequests"
        params = {
            "state": list(PR_STATES),
            "sort": "-updated_on",
            "pagelen": PR_PAGELEN,
            "fields": _RECONCILE_PR_FIELDS,
        }
        cursor: str | None = None
        while True:
            page = _paged(fetch, url, params, cursor)
            yield from page.values
            if page.next is None:
                return
            cursor = page.next

    def pull_request_updated(self, pr: dict[str, Any]) -> str:
        return iso_utc(datetime.fromisoformat(str(pr["updated_on"])))

    def open_pull_requests(self, fetch: Fetch, api: str, full_name: str) -> list[dict[str, Any]]:
        url = f"{self._repo_url(api, full_name)}/pullrequests"
        params = {"state": "OPEN", "pagelen": PR_PAGELEN, "fields": _OPEN_PR_FIELDS}
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = _paged(fetch, url, params, cursor)
            out += page.values
            if page.next is None:
                return out
            cursor = page.next

    def pull_request_gone(self, fetch: Fetch, api: str, full_name: str, pr_id: int) -> bool:
        return found_or_none(fetch, f"{self._repo_url(api, full_name)}/pullrequests/{int(pr_id)}") is None

    def pull_request_created(self, pr: dict[str, Any]) -> str:
        return iso_utc(datetime.fromisoformat(str(pr["created_on"])))

    def review_standings(self, pr: dict[str, Any]) -> dict[str, review.Standing]:
        out: dict[str, review.Standing] = {}
        for part in pr.get("participants") or []:
            user, state = part.get("user"), part.get("state")
            person = cloud_review.person_id(user)
            if person is not None and isinstance(user, dict):
                out[person] = review.Standing(user, _REVIEW_STATES.get(str(state), review.UNAPPROVED))
        return out

    def pull_request_discussion(
        self, fetch: Fetch, api: str, full_name: str, pr: dict[str, Any]
    ) -> list[review.Discussed]:
        url, params = cloud_review.first(api, full_name, cloud_review.COMMENTS, pr)
        out: list[review.Discussed] = []
        cursor: str | None = None
        while True:
            page = _paged(fetch, url, params, cursor)
            for c in page.values:
                parent = c.get("parent")
                out.append(
                    review.Discussed(
                        c,
                        int(parent["id"]) if isinstance(parent, dict) else None,
                        review.from_iso(c.get("created_on")),
                        c.get("deleted") is True,
                    )
                )
            if page.next is None:
                return out
            cursor = page.next

    # -- git over HTTPS and deploy keys ------------------------------------------------------------
    def git_url(self, web_url: str, owner: str, slug: str) -> str:
        return f"{web_url.rstrip('/')}/{q(owner)}/{q(slug)}.git"

    def git_authorization(self, token: str) -> str:
        # Cloud takes an OAuth token for git only as the password of the literal user x-token-auth.
        return "Basic " + base64.b64encode(f"x-token-auth:{token}".encode()).decode()

    def deploy_keys_url(self, web_url: str, api: str, owner: str, slug: str) -> str:
        return f"{api}/repositories/{q(owner)}/{q(slug)}/deploy-keys"

    def deploy_key_body(self, key_line: str, label: str) -> dict[str, Any]:
        return {"key": key_line, "label": label}  # a deploy key only ever reads

    def deploy_keys_page(self, fetch: Fetch, url: str, cursor: str | None) -> Page:
        return _paged(fetch, url, {"pagelen": PAGELEN}, cursor)

    def deploy_key_of(self, raw: dict[str, Any]) -> tuple[str, str]:
        return str(raw.get("id")), str(raw.get("key") or "")

    def deploy_key_settings_url(self, web_url: str, owner: str, slug: str) -> str:
        return f"{web_url.rstrip('/')}/{q(owner)}/{q(slug)}/admin/access-keys/"

    # -- rate limits ---------------------------------------------------------------------------------
    def default_limits(self) -> Limits:
        return cloud_defaults()

    def rate_limit_class(self, url: str | None, api_url: str, resource: str | None = None) -> str:
        if url is not None:
            return cloud_class(url, api_url)
        return resource if resource in CLOUD_CLASSES else "other"


_REF_FIELDS = "next,values.name,values.target.hash"
_MARK_FIELDS = "next,values.uuid,values.updated_on"
_PR_MARK_FIELDS = "next,values.updated_on,values.destination.repository.uuid"
_MEMBER_FIELDS = "next,values.user.uuid"
# What a pull request event's section needs, and nothing else.
_RECONCILE_PR_FIELDS = ",".join(
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

# Open pull requests for the review sweep: the event section's fields, when opened, and who reviewed how.
_OPEN_PR_FIELDS = ",".join(
    [
        _RECONCILE_PR_FIELDS,
        "values.created_on",
        "values.participants.state",
        "values.participants.role",
        "values.participants.user",
    ]
)
_REVIEW_STATES = {"approved": review.APPROVED, "changes_requested": review.CHANGES_REQUESTED}

CLOUD_API = Cloud()
