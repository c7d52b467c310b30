"""Bitbucket Data Center front-end: REST 1.0 (`/rest/api/1.0` == `/rest/api/latest`), start/limit paging,
DC error bodies, personal repositories (`~USER`), webhooks with REPO_ADMIN, and DC webhook payloads."""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from dulwich.patch import is_binary
from werkzeug.wrappers import Response

from .git import DIR_MODE, EXEC_MODE, SUBMODULE_MODE, Change, Entry, GitError
from .models import (
    DC,
    LEVELS,
    ZERO_HASH,
    BadRequest,
    Comment,
    CommitStatus,
    Conflict,
    EmulatorError,
    Event,
    Forbidden,
    Hook,
    MergeConflicted,
    NotFound,
    Project,
    PullRequest,
    Ref,
    Repository,
    Reviewer,
    Token,
    Unauthorized,
    User,
    millis,
    now,
)
from .web import Ctx, Routes, bearer_token, int_arg, json_response, natural_key

routes = Routes()
API = "/rest/api/<any('1.0', 'latest'):api_version>"

# Token scope hierarchy of DC's OAuth 2 provider: each scope implies the ones listed.
_SCOPE_IMPLIES = {
    "PUBLIC_REPOS": set(),
    "REPO_READ": {"PUBLIC_REPOS"},
    "REPO_WRITE": {"REPO_READ", "PUBLIC_REPOS"},
    "REPO_ADMIN": {"REPO_WRITE", "REPO_READ", "PUBLIC_REPOS"},
    "PROJECT_ADMIN": {"REPO_ADMIN", "REPO_WRITE", "REPO_READ", "PUBLIC_REPOS"},
    "ADMIN_WRITE": {"PROJECT_ADMIN", "REPO_ADMIN", "REPO_WRITE", "REPO_READ", "PUBLIC_REPOS"},
    "SYSTEM_ADMIN": {"ADMIN_WRITE", "PROJECT_ADMIN", "REPO_ADMIN", "REPO_WRITE", "REPO_READ", "PUBLIC_REPOS"},
}
SCOPES = tuple(_SCOPE_IMPLIES)

# The keys a webhook can subscribe to, as a live instance takes them: pr:to_ref_updated and
# pr:reviewer:changes_requested, which Atlassian's event payload page names, are refused ("the event ... is
# unknown"; vriesdemichael/bitbucket-data-center-cli, read off a running Bitbucket).
WEBHOOK_EVENTS = {
    "repo:refs_changed",
    "repo:modified",
    "repo:forked",
    "repo:comment:added",
    "repo:comment:edited",
    "repo:comment:deleted",
    "repo:secret_detected",
    "mirror:repo_synchronized",
    "project:modified",
    "pr:opened",
    "pr:from_ref_updated",
    "pr:modified",
    "pr:reviewer:updated",
    "pr:reviewer:approved",
    "pr:reviewer:unapproved",
    "pr:reviewer:needs_work",
    "pr:merged",
    "pr:declined",
    "pr:deleted",
    "pr:comment:added",
    "pr:comment:edited",
    "pr:comment:deleted",
}


def has_scope(granted: list[str], needed: str) -> bool:
    return any(s == needed or needed in _SCOPE_IMPLIES.get(s, set()) for s in granted)


# ---------------------------------------- errors
def errors_body(message: str, exception: str | None = None, context: str | None = None) -> dict:
    return {"errors": [{"context": context, "message": message, "exceptionName": exception}]}


_EXCEPTIONS = {
    "repository": "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
    "project": "com.atlassian.bitbucket.project.NoSuchProjectException",
    "user": "com.atlassian.bitbucket.user.NoSuchUserException",
    "pullrequest": "com.atlassian.bitbucket.pull.NoSuchPullRequestException",
    "comment": "com.atlassian.bitbucket.comment.NoSuchCommentException",
    "commit": "com.atlassian.bitbucket.commit.NoSuchCommitException",
    "build": "com.atlassian.bitbucket.build.status.NoSuchBuildStatusException",
    "webhook": "com.atlassian.webhooks.NoSuchWebhookException",
}


def render_error(exc: EmulatorError) -> Response:
    if isinstance(exc, Unauthorized):
        if exc.detail.get("reason") == "missing":
            body = errors_body(
                "Authentication failed. Please check your credentials and try again.",
                "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
            )
        else:
            body = errors_body(
                "Authentication failed. The access token is invalid, expired or has been revoked.",
                "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
            )
        return json_response(body, 401)
    if isinstance(exc, Forbidden):
        # DC answers insufficient permissions with 401 + AuthorisationException (see the spec's 401 texts).
        return json_response(errors_body(exc.message, "com.atlassian.bitbucket.AuthorisationException"), 401)
    if isinstance(exc, NotFound):
        return json_response(errors_body(exc.message, _EXCEPTIONS.get(str(exc.detail.get("entity")))), 404)
    context = exc.detail.get("field")
    exception = exc.detail.get("exception") or (
        "com.atlassian.bitbucket.validation.ArgumentValidationException"
        if exc.status == 400
        else "com.atlassian.bitbucket.ServiceException"
    )
    body = errors_body(exc.message, str(exception), str(context) if context else None)
    body["errors"][0].update(exc.detail.get("extra") or {})  # e.g. a vetoed merge's `conflicted`, `vetoes`
    return json_response(body, exc.status)


def authenticate(ctx: Ctx, scope: str = "REPO_READ") -> Token:
    raw = bearer_token(ctx.request)
    if raw is None:
        raise Unauthorized("missing", reason="missing")
    token = ctx.backend.authenticate(DC, raw)
    if not has_scope(token.scopes, scope):
        raise Forbidden(f"You are not permitted to access this resource: the access token lacks the {scope} scope.")
    return token


# ---------------------------------------- rendering
def _self(href: str) -> dict:
    return {"self": [{"href": href}]}


def user(ctx: Ctx, u: User) -> dict:
    return {
        "name": u.name,
        "emailAddress": u.email,
        "active": True,
        "displayName": u.display_name,
        "id": u.id,
        "slug": u.name,
        "type": "NORMAL",
        "links": _self(f"{ctx.root}/users/{u.name}"),
    }


def project(ctx: Ctx, p: Project) -> dict:
    if p.personal:
        owner = ctx.backend.users[p.owner or ""]
        return {
            "key": p.key,
            "id": p.id,
            "name": p.name,
            "type": "PERSONAL",
            "owner": user(ctx, owner),
            "links": _self(f"{ctx.root}/users/{owner.name}"),
        }
    return {
        "key": p.key,
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "public": p.public,
        "type": "NORMAL",
        "links": _self(f"{ctx.root}/projects/{p.key}"),
    }


def _browse(ctx: Ctx, repo: Repository) -> str:
    if repo.owner.startswith("~"):
        return f"{ctx.root}/users/{repo.owner[1:].lower()}/repos/{repo.slug}"
    return f"{ctx.root}/projects/{repo.owner}/repos/{repo.slug}"


def _clone_links(ctx: Ctx, repo: Repository) -> list[dict]:
    host = urlsplit(ctx.root).hostname or "localhost"
    key = repo.owner.lower()
    return [
        {"href": f"ssh://git@{host}:7999/{key}/{repo.slug}.git", "name": "ssh"},
        {"href": f"{ctx.root}/scm/{key}/{repo.slug}.git", "name": "http"},
    ]


def repository(ctx: Ctx, repo: Repository) -> dict:
    p = ctx.backend.projects[repo.owner]
    return {
        "slug": repo.slug,
        "id": repo.id,
        "name": repo.name,
        "description": repo.description,
        "hierarchyId": repo.uuid.strip("{}").replace("-", "")[:20],
        "scmId": "git",
        "state": "AVAILABLE",
        "statusMessage": "Available",
        "forkable": True,
        "project": project(ctx, p),
        "public": not repo.is_private,
        "archived": False,
        "links": {"clone": _clone_links(ctx, repo), "self": [{"href": _browse(ctx, repo) + "/browse"}]},
    }


def _ref(kind: str, name: str, sha: str) -> dict:
    """The fields RestBranch and RestTag share (``kind``: branch | tag)."""
    return {
        "id": f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}",
        "displayId": name,
        "type": kind.upper(),
        "latestCommit": sha,
        "latestChangeset": sha,
    }


def branch(repo: Repository, ref: Ref) -> dict:
    return {**_ref("branch", ref.name, ref.target), "isDefault": ref.name == repo.default_branch}


def tag(ref: Ref) -> dict:
    return {**_ref("tag", ref.name, ref.target), "hash": ref.target}


def _participant(ctx: Ctx, r: Reviewer, role: str | None = None) -> dict:
    body: dict[str, Any] = {"user": user(ctx, ctx.backend.users[r.user])}
    if r.last_reviewed:
        body["lastReviewedCommit"] = r.last_reviewed
    body.update(role=role or r.role, approved=r.approved, status=r.status)
    return body


def pull_request(
    ctx: Ctx, repo: Repository, pr: PullRequest, payload: bool = False, with_properties: bool = True
) -> dict:
    """REST RestPullRequest; with ``payload``, the key set of webhook payloads (no draft/extra properties);
    ``with_properties=False`` (the listing's ``withProperties=false``) leaves out ``properties``."""

    def ref(name: str, sha: str) -> dict:
        body = {
            "id": f"refs/heads/{name}",
            "displayId": name,
            "latestCommit": sha,
            "repository": payload_repo(ctx, repo) if payload else repository(ctx, repo),
        }
        if not payload:
            body["type"] = "BRANCH"
        return body

    body: dict[str, Any] = {
        "id": pr.id,
        "version": pr.version,
        "title": pr.title,
        "description": pr.description,
        "state": pr.state,
        "open": pr.state == "OPEN",
        "closed": pr.state != "OPEN",
        "createdDate": millis(pr.created_on),
        "updatedDate": millis(pr.updated_on),
    }
    if pr.closed_on:
        body["closedDate"] = millis(pr.closed_on)
    body.update(
        fromRef=ref(pr.source_branch, pr.source_hash),
        toRef=ref(pr.dest_branch, pr.dest_hash),
        locked=False,
        author=_participant(ctx, Reviewer(pr.author), "AUTHOR"),
        reviewers=[_participant(ctx, r) for r in pr.reviewers if r.role == "REVIEWER" and r.user in ctx.backend.users],
        participants=[
            *(_participant(ctx, r) for r in pr.reviewers if r.role == "PARTICIPANT" and r.user in ctx.backend.users),
            *(_participant(ctx, Reviewer(n), "PARTICIPANT") for n in pr.participants if n in ctx.backend.users),
        ],
    )
    if pr.merge_hash:
        body["properties"] = {"mergeCommit": {"displayId": pr.merge_hash[:11], "id": pr.merge_hash}}
    if not payload:
        body["draft"] = pr.draft
        props = body.setdefault("properties", {})
        props.update(commentCount=len(pr.comments), openTaskCount=0, resolvedTaskCount=0)
        if not with_properties:
            del body["properties"]
    body["links"] = _self(f"{_browse(ctx, repo)}/pull-requests/{pr.id}")
    return body


def webhook(h: Hook) -> dict:
    # The secret is write-only here as well: it is never echoed back.
    return {
        "id": int(h.id),
        "name": h.description,
        "createdDate": millis(h.created_at),
        "updatedDate": millis(h.updated_at),
        "events": list(h.events),
        "configuration": {},
        "url": h.url,
        "active": h.active,
        "scopeType": "repository",
        "sslVerificationRequired": h.ssl_verification_required,
    }


# ---------------------------------------- paging
def page(ctx: Ctx, items: list, render: Callable[[Any], dict]) -> Response:
    start = max(0, int_arg(ctx.request, "start", 0))
    limit = int_arg(ctx.request, "limit", 25)
    limit = max(1, min(limit, ctx.backend.config.dc_max_limit))  # page.max.* caps the limit at 1000
    chunk = items[start : start + limit]
    last = start + len(chunk) >= len(items)
    body: dict[str, Any] = {
        "size": len(chunk),
        "limit": limit,
        "isLastPage": last,
        "values": [render(x) for x in chunk],
        "start": start,
    }
    if not last:
        body["nextPageStart"] = start + len(chunk)
    return json_response(body)


# ---------------------------------------- handlers
def _repo(ctx: Ctx, token: Token, values: dict, level: str = "read") -> Repository:
    key = values.get("project_key") or "~" + str(values.get("user_slug"))
    project_obj = ctx.backend.get_project(key)
    repo = ctx.backend.get_repo(DC, project_obj.key, values["repository_slug"])
    ctx.backend.require(token.user, repo, level)
    return repo


def repo_route(suffix: str = "", methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Register a repository-scoped route for project repos and personal (`/users/{slug}/repos`) repos."""

    def deco(fn: Callable) -> Callable:
        routes.route(f"{API}/projects/<project_key>/repos/<repository_slug>{suffix}", methods)(fn)
        routes.route(f"{API}/users/<user_slug>/repos/<repository_slug>{suffix}", methods)(fn)
        return fn

    return deco


@routes.route("/plugins/servlet/applinks/whoami")
def whoami(ctx: Ctx) -> Response:
    try:
        token = ctx.backend.authenticate(DC, bearer_token(ctx.request))
    except Unauthorized:
        return Response("", status=401, content_type="text/plain")
    return Response(token.user, content_type="text/plain;charset=UTF-8")


@routes.route(f"{API}/users/<user_slug>")
def get_user(ctx: Ctx, api_version: str, user_slug: str) -> Response:
    authenticate(ctx, "PUBLIC_REPOS")
    return json_response(user(ctx, ctx.backend.get_user(user_slug)))


def _visible(ctx: Ctx, token: Token, repo: Repository, permission: str | None) -> bool:
    level = ctx.backend.permission(token.user, repo)
    needed = {"REPO_READ": "read", "REPO_WRITE": "write", "REPO_ADMIN": "admin"}.get(permission or "", "read")
    return level >= LEVELS[needed]


def _sorted_repos(repos: list[Repository]) -> list[Repository]:
    return sorted(repos, key=lambda r: (r.owner.startswith("~"), r.owner, r.slug))


@routes.route(f"{API}/repos")
def list_repos(ctx: Ctx, api_version: str) -> Response:
    token = authenticate(ctx)
    args = ctx.request.args
    permission = args.get("permission")
    if permission and permission not in ("REPO_READ", "REPO_WRITE", "REPO_ADMIN"):
        raise BadRequest(f"Invalid permission: {permission}", field="permission")
    with ctx.backend.lock:
        repos = []
        for repo in _sorted_repos(ctx.backend.list_repos(DC)):
            if not _visible(ctx, token, repo, permission):
                continue
            p = ctx.backend.projects[repo.owner]
            if args.get("name") and args["name"].lower() not in repo.name.lower():
                continue
            if args.get("projectkey") and args["projectkey"].upper() != repo.owner.upper():
                continue
            if args.get("projectname") and args["projectname"].lower() not in p.name.lower():
                continue
            if args.get("visibility") in ("public", "private") and (args["visibility"] == "public") == repo.is_private:
                continue
            if args.get("archived") == "ARCHIVED":
                continue
            repos.append(repo)
        return page(ctx, repos, lambda r: repository(ctx, r))


@routes.route(f"{API}/projects")
def list_projects(ctx: Ctx, api_version: str) -> Response:
    token = authenticate(ctx)
    name = ctx.request.args.get("name", "").lower()
    with ctx.backend.lock:
        visible = []
        for p in sorted(ctx.backend.projects.values(), key=lambda p: p.key):
            if p.personal or (name and name not in p.name.lower()):
                continue
            user_obj = ctx.backend.users.get(token.user)
            if (
                token.user in p.permissions
                or p.public
                or (user_obj and user_obj.is_admin)
                or any(ctx.backend.permission(token.user, r) for r in ctx.backend.list_repos(DC, p.key))
            ):
                visible.append(p)
        return page(ctx, visible, lambda p: project(ctx, p))


@routes.route(f"{API}/projects/<project_key>")
def get_project(ctx: Ctx, api_version: str, project_key: str) -> Response:
    authenticate(ctx)
    return json_response(project(ctx, ctx.backend.get_project(project_key)))


@routes.route(f"{API}/projects/<project_key>/repos")
@routes.route(f"{API}/users/<user_slug>/repos")
def list_project_repos(
    ctx: Ctx, api_version: str, project_key: str | None = None, user_slug: str | None = None
) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        p = ctx.backend.get_project(project_key or "~" + str(user_slug))
        repos = [r for r in _sorted_repos(ctx.backend.list_repos(DC, p.key)) if _visible(ctx, token, r, None)]
        return page(ctx, repos, lambda r: repository(ctx, r))


@repo_route()
def get_repo(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        return json_response(repository(ctx, _repo(ctx, token, values)))


def _listed_refs(ctx: Ctx, refs: dict[str, Ref]) -> list[Ref]:
    """Refs ordered by ``orderBy`` (ALPHABETICAL or, the DC default, MODIFICATION) and filtered by ``filterText``."""
    args = ctx.request.args
    if (args.get("orderBy") or "").upper() == "ALPHABETICAL":
        listed = sorted(refs.values(), key=lambda r: natural_key(r.name))
    else:
        listed = sorted(refs.values(), key=lambda r: (r.date, r.name), reverse=True)
    if args.get("filterText"):
        listed = [r for r in listed if args["filterText"].lower() in r.name.lower()]
    return listed


@repo_route("/branches")
def list_branches(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx)
    args = ctx.request.args
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        refs = _listed_refs(ctx, repo.branches)
        if args.get("boostMatches", "").lower() == "true" or not args.get("orderBy"):
            refs.sort(key=lambda r: r.name != repo.default_branch)  # default branch first, as DC does
        return page(ctx, refs, lambda r: branch(repo, r))


@repo_route("/branches/default")
def get_default_branch_full(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        return json_response(branch(repo, repo.branches[repo.default_branch]))


@repo_route("/default-branch")
def get_default_branch(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        return json_response(
            {"id": f"refs/heads/{repo.default_branch}", "displayId": repo.default_branch, "type": "BRANCH"}
        )


@repo_route("/tags")
def list_tags(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        return page(ctx, _listed_refs(ctx, _repo(ctx, token, values).tags), tag)


@repo_route("/pull-requests")
def list_pull_requests(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx)
    args = ctx.request.args
    state = args.get("state", "OPEN").upper()
    if state not in ("OPEN", "DECLINED", "MERGED", "ALL"):
        raise BadRequest(f"Invalid state: {state}", field="state")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        prs = [p for p in repo.pull_requests.values() if state == "ALL" or p.state == state]
        if args.get("draft") in ("true", "false"):
            prs = [p for p in prs if p.draft == (args["draft"] == "true")]
        order = (args.get("order") or "NEWEST").upper()
        if order not in ("NEWEST", "OLDEST"):
            raise BadRequest(f"Invalid order: {order}", field="order")
        prs.sort(key=lambda p: (p.updated_on, p.id), reverse=order == "NEWEST")
        with_properties = (args.get("withProperties") or "true").lower() != "false"
        return page(ctx, prs, lambda p: pull_request(ctx, repo, p, with_properties=with_properties))


@repo_route("/pull-requests/<int:pull_request_id>")
def get_pull_request(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        return json_response(pull_request(ctx, repo, ctx.backend.get_pr(repo, pull_request_id)))


def _webhook_fields(body: dict, creating: bool) -> dict:
    out: dict[str, Any] = {}
    if "url" in body or creating:
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadRequest("A valid URL is required.", field="url")
        out["url"] = url
    if "events" in body or creating:
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise BadRequest("At least one event must be specified.", field="events")
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown:
            raise BadRequest(f"the event {unknown[0]} is unknown", field="events")
        out["events"] = events
    if "name" in body or creating:
        name = body.get("name")
        if not name:
            raise BadRequest("A name is required.", field="name")
        out["description"] = str(name)
    if "active" in body:
        out["active"] = bool(body["active"])
    if isinstance(body.get("configuration"), dict) and "secret" in body["configuration"]:
        out["secret"] = body["configuration"]["secret"] or None
    if "sslVerificationRequired" in body:
        out["ssl_verification_required"] = bool(body["sslVerificationRequired"])
    return out


@repo_route("/webhooks")
def list_webhooks(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx, "REPO_ADMIN")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "admin")
        hooks = list(repo.hooks.values())
        if ctx.request.args.get("event"):
            hooks = [h for h in hooks if ctx.request.args["event"] in h.events]
        return page(ctx, hooks, webhook)


@repo_route("/webhooks", methods=("POST",))
def create_webhook(ctx: Ctx, api_version: str, **values: str) -> Response:
    token = authenticate(ctx, "REPO_ADMIN")
    fields = _webhook_fields(ctx.json_body(), creating=True)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "admin")
        h = ctx.backend.add_hook(repo, fields.pop("url"), fields.pop("events"), **fields)
        return json_response(webhook(h))


@repo_route("/webhooks/<int:webhook_id>", methods=("GET", "PUT", "DELETE"))
def webhook_item(ctx: Ctx, api_version: str, webhook_id: int, **values: str) -> Response:
    token = authenticate(ctx, "REPO_ADMIN")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "admin")
        h = ctx.backend.get_hook(repo, str(webhook_id))
        if ctx.request.method == "DELETE":
            ctx.backend.delete_hook(repo, h)
            return Response(status=204)
        if ctx.request.method == "PUT":
            ctx.backend.update_hook(h, _webhook_fields(ctx.json_body(), creating=False))
        return json_response(webhook(h))


@repo_route("/webhooks/test", methods=("POST",))
def test_webhook(ctx: Ctx, api_version: str, **values: str) -> Response:
    """Sends `diagnostics:ping` (unsigned, body {"test": true}) synchronously and reports the result."""
    token = authenticate(ctx, "REPO_ADMIN")
    url = ctx.request.args.get("url")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "admin")
        if not url and ctx.request.args.get("webhookId"):
            url = ctx.backend.get_hook(repo, ctx.request.args["webhookId"]).url
    if not url:
        raise BadRequest("A URL is required to test a webhook.", field="url")
    result = ctx.emulator.webhooks.ping(url)
    return json_response(result)


@repo_route("/ref-change-activities")
def ref_change_activities(ctx: Ctx, api_version: str, **values: str) -> Response:
    """Every ref created, moved or deleted (pushes, branch and tag changes, merges), newest first: one call with
    limit=1 tells a reconciler whether a repository's refs changed since it last looked (REPO_ADMIN)."""
    token = authenticate(ctx, "REPO_ADMIN")
    ref = ctx.request.args.get("ref")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "admin")
        changes = [c for c in reversed(repo.ref_changes) if not ref or c["ref_id"] == ref]

        def render(c: dict) -> dict:
            actor = ctx.backend.users.get(c["user"])
            return {
                "createdDate": int(c["created"] * 1000),
                "id": c["id"],
                "refChange": {
                    "fromHash": c["from_hash"],
                    "ref": {
                        "displayId": c["display_id"],
                        "id": c["ref_id"],
                        "type": "BRANCH" if c["kind"] == "branch" else "TAG",
                    },
                    "refId": c["ref_id"],
                    "toHash": c["to_hash"],
                    "type": c["type"],
                    "updatedType": ("FORCED" if c["forced"] else "NOT_FORCED") if c["type"] == "UPDATE" else "UNKNOWN",
                },
                "repository": repository(ctx, repo),
                "trigger": c["trigger"],
                "user": user(ctx, actor) if actor else None,
            }

        return page(ctx, changes, render)


# ---------------------------------------- webhook payloads
# Shapes follow the real payloads in ../shared/bitbucket/webhooks/datacenter (key for key).
_NOT_IN_PAYLOAD_REPO = ("description", "hierarchyId", "archived")


def payload_repo(ctx: Ctx, repo: Repository) -> dict:
    """The repository as webhook payloads carry it: the REST shape without a few keys, same order."""
    return {k: v for k, v in repository(ctx, repo).items() if k not in _NOT_IN_PAYLOAD_REPO}


def _dc_date(dt: datetime) -> str:
    return dt.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")


# Backend event key -> DC X-Event-Key.
EVENT_KEYS = {
    "repo:push": "repo:refs_changed",
    "repo:updated": "repo:modified",
    "pullrequest:created": "pr:opened",
    "pullrequest:updated": "pr:modified",
    "pullrequest:push": "pr:from_ref_updated",
    "pullrequest:fulfilled": "pr:merged",
    "pullrequest:rejected": "pr:declined",
    "pullrequest:deleted": "pr:deleted",
    "pullrequest:approved": "pr:reviewer:approved",
    "pullrequest:unapproved": "pr:reviewer:unapproved",
    # Data Center 8.10 renamed "Needs work" to "Requested changes" in its UI; the webhook key stayed
    # pr:reviewer:needs_work (the key a live instance accepts; README "Write-back and review").
    "pullrequest:changes_request_created": "pr:reviewer:needs_work",
    "pullrequest:changes_request_removed": "pr:reviewer:unapproved",
    "pullrequest:comment_created": "pr:comment:added",
    "pullrequest:comment_updated": "pr:comment:edited",
    "pullrequest:comment_deleted": "pr:comment:deleted",
}


def render_event(ctx: Ctx, event: Event) -> tuple[str, dict] | None:
    key = EVENT_KEYS.get(event.key)
    if key is None:
        return None
    repo = event.repo
    body: dict[str, Any] = {
        "eventKey": key,
        "date": _dc_date(now()),
        "actor": user(ctx, ctx.backend.users[event.actor]),
    }
    if key == "repo:refs_changed":
        changes = []
        for c in event.data["changes"]:
            prefix = "refs/heads/" if c["kind"] == "branch" else "refs/tags/"
            old, new = c["old"], c["new"]
            changes.append(
                {
                    "ref": {
                        "id": prefix + c["name"],
                        "displayId": c["name"],
                        "type": "BRANCH" if c["kind"] == "branch" else "TAG",
                    },
                    "refId": prefix + c["name"],
                    "fromHash": old.target if old else "0" * 40,
                    "toHash": new.target if new else "0" * 40,
                    "type": "ADD" if old is None else "DELETE" if new is None else "UPDATE",
                }
            )
        body.update(repository=payload_repo(ctx, repo), changes=changes)
        return key, body
    if key == "repo:modified":
        old_repo = payload_repo(ctx, repo)
        old_repo.update(name=event.data["old"]["name"], slug=event.data["old"]["slug"])
        body.update(old=old_repo, new=payload_repo(ctx, repo))
        return key, body
    pr = event.data["pr"]
    body["pullRequest"] = pull_request(ctx, repo, pr, payload=True)
    if key == "pr:modified":
        prev = event.data["previous"]
        body.update(
            previousTitle=prev["title"],
            previousDescription=prev["description"],
            previousTarget=_ref("branch", prev["dest_branch"], prev["dest_hash"]),
        )
    elif key == "pr:from_ref_updated":
        body["previousFromHash"] = event.data["previous_from_hash"]
    elif key.startswith("pr:reviewer:"):
        body.update(
            participant=_participant(ctx, event.data["reviewer"]),
            previousStatus=event.data["previous_status"],
        )
    elif key.startswith("pr:comment:"):
        c = event.data["comment"]
        comment = payload_comment(ctx, repo, event.data["pr"], c)
        if key == "pr:comment:deleted":
            del comment["properties"]  # as Data Center sends it
        body["comment"] = comment
        if key == "pr:comment:edited":
            body["previousComment"] = event.data["previous_text"]
        elif c.parent is not None:
            body["commentParentId"] = c.parent
    return key, body


def dumps(body: dict) -> bytes:
    return json.dumps(body).encode()


# ---------------------------------------- source: commits, changes, files (answered from the git objects)
def _resolve(ctx: Ctx, repo: Repository, revision: str | None) -> str:
    """A commit for a ref (`main`, `refs/heads/main`, a tag) or a full/partial commit id; the default branch when
    none is given."""
    if not revision:
        return repo.branches[repo.default_branch].target
    try:
        return ctx.backend.resolve(repo, revision)
    except NotFound as exc:
        raise NotFound(
            f"Commit '{revision}' does not exist in repository '{repo.slug}'.", entity="commit", ident=revision
        ) from exc


def _person(ctx: Ctx, raw: bytes) -> dict:
    text = raw.decode(errors="replace")
    name, _, email = text.rpartition(" <")
    email = email.rstrip(">")
    known = next((u for u in ctx.backend.users.values() if u.email == email), None)
    return user(ctx, known) if known else {"name": name, "emailAddress": email}


def rest_commit(ctx: Ctx, repo: Repository, sha: str) -> dict:
    c = repo.git.commit(sha)
    message = c.message.decode(errors="replace")
    return {
        "id": sha,
        "displayId": sha[:11],
        "author": _person(ctx, c.author),
        "authorTimestamp": c.author_time * 1000,
        "committer": _person(ctx, c.committer),
        "committerTimestamp": c.commit_time * 1000,
        "message": message[:-1] if message.endswith("\n") else message,
        "parents": [{"id": p.decode(), "displayId": p.decode()[:11]} for p in c.parents],
    }


def rest_path(path: str) -> dict:
    parent, _, name = path.rpartition("/")
    body: dict[str, Any] = {"components": path.split("/"), "parent": parent, "name": name}
    if "." in name.lstrip("."):
        body["extension"] = name.rpartition(".")[2]
    body["toString"] = path
    return body


_CHANGE_TYPES = {"added": "ADD", "removed": "DELETE", "modified": "MODIFY", "renamed": "MOVE"}


def rest_change(ctx: Ctx, repo: Repository, change: Change, at: str) -> dict:
    kind = _CHANGE_TYPES[change.status]
    path = change.path or change.old_path or ""
    body: dict[str, Any] = {
        "contentId": change.sha or ZERO_HASH,
        "fromContentId": change.old_sha or ZERO_HASH,
        "path": rest_path(path),
        "executable": change.mode == EXEC_MODE,
        "percentUnchanged": change.similarity if change.similarity is not None else -1,
        "type": kind,
        "nodeType": "SUBMODULE" if (change.mode or change.old_mode) == SUBMODULE_MODE else "FILE",
        "srcExecutable": change.old_mode == EXEC_MODE,
    }
    if kind == "MOVE":
        body["srcPath"] = rest_path(change.old_path or "")
    body["links"] = _self(f"{_browse(ctx, repo)}/browse/{quote(path)}?at={at}")
    body["properties"] = {"gitChangeType": kind}
    return body


@repo_route("/commits")
def list_commits(ctx: Ctx, api_version: str, **values: str) -> Response:
    """Commits of `until` (default branch by default) and not of `since`, newest first; `path`, `merges`."""
    token = authenticate(ctx)
    args = ctx.request.args
    merges = (args.get("merges") or "include").lower()
    if merges not in ("include", "exclude", "only"):
        raise BadRequest(f"Invalid merges value: {merges}", field="merges")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        until = _resolve(ctx, repo, args.get("until"))
        since = [_resolve(ctx, repo, args["since"])] if args.get("since") else []
        log = repo.git.log([until], since, args.get("path"))
        if merges != "include":
            log = [c for c in log if (len(c.parents) > 1) == (merges == "only")]
        return page(ctx, log, lambda c: rest_commit(ctx, repo, c.id.decode()))


@repo_route("/commits/<commit_id>")
def get_commit(ctx: Ctx, api_version: str, commit_id: str, **values: str) -> Response:
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        sha = repo.git.resolve_prefix(commit_id)
        if sha is None:
            raise NotFound(f"Commit '{commit_id}' does not exist in repository '{repo.slug}'.", entity="commit")
        return json_response(rest_commit(ctx, repo, sha))


@repo_route("/commits/<commit_id>/changes")
def commit_changes(ctx: Ctx, api_version: str, commit_id: str, **values: str) -> Response:
    """What `commit_id` changed against `since` (default: its first parent)."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        until = _resolve(ctx, repo, commit_id)
        since_arg = ctx.request.args.get("since")
        parents = repo.git.parents(until)
        since = _resolve(ctx, repo, since_arg) if since_arg else (parents[0] if parents else None)
        changes = repo.git.changes(since, until)
        return page(ctx, changes, lambda c: rest_change(ctx, repo, c, until))


@repo_route("/compare/changes")
def compare_changes(ctx: Ctx, api_version: str, **values: str) -> Response:
    """Changes in `from` that `to` does not have: from their merge base to `from` (default branch by default)."""
    token = authenticate(ctx)
    args = ctx.request.args
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        source, target = _resolve(ctx, repo, args.get("from")), _resolve(ctx, repo, args.get("to"))
        changes = repo.git.changes(repo.git.merge_base(source, target), source)
        return page(ctx, changes, lambda c: rest_change(ctx, repo, c, source))


@repo_route("/raw/<path:path>")
def get_raw(ctx: Ctx, api_version: str, path: str, **values: str) -> Response:
    """A file's bytes at `at` (default branch by default)."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        at = _resolve(ctx, repo, ctx.request.args.get("at"))
        found = repo.git.lookup(at, path)
        if found is None or found[0] in (DIR_MODE, SUBMODULE_MODE):
            raise NotFound(f'The path "{path}" does not exist at revision "{at}"', entity="path")
        content = repo.git.read(found[1])
    mimetype = mimetypes.guess_type(path)[0] or ("application/octet-stream" if is_binary(content) else "text/plain")
    return Response(content, 200, content_type=mimetype)


@repo_route("/browse")
@repo_route("/browse/<path:path>")
def browse(ctx: Ctx, api_version: str, path: str = "", **values: str) -> Response:
    """A directory's children, or a file's lines (paged by `start`/`limit`); `type=true`, `size=true`."""
    token = authenticate(ctx)
    args = ctx.request.args
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        at = _resolve(ctx, repo, args.get("at"))
        clean = path.strip("/")
        found = repo.git.lookup(at, clean)
        if found is None:
            raise NotFound(f'The path "{clean}" does not exist at revision "{at}"', entity="path")
        mode, object_id = found
        kind = {DIR_MODE: "DIRECTORY", SUBMODULE_MODE: "SUBMODULE"}.get(mode, "FILE")
        if (args.get("size") or "").lower() == "true" and kind == "FILE":
            return json_response({"size": len(repo.git.read(object_id))})
        if (args.get("type") or "").lower() == "true":
            return json_response({"type": kind})
        if kind == "DIRECTORY":
            entries = repo.git.listdir(at, clean)
            listing = page(ctx, entries, lambda e: _child(e))
            children = json.loads(listing.get_data())
            return json_response(
                {"path": rest_path(clean) if clean else _ROOT_PATH, "revision": at, "children": children}
            )
        if kind == "SUBMODULE":
            raise BadRequest(f"{clean} is a submodule.", field="path")
        content = repo.git.read(object_id)
        if is_binary(content):
            return json_response({"binary": True, "path": rest_path(clean), "revision": at})
        lines = content.decode(errors="replace").splitlines()
        start = max(0, int_arg(ctx.request, "start", 0))
        limit = max(1, min(int_arg(ctx.request, "limit", 500), 20000))
        chunk = lines[start : start + limit]
        body: dict[str, Any] = {
            "lines": [{"text": line} for line in chunk],
            "start": start,
            "size": len(chunk),
            "isLastPage": start + len(chunk) >= len(lines),
        }
        if not body["isLastPage"]:
            body["nextPageStart"] = start + len(chunk)
        return json_response(body)


_ROOT_PATH = {"components": [], "name": "", "toString": ""}


def _child(entry: Entry) -> dict:
    kind = {DIR_MODE: "DIRECTORY", SUBMODULE_MODE: "SUBMODULE"}.get(entry.mode, "FILE")
    body: dict[str, Any] = {"path": {k: v for k, v in rest_path(entry.name).items() if k != "parent"}}
    body["contentId"] = entry.sha
    body["type"] = kind
    if kind == "FILE":
        body["size"] = entry.size
    return body


# ---------------------------------------- build statuses, pull request comments, reviews, activities
# Per the 9.2 OpenAPI document: the repository build-status resource (7.14+, REPO_READ to store, REPO_ADMIN to
# delete, 204 without a body), the older commit-wide /rest/build-status resource (the only one that lists a
# commit's statuses), comments with `version` locking, participants' status (APPROVED / NEEDS_WORK, called
# "Requested changes" in the UI from 8.10 / UNAPPROVED), merge and decline with the pull request's `version`.
BUILD_STATES = ("CANCELLED", "FAILED", "INPROGRESS", "SUCCESSFUL", "UNKNOWN")
BUILD_LIMITS = {"key": 255, "name": 255, "buildNumber": 255, "parent": 1024, "ref": 1024, "url": 450}
COMMENT_MAX = 32768  # "Please enter a non-empty value less than 32768 characters" (Java string length)
# Merge strategy ids and what the backend does for each; rebase strategies are not enabled here.
MERGE_STRATEGIES = {"no-ff": "merge_commit", "ff": None, "ff-only": "fast_forward", "squash": "squash"}
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")


def java_length(text: str) -> int:
    """A string's length as Java counts it (UTF-16 code units): Data Center's limits are in these."""
    return len(text.encode("utf-16-le")) // 2


def build_status(status: CommitStatus) -> dict:
    """RestBuildStatus."""
    body: dict[str, Any] = {
        "key": status.key,
        "state": status.state,
        "url": status.url,
        "createdDate": millis(status.created_on),
        "updatedDate": millis(status.updated_on),
    }
    for name, value in (("name", status.name), ("description", status.description), ("ref", status.refname)):
        if value:
            body[name] = value
    body.update({k: v for k, v in status.extra.items() if k in ("buildNumber", "duration", "parent", "testResults")})
    return body


def _build_fields(body: dict) -> dict:
    """A build status request's fields, or the 400 Data Center gives (its field as the context)."""
    for name in ("key", "state", "url"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise BadRequest(f"The {name} must not be blank.", field=name)
    if body["state"] not in BUILD_STATES:
        raise BadRequest(f"Invalid state {body['state']!r}: use one of {', '.join(BUILD_STATES)}.", field="state")
    for name, limit in BUILD_LIMITS.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or java_length(value) > limit):
            raise BadRequest(f"The {name} must be a string of at most {limit} characters.", field=name)
    ref = body.get("ref")
    if ref is not None and not ref.startswith("refs/"):
        raise BadRequest("The ref must be a fully qualified ref, e.g. refs/heads/main.", field="ref")
    extra = {k: body[k] for k in ("buildNumber", "duration", "parent", "testResults") if body.get(k) is not None}
    return {
        "key": body["key"],
        "state": body["state"],
        "url": body["url"],
        "name": body.get("name") or "",
        "description": body.get("description") or "",
        "refname": ref,
        "extra": extra,
    }


def _commit_of(repo: Repository, commit_id: str) -> str:
    if not _SHA1.match(commit_id):
        raise BadRequest(f"{commit_id} is not a full 40-character commit hash.", field="commitId")
    sha = commit_id.lower()
    if not repo.git.has_commit(sha):
        raise NotFound(f"Commit '{commit_id}' does not exist in repository '{repo.slug}'.", entity="commit")
    return sha


@repo_route("/commits/<commit_id>/builds", methods=("GET", "POST", "DELETE"))
def builds(ctx: Ctx, api_version: str, commit_id: str, **values: str) -> Response:
    """POST stores a build status (a known key is updated): 204, and no webhook (Data Center has none for build
    statuses). GET and DELETE take `key`."""
    method = ctx.request.method
    token = authenticate(ctx, "REPO_ADMIN" if method == "DELETE" else "REPO_READ")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "admin" if method == "DELETE" else "read")
        sha = _commit_of(repo, commit_id)
        if method == "POST":
            ctx.backend.set_commit_status(repo, sha, token.user, **_build_fields(ctx.json_body()))
            return Response(status=204)
        key = ctx.request.args.get("key")
        if not key:
            raise BadRequest("A build status key is required.", field="key")
        status = repo.statuses.get((sha, key))
        if status is None:
            raise NotFound(f"No build status with key {key} for commit {commit_id}.", entity="build")
        if method == "DELETE":
            del repo.statuses[(sha, key)]
            return Response(status=204)
        return json_response(build_status(status))


@routes.route("/rest/build-status/<any('1.0', 'latest'):api_version>/commits/<commit_id>", methods=("GET", "POST"))
def commit_builds(ctx: Ctx, api_version: str, commit_id: str) -> Response:
    """The older commit-wide resource (deprecated in 7.14, still served): the statuses of a commit in every
    repository the user can read that has it (forks share commits), newest first, at most the 100 latest."""
    token = authenticate(ctx, "REPO_READ")
    with ctx.backend.lock:
        if not _SHA1.match(commit_id):
            raise BadRequest(f"{commit_id} is not a full 40-character commit hash.", field="commitId")
        sha = commit_id.lower()
        repos = [
            r for r in ctx.backend.list_repos(DC) if r.git.has_commit(sha) and ctx.backend.permission(token.user, r)
        ]
        if ctx.request.method == "POST":
            if not repos:
                raise BadRequest(f"Commit {commit_id} is in no repository you can read.", field="commitId")
            fields = _build_fields(ctx.json_body())
            for repo in repos:
                ctx.backend.set_commit_status(repo, sha, token.user, **fields)
            return Response(status=204)
        found = {(s.key, s.url): s for r in repos for s in ctx.backend.statuses_of(r, sha)}
        order = (ctx.request.args.get("orderBy") or "NEWEST").upper()
        statuses = sorted(found.values(), key=lambda s: s.updated_on, reverse=order != "OLDEST")[:100]
        return page(ctx, statuses, build_status)


# -- comments
def _anchor(ctx: Ctx, pr: PullRequest, c: Comment) -> dict:
    line_side = "to" if c.inline and c.inline.get("to") else "from"
    line = (c.inline or {}).get(line_side)
    return {
        "diffType": "EFFECTIVE",
        "fileType": "TO" if line_side == "to" else "FROM",
        "fromHash": pr.dest_hash,
        "line": line,
        "lineType": c.line_type or ("ADDED" if line_side == "to" else "REMOVED"),
        "path": rest_path((c.inline or {}).get("path", "")),
        "toHash": c.commit or pr.source_hash,
    }


def rest_comment(ctx: Ctx, repo: Repository, pr: PullRequest, c: Comment) -> dict:
    """RestComment, with its replies nested under `comments` (Data Center's threads)."""
    body: dict[str, Any] = {
        "properties": {"repositoryId": repo.id},
        "id": c.id,
        "version": c.version,
        "text": c.text,
        "author": user(ctx, ctx.backend.users[c.author]),
        "createdDate": millis(c.created_on),
        "updatedDate": millis(c.updated_on),
        "comments": [rest_comment(ctx, repo, pr, r) for r in pr.comments if r.parent == c.id],
        "severity": "NORMAL",
        "state": "OPEN",
        "threadResolved": False,
    }
    if c.inline:
        body["anchor"] = _anchor(ctx, pr, c)
    if c.parent is not None:
        body["parent"] = {"id": c.parent}
    return body


def payload_comment(ctx: Ctx, repo: Repository, pr: PullRequest, c: Comment) -> dict:
    """A comment as pr:comment:* payloads carry it (no replies; `anchor` for a comment on a line)."""
    body: dict[str, Any] = {
        "properties": {"repositoryId": repo.id},
        "id": c.id,
        "version": c.version,
        "text": c.text,
        "author": user(ctx, ctx.backend.users[c.author]),
        "createdDate": millis(c.created_on),
        "updatedDate": millis(c.updated_on),
        "comments": [],
        "tasks": [],
    }
    if c.inline:
        body["anchor"] = _anchor(ctx, pr, c)
    return body


def _comment_text(body: dict) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or java_length(text) >= COMMENT_MAX:
        raise BadRequest(f"Please enter a non-empty value less than {COMMENT_MAX} characters", field="text")
    return text


def _inline_from_anchor(anchor: Any) -> tuple[dict | None, str | None]:
    """A request's `anchor` as the backend's inline ({path, from, to}) and line type."""
    if anchor is None:
        return None, None
    if not isinstance(anchor, dict) or not isinstance(anchor.get("path"), str):
        raise BadRequest("The anchor needs a path.", field="anchor")
    line = anchor.get("line")
    if line is None:
        raise BadRequest("File comments without a line are not supported here: give anchor.line.", field="anchor")
    side = "from" if anchor.get("fileType") == "FROM" else "to"
    return {"path": anchor["path"], side: line}, anchor.get("lineType")


def _version(ctx: Ctx, body: dict | None = None) -> int | None:
    raw = ctx.request.args.get("version")
    if raw is None and body is not None:
        raw = body.get("version")
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Invalid version {raw!r}.", field="version") from exc


@repo_route("/pull-requests/<int:pull_request_id>/comments", methods=("GET", "POST"))
def pr_comments(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    """GET streams the comments on one file (`path` is required: every comment of a pull request is in its
    activities); POST adds a general comment, a reply (`parent.id`) or a line comment (`anchor`)."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        pr = ctx.backend.get_pr(repo, pull_request_id)
        if ctx.request.method == "GET":
            path = ctx.request.args.get("path")
            if not path:
                raise BadRequest("A path is required to stream comments.", field="path")
            comments = [c for c in pr.comments if c.inline and c.inline["path"] == path.strip("/") and c.parent is None]
            return page(ctx, comments, lambda c: rest_comment(ctx, repo, pr, c))
        body = ctx.json_body()
        text = _comment_text(body)
        parent = body.get("parent")
        parent_id = parent.get("id") if isinstance(parent, dict) else None
        if parent is not None and not isinstance(parent_id, int):
            raise BadRequest('The parent must be {"id": <comment id>}.', field="parent")
        inline, line_type = _inline_from_anchor(body.get("anchor"))
        c = ctx.backend.comment_pull_request(repo, pr.id, token.user, text, parent_id, inline, line_type=line_type)
        return json_response(rest_comment(ctx, repo, pr, c), 201)


@repo_route("/pull-requests/<int:pull_request_id>/comments/<int:comment_id>", methods=("GET", "PUT", "DELETE"))
def pr_comment_item(ctx: Ctx, api_version: str, pull_request_id: int, comment_id: int, **values: str) -> Response:
    """PUT and DELETE need the comment's current `version` (409 when it moved on); a comment with replies cannot
    be deleted; a deleted comment is gone."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        pr, c = ctx.backend.get_comment(repo, pull_request_id, comment_id)
        method = ctx.request.method
        if method == "DELETE":
            version = _version(ctx)
            if version is None:
                raise BadRequest("The comment's current version is required to delete it.", field="version")
            ctx.backend.delete_comment(repo, pr.id, c.id, token.user, version)
            return Response(status=204)
        if method == "PUT":
            body = ctx.json_body()
            version = _version(ctx, body)
            if version is None:
                raise BadRequest("The comment's current version is required to update it.", field="version")
            c = ctx.backend.edit_comment(repo, pr.id, c.id, token.user, _comment_text(body), version)
        return json_response(rest_comment(ctx, repo, pr, c))


# -- reviews, merge, decline
def _set_status(ctx: Ctx, repo: Repository, pr_id: int, actor: str, status: str) -> Response:
    _, reviewer = ctx.backend.review(repo, pr_id, actor, status)
    return json_response(_participant(ctx, reviewer))


@repo_route("/pull-requests/<int:pull_request_id>/participants/<participant_slug>", methods=("PUT",))
def participant_status(
    ctx: Ctx, api_version: str, pull_request_id: int, participant_slug: str, **values: str
) -> Response:
    """The current user's review: APPROVED, NEEDS_WORK or UNAPPROVED (pr:reviewer:approved / needs_work /
    unapproved). `lastReviewedCommit`, when given, must be the source branch's head."""
    token = authenticate(ctx)
    body = ctx.json_body()
    status = body.get("status")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        pr = ctx.backend.get_pr(repo, pull_request_id)
        if participant_slug.lower() != token.user:
            raise BadRequest("Only the current user's own status can be changed.", field="userSlug")
        if status not in ("APPROVED", "NEEDS_WORK", "UNAPPROVED"):
            raise BadRequest(f"Invalid status {status!r}: APPROVED, NEEDS_WORK or UNAPPROVED.", field="status")
        reviewed = body.get("lastReviewedCommit")
        if reviewed and reviewed != pr.source_hash:
            raise Conflict("The pull request has been updated since the last reviewed commit.")
        return _set_status(ctx, repo, pr.id, token.user, status)


@repo_route("/pull-requests/<int:pull_request_id>/approve", methods=("POST", "DELETE"))
def approve(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    """Deprecated since 4.2 (use participants/{userSlug}); still served."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        status = "APPROVED" if ctx.request.method == "POST" else "UNAPPROVED"
        return _set_status(ctx, repo, pull_request_id, token.user, status)


def _check_version(pr: PullRequest, version: int | None) -> None:
    if version is not None and version != pr.version:
        raise Conflict(
            f"You are attempting to modify a pull request based on out-of-date information (version {version}, "
            f"the pull request is at version {pr.version}).",
            exception="com.atlassian.bitbucket.pull.PullRequestOutOfDateException",
        )


@repo_route("/pull-requests/<int:pull_request_id>/merge", methods=("GET", "POST"))
def merge(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    """GET: can it merge (conflicts)? POST (REPO_WRITE): merge with `strategyId` (no-ff by default) and
    `message`; a conflict is a vetoed merge (409) and the pull request stays open."""
    post = ctx.request.method == "POST"
    token = authenticate(ctx, "REPO_WRITE" if post else "REPO_READ")
    with ctx.backend.lock:
        repo = _repo(ctx, token, values, "write" if post else "read")
        pr = ctx.backend.get_pr(repo, pull_request_id)
        if not post:
            if pr.state != "OPEN":
                raise Conflict("The pull request is not open.")
            conflicted = False
            try:
                repo.git.merge(repo.branches[pr.dest_branch].target, pr.source_hash)
            except GitError:
                conflicted = True
            return json_response(
                {
                    "canMerge": not conflicted,
                    "conflicted": conflicted,
                    "outcome": "CONFLICTED" if conflicted else "CLEAN",
                    "vetoes": [],
                }
            )
        body = ctx.json_body()
        if pr.state != "OPEN":
            raise Conflict("The pull request is not open.")
        _check_version(pr, _version(ctx, body))
        strategy_id = body.get("strategyId") or "no-ff"
        if strategy_id not in MERGE_STRATEGIES:
            raise BadRequest(
                f"The merge strategy {strategy_id} is not enabled for this repository.", field="strategyId"
            )
        strategy = MERGE_STRATEGIES[strategy_id]
        if strategy is None:  # ff: fast-forward when it can, else a merge commit
            dst = repo.branches[pr.dest_branch].target
            strategy = "fast_forward" if repo.git.is_ancestor(dst, pr.source_hash) else "merge_commit"
        message = body.get("message") if isinstance(body.get("message"), str) else None
        try:
            ctx.backend.merge_pull_request(repo, pr.id, token.user, strategy, message)
        except MergeConflicted as exc:
            raise Conflict(
                "The pull request has conflicts and cannot be merged.",
                exception="com.atlassian.bitbucket.pull.PullRequestMergeVetoedException",
                extra={"conflicted": True, "vetoes": []},
            ) from exc
        except BadRequest as exc:  # ff-only without a fast-forward: vetoed as well
            raise Conflict(
                exc.message,
                exception="com.atlassian.bitbucket.pull.PullRequestMergeVetoedException",
                extra={
                    "conflicted": False,
                    "vetoes": [{"summaryMessage": "Fast-forward only", "detailedMessage": exc.message}],
                },
            ) from exc
        return json_response(pull_request(ctx, repo, pr))


@repo_route("/pull-requests/<int:pull_request_id>/decline", methods=("POST",))
def decline(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    """Decline, with the pull request's `version` and an optional `comment` (added before it is declined)."""
    token = authenticate(ctx)
    body = ctx.json_body()
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        pr = ctx.backend.get_pr(repo, pull_request_id)
        _check_version(pr, _version(ctx, body))
        if pr.state != "OPEN":
            raise Conflict("The pull request is not open.")
        comment = body.get("comment")
        if isinstance(comment, str) and comment.strip():
            ctx.backend.comment_pull_request(repo, pr.id, token.user, _comment_text({"text": comment}))
        ctx.backend.decline_pull_request(repo, pr.id, token.user, comment if isinstance(comment, str) else "")
        return json_response(pull_request(ctx, repo, pr))


# -- activities
_ACTIONS = {
    "opened": "OPENED",
    "updated": "UPDATED",
    "rescoped": "RESCOPED",
    "approved": "APPROVED",
    "unapproved": "UNAPPROVED",
    "changes_requested": "REVIEWED",
    "changes_request_removed": "UNAPPROVED",
    "commented": "COMMENTED",
    "merged": "MERGED",
    "declined": "DECLINED",
}


def _activity(ctx: Ctx, repo: Repository, pr: PullRequest, entry: Any) -> dict | None:
    """RestPullRequestActivity. A comment thread is one COMMENTED entry (its root comment, replies nested);
    deleted comments leave no entry."""
    body: dict[str, Any] = {
        "id": entry.id,
        "createdDate": millis(entry.at),
        "user": user(ctx, ctx.backend.users[entry.user]),
        "action": _ACTIONS[entry.kind],
    }
    if entry.kind == "commented":
        c = next((c for c in pr.comments if c.id == entry.data["comment"]), None)
        if c is None or c.parent is not None:
            return None
        body.update(commentAction="ADDED", comment=rest_comment(ctx, repo, pr, c))
        if c.inline:
            body["commentAnchor"] = _anchor(ctx, pr, c)
    elif entry.kind == "updated":
        previous = entry.data.get("previous", {})
        body.update(previousTitle=previous.get("title"), previousDescription=previous.get("description"))
    elif entry.kind == "rescoped":
        body.update(
            fromHash=entry.data["current"],
            previousFromHash=entry.data["previous"],
            toHash=pr.dest_hash,
            previousToHash=pr.dest_hash,
            added={"commits": [], "total": 0},
            removed={"commits": [], "total": 0},
        )
    return body


@repo_route("/pull-requests/<int:pull_request_id>/commits")
def pr_commits(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    """The commits the pull request brings, newest first (RestCommit); Data Center keeps them after the source
    branch is deleted (its own refs hold them)."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        pr = ctx.backend.get_pr(repo, pull_request_id)
        return page(ctx, ctx.backend.pull_request_commits(repo, pr), lambda sha: rest_commit(ctx, repo, sha))


@repo_route("/pull-requests/<int:pull_request_id>/activities")
def activities(ctx: Ctx, api_version: str, pull_request_id: int, **values: str) -> Response:
    """The pull request's activity, newest first: opened, updated, rescoped (new commits), approvals, reviews
    (needs work), comment threads, merged, declined."""
    token = authenticate(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, token, values)
        pr = ctx.backend.get_pr(repo, pull_request_id)
        items = [a for a in (_activity(ctx, repo, pr, e) for e in reversed(pr.activity)) if a is not None]
        return page(ctx, items, lambda a: a)
