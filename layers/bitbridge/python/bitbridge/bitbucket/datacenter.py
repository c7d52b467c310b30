"""Bitbucket Data Center behind `api.Bitbucket`.

Listing: `/rest/api/1.0/repos` (plus the user's personal repositories) with `limit=1000`, paged by
`start` / `isLastPage` / `nextPageStart` - guarded in one place (`page_at`), because some endpoints
answer `isLastPage: false` without a `nextPageStart` (BSERV-12725). OAuth: client credentials in the
body, scopes on the request, PKCE, and `redirect_uri` again on every refresh. No issue tracker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from bitbridge.bitbucket import DATACENTER, datacenter_review, review
from bitbridge.bitbucket.event_keys import SUBSCRIBED_EVENTS
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.bitbucket.identity import Identity
from bitbridge.bitbucket.limits import DC_CLASS, Limits, datacenter_defaults
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

LIMIT = 1000  # Data Center's default page.max.* cap
MAX_START = 10_000_000  # a listing position (a client's cursor) no instance reaches
# Data Center's OAuth scopes are hierarchical: each implies the ones before it ("Repositories: Admin"
# implies write and read; no scope at all is PUBLIC_REPOS). Scopes outside this chain imply only themselves.
SCOPE_CHAIN = ("PUBLIC_REPOS", "REPO_READ", "REPO_WRITE", "REPO_ADMIN", "PROJECT_ADMIN")


def next_start(body: dict[str, Any], start: int) -> str | None:
    if body.get("isLastPage", True):
        return None
    nxt = body.get("nextPageStart")
    if not isinstance(nxt, int) or nxt <= start:
        # BSERV-12725: not the last page, yet no (or no forward) nextPageStart. Continue after what
        # this page held rather than loop on the same start forever; stop if it held nothing.
        size = len(body.get("values") or [])
        return str(start + size) if size else None
    return str(nxt)


def page_at(fetch: Fetch, url: str, params: dict[str, Any], cursor: str | None) -> Page:
    """One page of any Data Center list; the cursor is the `start` to read at."""
    start = int(cursor or 0)
    body = fetch(url, {**params, "start": start, "limit": params.get("limit", LIMIT)})
    return Page(list(body.get("values", [])), next_start(body, start))


def _base(api: str, full_name: str) -> str:
    key, slug = split_full_name(full_name)
    return f"{api}/projects/{q(key)}/repos/{q(slug)}"


def first(api: str, full_name: str, entity: str) -> tuple[str, dict[str, Any]]:
    base = _base(api, full_name)
    if entity == "branches":
        return f"{base}/branches", {"orderBy": "ALPHABETICAL", "details": "false"}
    if entity == "tags":
        return f"{base}/tags", {"orderBy": "ALPHABETICAL"}
    if entity == "pull_requests":
        # Oldest first: pull requests created or updated during the import move to the end.
        return f"{base}/pull-requests", {"state": "ALL", "order": "OLDEST"}
    raise ValueError(f"Data Center has no {entity}")


def projects(fetch: Fetch, api: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = page_at(fetch, f"{api}/projects", {"limit": LIMIT}, cursor)
        out.extend({"key": p.get("key"), "name": p.get("name"), "type": p.get("type")} for p in page.values)
        cursor = page.next
    return out


def _checked_state(state: dict[str, Any]) -> tuple[str, int, int, bool]:
    """(phase, start, skip, own) of a listing state this module handed out; BadListState otherwise."""
    phase, own = state.get("phase"), state.get("own", False)
    if set(state) - {"phase", "start", "skip", "own"} or phase not in ("all", "personal") or not isinstance(own, bool):
        raise BadListState("not a Data Center listing state")
    return phase, counter(state, "start", 0, MAX_START), counter(state, "skip", 0, LIMIT), own


def _personal_key(username: str) -> str:
    return f"~{username.upper()}"


class DataCenter:
    flavor = DATACENTER
    display_name = "Data Center"
    default_scopes: tuple[str, ...] = ("REPO_ADMIN",)  # implies REPO_READ; needed to install repository webhooks
    permissions_to_tick = "Repositories: Admin (scope REPO_ADMIN)"
    default_web_url: str | None = None  # every installation has its own
    web_url_name = "Data Center base URL"
    requires_https = True  # Bitbucket requires it for OAuth
    deletes_pull_requests = True
    probes_workspaces = False
    uses_pkce = True

    # -- registry and OAuth ------------------------------------------------------------------------
    def default_api_url(self, web_url: str, web_url_given: bool) -> str:
        return f"{web_url}/rest/api/1.0"

    def default_label(self, web_url: str) -> str:
        return f"Bitbucket ({urlparse(web_url).hostname})"

    def authorize_url(self, web_url: str) -> str:
        return f"{web_url.rstrip('/')}/rest/oauth2/latest/authorize"

    def token_url(self, web_url: str) -> str:
        return f"{web_url.rstrip('/')}/rest/oauth2/latest/token"

    def oauth_options(self, scopes: str) -> dict[str, Any]:
        # Data Center reads client credentials from the body and takes scopes on the request.
        return {"token_endpoint_auth_method": "client_secret_post", "scope": scopes, "code_challenge_method": "S256"}

    def refresh_parameters(self, redirect_uri: str | None) -> dict[str, Any]:
        # Data Center validates redirect_uri on refresh too; a bare refresh gets invalid_grant.
        return {"redirect_uri": redirect_uri} if redirect_uri else {}

    def missing_scopes(self, wanted: list[str], granted: set[str]) -> list[str]:
        highest = max((SCOPE_CHAIN.index(g) for g in granted if g in SCOPE_CHAIN), default=-1)
        return [s for s in wanted if s not in granted and not (s in SCOPE_CHAIN and SCOPE_CHAIN.index(s) <= highest)]

    def token_probe(self, client_id: str, client_secret: str, callback: str) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": "bitbridge-preflight",
            "redirect_uri": callback,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        return {"data": urlencode(form), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}

    def revocation_note(self, web_url: str) -> str:
        # Users revoke under their profile; there is no revocation endpoint to call.
        return (
            "Bitbucket Data Center has no API to revoke the grant: to revoke it too, open your profile "
            f"on {web_url.rstrip('/')} > Manage account > Authorized applications."
        )

    # -- identity ----------------------------------------------------------------------------------
    def identify(self, get: Get, web_url: str, api_url: str) -> Identity:
        # Data Center has no "current user" REST endpoint: whoami names the user, then we look them up.
        name = get(f"{web_url}/plugins/servlet/applinks/whoami", "asking Data Center who the user is", None).text
        name = name.strip()
        if not name:
            raise BitbucketError("Data Center did not say who the token belongs to", permanent=True)
        api = f"{web_url}/rest/api/1.0"
        try:
            user = get(f"{api}/users/{quote(name, safe='')}", "reading the Data Center user", None).json()
        except BitbucketError as exc:
            if exc.status != 404:
                raise
            # A username can differ from its slug (e.g. names with "@"): search and match exactly.
            found = get(f"{api}/users", "searching Data Center users", {"filter": name}).json()
            user = next((u for u in found.get("values", []) if u.get("name") == name), None)
            if user is None:
                raise BitbucketError("Data Center user not found", status=404, permanent=True) from None
        return Identity(str(user["id"]), user.get("name"), user.get("displayName"), user.get("emailAddress"))

    # -- repositories ------------------------------------------------------------------------------
    def to_repo(self, raw: dict[str, Any]) -> Repo:
        project = raw.get("project") or {}
        key = str(project.get("key") or "")
        self_links = (raw.get("links") or {}).get("self") or []
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
            html_url=self_links[0].get("href") if self_links else None,
            updated_on=None,
        )

    def repository(self, fetch: Fetch, api: str, full_name: str) -> tuple[Repo, dict[str, Any]]:
        raw = dict(fetch(_base(api, full_name), None))
        return self.to_repo(raw), raw

    def list_repositories(self, fetch: Fetch, api: str, query: ListQuery) -> Listed:
        """State: `{"phase": "all" | "personal", "start": n, "skip": k, "own": bool}` - `/repos`, then
        the user's personal repositories unless `/repos` already listed them."""
        username, search, scope, state, limit = query.username, query.search, query.scope, query.state, query.limit
        own_key = _personal_key(username)
        if state is None:
            personal_only = bool(scope and scope.upper() == own_key)
            state = {"phase": "personal" if personal_only else "all", "start": 0, "skip": 0, "own": False}
        out: list[Repo] = []
        phase, start, skip, own = _checked_state(state)
        budget = ByteBudget()
        while phase and len(out) < limit:
            if phase == "all":
                params: dict[str, Any] = {"limit": LIMIT}
                if search:
                    params["name"] = search
                if scope:
                    params["projectkey"] = scope
                page = page_at(fetch, f"{api}/repos", params, str(start))
            else:
                page = page_at(fetch, f"{api}/users/{q(username)}/repos", {"limit": LIMIT}, str(start))
            found = [self.to_repo(v) for v in page.values]
            if phase == "personal" and search:
                found = [r for r in found if search.lower() in r.name.lower()]
            own = own or any(r.owner.upper() == own_key for r in found if phase == "all")
            rest = found[skip:]
            take = budget.take(rest, limit - len(out))
            out.extend(take)
            if len(take) < len(rest):
                return Listed(out, {"phase": phase, "start": start, "skip": skip + len(take), "own": own})
            if page.next is not None:
                start, skip = int(page.next), 0
            elif phase == "all" and not own and not scope and username:
                phase, start, skip = "personal", 0, 0  # /repos did not list the user's own: read them
            else:
                phase = ""
        return Listed(out, {"phase": phase, "start": start, "skip": skip, "own": own} if phase else None)

    def scopes(self, fetch: Fetch, api: str, username: str) -> list[dict[str, Any]]:
        items = [{"key": p["key"], "name": p["name"], "kind": "project"} for p in projects(fetch, api)]
        if username:
            items.append({"key": _personal_key(username), "name": "Personal repositories", "kind": "personal"})
        return items

    def entities(self, repo: Repo) -> list[str]:
        return ["branches", "tags", "pull_requests"]

    def page(self, fetch: Fetch, api: str, full_name: str, entity: str, cursor: str | None) -> Page:
        url, params = first(api, full_name, entity)
        return page_at(fetch, url, params, cursor)

    def default_branch(self, branches: list[dict[str, Any]], known: str | None) -> tuple[str | None, str | None]:
        # The repository resource does not name it; the branch list marks it `isDefault`.
        name = known or next((str(b.get("displayId")) for b in branches if b.get("isDefault")), None)
        head = next(
            (b.get("latestCommit") for b in branches if b.get("isDefault") or (name and b.get("displayId") == name)),
            None,
        )
        return name, head

    # -- review data --------------------------------------------------------------------------------
    def review_reads(self, repo: Repo, wanted: set[str]) -> list[review.Read]:
        return datacenter_review.reads(wanted)

    def review_page(
        self, fetch: Fetch, api: str, full_name: str, read: review.Read, parent: dict[str, Any], cursor: str | None
    ) -> review.NestedPage:
        page = page_at(fetch, datacenter_review.path(_base(api, full_name), read, parent), {"limit": LIMIT}, cursor)
        return review.NestedPage(
            datacenter_review.lines(read, page.values, parent), datacenter_review.people_in(page.values), page.next
        )

    def derived(self, entity: str, values: list[dict[str, Any]], wanted: set[str]) -> dict[str, list[dict[str, Any]]]:
        if entity == "pull_requests" and review.PULL_REQUEST_REVIEWS in wanted:
            return {review.PULL_REQUEST_REVIEWS: datacenter_review.reviews(values)}
        return {}

    def people_in(self, value: Any) -> list[dict[str, Any]]:
        return datacenter_review.people_in(value)

    # -- hooks -------------------------------------------------------------------------------------
    @property
    def webhook_events(self) -> tuple[str, ...]:
        return SUBSCRIBED_EVENTS[DATACENTER]

    def hooks_url(self, api: str, owner: str, slug: str) -> str:
        return f"{api}/projects/{q(owner)}/repos/{q(slug)}/webhooks"

    def hook_body(self, url: str, events: tuple[str, ...], secret: str) -> dict[str, Any]:
        return {
            "name": "bitbridge",
            "url": url,
            "active": True,
            "events": list(events),
            "configuration": {"secret": secret},
        }

    def hooks_page(self, fetch: Fetch, hooks_url: str, cursor: str | None) -> Page:
        return page_at(fetch, hooks_url, {"limit": LIMIT}, cursor)

    # -- reconciliation ----------------------------------------------------------------------------
    def hook(self, fetch: Fetch, api: str, full_name: str, hook_id: str) -> HookState | None:
        raw = hook_or_none(fetch, f"{_base(api, full_name)}/webhooks/{quote(hook_id, safe='')}")
        if raw is None:
            return None
        # Data Center never shows whether a secret is set: None (a repair re-sends it anyway).
        return HookState(str(raw.get("url")), bool(raw.get("active")), list(raw.get("events") or []), None)

    def ref_heads(self, fetch: Fetch, api: str, full_name: str) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for kind, path in (("b", "branches"), ("t", "tags")):
            url, params = f"{_base(api, full_name)}/{path}", {"orderBy": "MODIFICATION", "limit": LIMIT}
            cursor: str | None = "0"
            while cursor is not None:
                page = page_at(fetch, url, params, cursor)
                for name, ident, commit in map(self.ref_head, page.values):
                    out[f"{kind}:{name}"] = (ident, commit)
                cursor = page.next
        return out

    def ref_head(self, value: dict[str, Any]) -> tuple[str, str, str]:
        # latestCommit: for an annotated tag the tagged commit, as events show it; a tag's `hash` is the
        # tag object, which `repo:refs_changed` names as toHash (with or without toCommit).
        commit = str(value.get("latestCommit") or value.get("latestChangeset") or "").lower()
        return str(value["displayId"]), str(value.get("hash") or commit).lower(), commit

    def refs_marks(self, fetch: Fetch, api: str, owner: str, since: list[str]) -> dict[str, str] | None:
        return None  # no listing moves with a repository's refs: one probe per repository (`refs_mark`)

    def pull_request_marks(self, fetch: Fetch, api: str, owner: str, since: str, most: int) -> dict[str, str] | None:
        return None  # no query across a project's repositories: each repository's pull requests are read

    def refs_mark(self, fetch: Fetch, api: str, full_name: str) -> str | None:
        # The push log, newest first: every ref added, moved or deleted (pushes, branch and tag changes,
        # merges) is an activity with a growing id (DC OpenAPI `getRefChangeActivity`). It needs REPO_ADMIN,
        # as the hook does: without it Bitbucket will not say, and the refs are read.
        try:
            body = fetch(f"{_base(api, full_name)}/ref-change-activities", {"limit": 1})
        except BitbucketError as exc:
            if exc.status in (401, 403):
                return None
            raise
        values = body.get("values") or []
        return str(values[0]["id"]) if values else "none"

    def pull_requests_newest_first(self, fetch: Fetch, api: str, full_name: str) -> Iterator[dict[str, Any]]:
        # NEWEST = last updated first; a quiet repository needs one page of 100.
        params = {"state": "ALL", "order": "NEWEST", "withProperties": "false", "limit": RECONCILE_PR_LIMIT}
        cursor: str | None = "0"
        while cursor is not None:
            page = page_at(fetch, f"{_base(api, full_name)}/pull-requests", params, cursor)
            yield from page.values
            cursor = page.next

    def pull_request_updated(self, pr: dict[str, Any]) -> str:
        return iso_utc(datetime.fromtimestamp(int(pr["updatedDate"]) / 1000, UTC))

    def open_pull_requests(self, fetch: Fetch, api: str, full_name: str) -> list[dict[str, Any]]:
        params = {"state": "OPEN", "withProperties": "false", "limit": RECONCILE_PR_LIMIT}
        out: list[dict[str, Any]] = []
        cursor: str | None = "0"
        while cursor is not None:
            page = page_at(fetch, f"{_base(api, full_name)}/pull-requests", params, cursor)
            out += page.values
            cursor = page.next
        return out

    def pull_request_gone(self, fetch: Fetch, api: str, full_name: str, pr_id: int) -> bool:
        return found_or_none(fetch, f"{_base(api, full_name)}/pull-requests/{int(pr_id)}") is None

    def pull_request_created(self, pr: dict[str, Any]) -> str:
        return iso_utc(datetime.fromtimestamp(int(pr["createdDate"]) / 1000, UTC))

    def review_standings(self, pr: dict[str, Any]) -> dict[str, review.Standing]:
        out: dict[str, review.Standing] = {}
        for part in [*(pr.get("reviewers") or []), *(pr.get("participants") or [])]:
            user = part.get("user")
            person = datacenter_review.person_id(user)
            if person is not None and isinstance(user, dict):
                status = _REVIEW_STATUSES.get(str(part.get("status")), review.UNAPPROVED)
                out[person] = review.Standing(user, status)
        return out

    def pull_request_discussion(
        self, fetch: Fetch, api: str, full_name: str, pr: dict[str, Any]
    ) -> list[review.Discussed]:
        # No listing of a pull request's comments: each thread is one COMMENTED entry of /activities.
        read = review.Read(datacenter_review.ACTIVITIES, "pull_requests", (review.PULL_REQUEST_COMMENTS,))
        url = datacenter_review.path(_base(api, full_name), read, pr)
        out: list[review.Discussed] = []
        cursor: str | None = "0"
        while cursor is not None:
            page = page_at(fetch, url, {"limit": RECONCILE_PR_LIMIT}, cursor)
            for entry in page.values:
                if datacenter_review.is_thread_root(entry):
                    out += _thread(entry["comment"], None)
            cursor = page.next
        return out

    # -- git over HTTPS and access keys ------------------------------------------------------------
    def git_url(self, web_url: str, owner: str, slug: str) -> str:
        return f"{web_url.rstrip('/')}/scm/{q(owner)}/{q(slug)}.git"

    def git_authorization(self, token: str) -> str:
        return f"Bearer {token}"

    def deploy_keys_url(self, web_url: str, api: str, owner: str, slug: str) -> str:
        return f"{web_url.rstrip('/')}/rest/keys/latest/projects/{q(owner)}/repos/{q(slug)}/ssh"

    def deploy_key_body(self, key_line: str, label: str) -> dict[str, Any]:
        return {"key": {"text": key_line, "label": label}, "permission": "REPO_READ"}

    def deploy_keys_page(self, fetch: Fetch, url: str, cursor: str | None) -> Page:
        return page_at(fetch, url, {"limit": LIMIT}, cursor)

    def deploy_key_of(self, raw: dict[str, Any]) -> tuple[str, str]:
        key = raw.get("key") or {}
        return str(key.get("id")), str(key.get("text") or "")

    def deploy_key_settings_url(self, web_url: str, owner: str, slug: str) -> str:
        return f"{web_url.rstrip('/')}/plugins/servlet/ssh/projects/{q(owner)}/repos/{q(slug)}/keys"

    # -- rate limits ---------------------------------------------------------------------------------
    def default_limits(self) -> Limits:
        return datacenter_defaults()

    def rate_limit_class(self, url: str | None, api_url: str, resource: str | None = None) -> str:
        return DC_CLASS  # one bucket per user over every authenticated request, REST and git alike


RECONCILE_PR_LIMIT = 100
_REVIEW_STATUSES = {"APPROVED": review.APPROVED, "NEEDS_WORK": review.CHANGES_REQUESTED}


def _thread(comment: dict[str, Any], parent: int | None) -> list[review.Discussed]:
    """A comment and its replies (nested under `comments`), depth first."""
    created = review.from_millis(comment.get("createdDate"))
    out = [review.Discussed(comment, parent, created, False)]
    for reply in comment.get("comments") or []:
        if isinstance(reply, dict):
            out += _thread(reply, int(comment["id"]))
    return out


DATACENTER_API = DataCenter()
