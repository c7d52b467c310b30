"""Bitbucket Cloud front-end: REST 2.0 (Bearer only), JSON shapes, `next`-link pagination, BBQL `q`, `sort`,
`fields=` partial responses, Cloud error bodies, and Cloud webhook payloads."""

from __future__ import annotations

import copy
import hashlib
import html
import mimetypes
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from dulwich.patch import is_binary
from werkzeug.wrappers import Response

from .git import DIR_MODE, EXEC_MODE, LINK_MODE, SUBMODULE_MODE, Change, Entry, GitError
from .models import (
    CLOUD,
    LEVELS,
    BadRequest,
    Comment,
    Commit,
    CommitStatus,
    EmulatorError,
    Event,
    Forbidden,
    Hook,
    Issue,
    MergeConflicted,
    NotFound,
    PullRequest,
    PullRequestClosed,
    Ref,
    Repository,
    Reviewer,
    Token,
    Unauthorized,
    User,
    Workspace,
    iso,
)
from .web import Ctx, Routes, bearer_token, int_arg, json_response, natural_key

routes = Routes()

HOOK_EVENTS = [
    "issue:comment_created",
    "issue:created",
    "issue:updated",
    "pipeline:span_created",
    "project:updated",
    "pullrequest:approved",
    "pullrequest:changes_request_created",
    "pullrequest:changes_request_removed",
    "pullrequest:comment_created",
    "pullrequest:comment_deleted",
    "pullrequest:comment_reopened",
    "pullrequest:comment_resolved",
    "pullrequest:comment_updated",
    "pullrequest:created",
    "pullrequest:fulfilled",
    "pullrequest:push",
    "pullrequest:rejected",
    "pullrequest:unapproved",
    "pullrequest:updated",
    "repo:commit_comment_created",
    "repo:commit_status_created",
    "repo:commit_status_updated",
    "repo:created",
    "repo:deleted",
    "repo:fork",
    "repo:imported",
    "repo:push",
    "repo:transfer",
    "repo:updated",
]

# OAuth scope implications, from Bitbucket's scope documentation.
_IMPLIED = {
    "repository:write": {"repository"},
    "repository:admin": set(),  # deliberately does not imply repository
    "pullrequest": {"repository"},
    "pullrequest:write": {"pullrequest", "repository", "repository:write"},
    "project": {"repository"},
    "project:admin": {"project", "repository"},
    "account": {"email"},
    "account:write": {"account", "email"},
    "issue:write": {"issue"},
    "snippet:write": {"snippet"},
    "team:write": {"team"},
}


def has_scope(granted: Iterable[str], needed: str) -> bool:
    expanded = set(granted)
    for scope in list(expanded):
        expanded |= _IMPLIED.get(scope, set())
    return needed in expanded


# ---------------------------------------- errors
def error_body(message: str, detail: Any = None) -> dict:
    err: dict[str, Any] = {"message": message}
    if detail is not None:
        err["detail"] = detail
    return {"type": "error", "error": err}


_UNAUTHORIZED = {
    "missing": "Authentication required",
    "invalid": "Token is invalid, expired, or not supported for this endpoint.",
    "revoked": "Token is invalid, expired, or not supported for this endpoint.",
    "expired": "Access token expired. Use your refresh token to obtain a new access token.",
}


def render_error(exc: EmulatorError) -> Response:
    if isinstance(exc, Unauthorized):
        return json_response(error_body(_UNAUTHORIZED.get(str(exc.detail.get("reason")), exc.message)), 401)
    if isinstance(exc, Forbidden) and "granted" in exc.detail:
        body = error_body(exc.message, {"required": exc.detail["required"], "granted": exc.detail["granted"]})
        return json_response(body, 403)
    return json_response(error_body(exc.message), exc.status)


def authenticate(ctx: Ctx, scope: str | None) -> Token:
    raw = bearer_token(ctx.request)
    if raw is None:
        # The 2026 API accepts OAuth tokens only as "Authorization: Bearer"; Basic/app passwords are gone.
        raise Unauthorized("missing", reason="missing")
    token = ctx.backend.authenticate(CLOUD, raw)
    if scope and not has_scope(token.scopes, scope):
        raise Forbidden(
            "Your credentials lack one or more required privilege scopes.",
            required=[scope],
            granted=sorted(token.scopes),
        )
    return token


# ---------------------------------------- rendering
def _href(url: str) -> dict:
    return {"href": url}


def _account_links(ctx: Ctx, user: User) -> dict:
    uid = quote(user.uuid)
    return {
        "self": _href(f"{ctx.api}/users/{uid}"),
        "html": _href(f"{ctx.root}/{uid}/"),
        "avatar": _href(f"{ctx.root}/account/{user.name}/avatar/"),
    }


def _workspace_links(ctx: Ctx, ws: Workspace) -> dict:
    return {
        "self": _href(f"{ctx.api}/workspaces/{ws.slug}"),
        "html": _href(f"{ctx.root}/{ws.slug}/"),
        "avatar": _href(f"{ctx.root}/workspaces/{ws.slug}/avatar/"),
    }


def _project_links(ctx: Ctx, ws: Workspace) -> dict:
    return {
        "html": _href(f"{ctx.root}/{ws.slug}/workspace/projects/{ws.project_key}"),
        "avatar": _href(f"{ctx.root}/{ws.slug}/workspace/projects/{ws.project_key}/avatar"),
    }


def _repo_links(ctx: Ctx, full_name: str) -> dict:
    return {
        "self": _href(f"{ctx.api}/repositories/{full_name}"),
        "html": _href(f"{ctx.root}/{full_name}"),
        "avatar": _href(f"{ctx.root}/{full_name}/avatar/32/"),
    }


def account(ctx: Ctx, user: User, full: bool = False) -> dict:
    body: dict[str, Any] = {
        "type": "user",
        "uuid": user.uuid,
        "account_id": user.account_id,
        "nickname": user.name,
        "display_name": user.display_name,
        "links": _account_links(ctx, user),
    }
    if full:
        body["links"]["repositories"] = _href(f"{ctx.api}/repositories/{quote(user.uuid)}")
        body.update(created_on=iso(user.created_on), account_status="active", has_2fa_enabled=False, is_staff=False)
    return body


def workspace_owner(ctx: Ctx, ws: Workspace) -> dict:
    return {
        "type": "team",
        "uuid": ws.uuid,
        "username": ws.slug,
        "display_name": ws.name,
        "links": {
            "self": _href(f"{ctx.api}/workspaces/{quote(ws.uuid)}"),
            "html": _href(f"{ctx.root}/{quote(ws.uuid)}/"),
            "avatar": _workspace_links(ctx, ws)["avatar"],
        },
    }


def workspace_base(ctx: Ctx, ws: Workspace) -> dict:
    links = _workspace_links(ctx, ws)
    return {
        "type": "workspace_base",
        "uuid": ws.uuid,
        "slug": ws.slug,
        "links": {"self": links["self"], "avatar": links["avatar"]},  # no html link on workspace_base
    }


def repo_condensed(ctx: Ctx, repo: Repository) -> dict:
    return {
        "type": "repository",
        "full_name": repo.full_name,
        "name": repo.name,
        "uuid": repo.uuid,
        "links": _repo_links(ctx, repo.full_name),
    }


def repository(ctx: Ctx, repo: Repository) -> dict:
    ws = ctx.backend.workspaces[repo.owner]
    api = f"{ctx.api}/repositories/{repo.full_name}"
    host = ctx.request.host.split(":")[0]
    return {
        "type": "repository",
        "full_name": repo.full_name,
        "name": repo.name,
        "slug": repo.slug,
        "uuid": repo.uuid,
        "description": repo.description,
        "scm": "git",
        "is_private": repo.is_private,
        "website": None,
        "language": repo.language,
        "size": repo.git.size(),
        "has_issues": bool(repo.issues),
        "has_wiki": False,
        "fork_policy": "allow_forks",
        "created_on": iso(repo.created_on),
        "updated_on": iso(repo.updated_on),
        "mainbranch": {"type": "branch", "name": repo.default_branch},
        "owner": workspace_owner(ctx, ws),
        "workspace": {
            "type": "workspace",
            "uuid": ws.uuid,
            "slug": ws.slug,
            "name": ws.name,
            "links": _workspace_links(ctx, ws),
        },
        "project": {
            "type": "project",
            "key": ws.project_key,
            "uuid": ws.project_uuid,
            "name": ws.project_name,
            "links": _project_links(ctx, ws),
        },
        "links": {
            **_repo_links(ctx, repo.full_name),
            "pullrequests": _href(f"{api}/pullrequests"),
            "commits": _href(f"{api}/commits"),
            "forks": _href(f"{api}/forks"),
            "watchers": _href(f"{api}/watchers"),
            "downloads": _href(f"{api}/downloads"),
            "hooks": _href(f"{api}/hooks"),
            "clone": [
                {"name": "https", "href": f"{ctx.root}/{repo.full_name}.git"},
                {"name": "ssh", "href": f"ssh://git@{host}/{repo.full_name}.git"},
            ],
        },
    }


def _user(ctx: Ctx, name: str | None) -> User | None:
    return ctx.backend.users.get(name) if name else None


def _account_or_none(ctx: Ctx, name: str | None) -> dict | None:
    user = _user(ctx, name)
    return account(ctx, user) if user else None


def _author(ctx: Ctx, name: str) -> dict:
    user = _user(ctx, name)
    if user is None:
        return {"type": "author", "raw": name}
    return {"type": "author", "raw": f"{user.display_name} <{user.email}>", "user": account(ctx, user)}


def _commit_links(ctx: Ctx, repo: Repository, sha: str) -> dict:
    return {
        "self": _href(f"{ctx.api}/repositories/{repo.full_name}/commit/{sha}"),
        "html": _href(f"{ctx.root}/{repo.full_name}/commits/{sha}"),
    }


def commit(ctx: Ctx, repo: Repository, c: Commit) -> dict:
    return {
        "type": "commit",
        "hash": c.hash,
        "date": iso(c.date),
        "message": c.message + "\n",
        "summary": {
            "raw": c.message + "\n",
            "markup": "markdown",
            "html": f"<p>{html.escape(c.message)}</p>",
        },
        "author": _author(ctx, c.author),
        "parents": [{"type": "commit", "hash": p, "links": _commit_links(ctx, repo, p)} for p in c.parents],
        "repository": repo_condensed(ctx, repo),
        "links": _commit_links(ctx, repo, c.hash),
    }


def _ref_links(ctx: Ctx, repo: Repository, kind: str, name: str) -> dict:
    api = f"{ctx.api}/repositories/{repo.full_name}"
    return {
        "self": _href(f"{api}/refs/{'branches' if kind == 'branch' else 'tags'}/{quote(name, safe='')}"),
        "commits": _href(f"{api}/commits/{quote(name, safe='')}"),
        "html": _href(f"{ctx.root}/{repo.full_name}/{'branch' if kind == 'branch' else 'commits/tag'}/{name}"),
    }


def branch(ctx: Ctx, repo: Repository, ref: Ref) -> dict:
    return {
        "type": "branch",
        "name": ref.name,
        "target": commit(ctx, repo, ctx.backend.commit_info(repo, ref.target)),
        "links": _ref_links(ctx, repo, "branch", ref.name),
        "merge_strategies": ["merge_commit", "squash", "fast_forward"],
        "default_merge_strategy": "merge_commit",
    }


def tag(ctx: Ctx, repo: Repository, ref: Ref) -> dict:
    return {
        "type": "tag",
        "name": ref.name,
        "target": commit(ctx, repo, ctx.backend.commit_info(repo, ref.target)),
        "message": ref.message + "\n",
        "date": iso(ref.date),
        "tagger": _author(ctx, ref.author),
        "links": _ref_links(ctx, repo, "tag", ref.name),
    }


def _rendered(text: str) -> dict:
    return {"raw": text, "markup": "markdown", "html": f"<p>{html.escape(text)}</p>" if text else ""}


_REVIEW_STATE = {"APPROVED": "approved", "NEEDS_WORK": "changes_requested"}


def participant(ctx: Ctx, user: User, reviewer: Reviewer) -> dict:
    """REST `participant`: a reviewer (asked to review) or a participant, with their review state."""
    return {
        "type": "participant",
        "user": account(ctx, user),
        "role": reviewer.role,
        "approved": reviewer.approved,
        "state": _REVIEW_STATE.get(reviewer.status),
        "participated_on": iso(reviewer.participated_on),
    }


def pullrequest(ctx: Ctx, repo: Repository, pr: PullRequest) -> dict:
    api = f"{ctx.api}/repositories/{repo.full_name}/pullrequests/{pr.id}"
    participants = []
    for r in pr.reviewers:
        if user := _user(ctx, r.user):
            participants.append(participant(ctx, user, r))
    for name in pr.participants:
        if user := _user(ctx, name):
            participants.append(
                participant(ctx, user, Reviewer(name, role="PARTICIPANT", participated_on=pr.updated_on))
            )
    return {
        "type": "pullrequest",
        "id": pr.id,
        "title": pr.title,
        "description": pr.description,
        "rendered": {"title": _rendered(pr.title), "description": _rendered(pr.description)},
        "summary": _rendered(pr.description),
        "state": pr.state,
        "draft": pr.draft,
        "author": _account_or_none(ctx, pr.author),
        "source": {
            "branch": {"name": pr.source_branch},
            "commit": {"hash": pr.source_hash[:12]},
            "repository": repo_condensed(ctx, repo),
        },
        "destination": {
            "branch": {"name": pr.dest_branch},
            "commit": {"hash": pr.dest_hash[:12]},
            "repository": repo_condensed(ctx, repo),
        },
        "merge_commit": {"hash": pr.merge_hash[:12]} if pr.merge_hash else None,
        "comment_count": sum(1 for c in pr.comments if not c.deleted),
        "task_count": 0,
        "close_source_branch": pr.close_source_branch,
        "closed_by": _account_or_none(ctx, pr.closed_by),
        "reason": pr.reason,
        "created_on": iso(pr.created_on),
        "updated_on": iso(pr.updated_on),
        "reviewers": [account(ctx, u) for u in (_user(ctx, r.user) for r in pr.reviewers if r.role == "REVIEWER") if u],
        "participants": participants,
        "links": {
            "self": _href(api),
            "html": _href(f"{ctx.root}/{repo.full_name}/pull-requests/{pr.id}"),
            **{
                k: _href(f"{api}/{k}")
                for k in (
                    "commits",
                    "approve",
                    "diff",
                    "diffstat",
                    "comments",
                    "activity",
                    "merge",
                    "decline",
                )
            },
        },
    }


def issue(ctx: Ctx, repo: Repository, item: Issue) -> dict:
    api = f"{ctx.api}/repositories/{repo.full_name}/issues/{item.id}"
    return {
        "type": "issue",
        "id": item.id,
        "title": item.title,
        "content": _rendered(item.content),
        "state": item.state,
        "kind": item.kind,
        "priority": item.priority,
        "reporter": _account_or_none(ctx, item.reporter),
        "assignee": _account_or_none(ctx, item.assignee),
        "created_on": iso(item.created_on),
        "updated_on": iso(item.updated_on),
        "edited_on": None,
        "votes": 0,
        "watches": 1,
        "component": None,
        "milestone": None,
        "version": None,
        "repository": repo_condensed(ctx, repo),
        "links": {
            "self": _href(api),
            "html": _href(f"{ctx.root}/{repo.full_name}/issues/{item.id}"),
            **{k: _href(f"{api}/{k}") for k in ("comments", "attachments", "watch", "vote")},
        },
    }


def hook(ctx: Ctx, repo: Repository, h: Hook) -> dict:
    return {
        "type": "webhook_subscription",
        "uuid": h.id,
        "url": h.url,
        "description": h.description,
        "subject_type": "repository",
        "subject": repo_condensed(ctx, repo),
        "active": h.active,
        "created_at": iso(h.created_at),
        "events": list(h.events),
        "secret_set": bool(h.secret),  # the secret itself is write-only
        "skip_cert_verification": not h.ssl_verification_required,
        "links": {"self": _href(f"{ctx.api}/repositories/{repo.full_name}/hooks/{quote(h.id)}")},
    }


# ---------------------------------------- pagination, fields, q
def _page_url(ctx: Ctx, page: int) -> str:
    args = [(k, v) for k, v in ctx.request.args.items(multi=True) if k != "page"] + [("page", str(page))]
    return f"{ctx.root}{ctx.request.path}?{urlencode(args)}"


def paginate(
    ctx: Ctx,
    items: list,
    render: Callable[[Any], dict],
    *,
    hidden: Iterable[str] = (),
    searchable: bool = True,
    max_pagelen: int | None = None,
    default_pagelen: int = 10,
) -> Response:
    """Cloud collection: q/sort over the rendered objects, then page/pagelen, then fields."""
    args = ctx.request.args
    if searchable and (args.get("q") or args.get("sort")):
        rendered = [render(x) for x in items]
        if args.get("q"):
            predicate = parse_query(args["q"])
            rendered = [r for r in rendered if predicate(r)]
        if args.get("sort"):
            rendered = sort_values(rendered, args["sort"])
        items, render = rendered, (lambda r: r)
    cap = max_pagelen or ctx.backend.config.cloud_max_pagelen
    pagelen = max(1 if default_pagelen > 100 else 10, min(int_arg(ctx.request, "pagelen", default_pagelen), cap))
    page = int_arg(ctx.request, "page", 1)
    if page < 1:
        raise BadRequest("Invalid page")
    start = (page - 1) * pagelen
    chunk = items[start : start + pagelen]
    body: dict[str, Any] = {
        "pagelen": pagelen,
        "size": len(items),
        "page": page,
        "values": [render(x) for x in chunk],
    }
    if start + pagelen < len(items):
        body["next"] = _page_url(ctx, page + 1)
    if page > 1:
        body["previous"] = _page_url(ctx, page - 1)
    full = copy.deepcopy(body) if hidden else None
    for path in hidden:  # fields omitted from collections unless asked for (e.g. PR reviewers)
        _exclude(body, ["values", *path.split(".")])
    return respond(ctx, body, full=full)


def respond(ctx: Ctx, body: dict, status: int = 200, full: dict | None = None) -> Response:
    spec = ctx.request.args.get("fields")
    if spec:
        body = apply_fields(body, full if full is not None else body, spec)
    return json_response(body, status)


def apply_fields(default: dict, full: dict, spec: str) -> dict:
    """Bitbucket partial responses: `-a.b` removes, `+a.b` adds, bare `a.b` keeps only what is listed."""
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    result: Any = {} if any(t[0] not in "+-" for t in tokens) else copy.deepcopy(default)
    for tok in tokens:
        if tok.startswith("-"):
            _exclude(result, tok[1:].split("."))
        else:
            result = _include(result, full, tok.lstrip("+").split("."))
    return result


def _include(dst: Any, src: Any, segs: list[str]) -> Any:
    if not segs:
        return copy.deepcopy(src)
    if isinstance(src, list):
        dst = dst if isinstance(dst, list) and len(dst) == len(src) else [{} for _ in src]
        return [_include(d, s, segs) for d, s in zip(dst, src, strict=True)]
    if not isinstance(src, dict):
        return src
    dst = dst if isinstance(dst, dict) else {}
    head, rest = segs[0], segs[1:]
    for key in list(src) if head == "*" else [head] if head in src else []:
        dst[key] = _include(dst.get(key), src[key], rest)
    return dst


def _exclude(dst: Any, segs: list[str]) -> None:
    if isinstance(dst, list):
        for item in dst:
            _exclude(item, segs)
        return
    if not isinstance(dst, dict) or not segs:
        return
    head, rest = segs[0], segs[1:]
    for key in list(dst) if head == "*" else [head]:
        if key in dst:
            if rest:
                _exclude(dst[key], rest)
            else:
                del dst[key]


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|>=|<=|!~|=|~|>|<|\(|\)|,)|(?P<word>[^\s=!~<>(),"]+))')


def _lex(q: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            if q[pos:].strip() == "":
                break
            raise BadRequest(f"Invalid query: unexpected input at position {pos}")
        pos = m.end()
        kind = m.lastgroup or "word"
        out.append((kind, m.group(kind)))
    return out


def parse_query(q: str) -> Callable[[dict], bool]:
    """BBQL subset: comparisons (= != ~ !~ > >= < <= IN, NOT IN), AND/OR, parentheses."""
    tokens = _lex(q)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise BadRequest("Invalid query: unexpected end")
        pos += 1
        return tokens[pos - 1]

    def value() -> Any:
        kind, text = take()
        if kind == "str":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "op" and text == "(":
            items = [value()]
            while peek() == ("op", ","):
                take()
                items.append(value())
            if take() != ("op", ")"):
                raise BadRequest("Invalid query: expected )")
            return items
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        try:
            return float(text) if "." in text else int(text)
        except ValueError:
            return _datetime(text) or text  # BBQL datetimes are unquoted ISO-8601

    def comparison() -> Callable[[dict], bool]:
        kind, field = take()
        if kind == "op" and field == "(":
            inner = disjunction()
            if take() != ("op", ")"):
                raise BadRequest("Invalid query: expected )")
            return inner
        if kind != "word":
            raise BadRequest(f"Invalid query: expected a field name, got {field!r}")
        kind, op = take()
        if kind == "word" and op.upper() == "NOT":
            take()
            op = "NOT IN"
        elif kind == "word":
            op = op.upper()
        if op not in ("=", "!=", "~", "!~", ">", ">=", "<", "<=", "IN", "NOT IN"):
            raise BadRequest(f"Invalid query: unknown operator {op!r}")
        expected = value()
        path = field.split(".")
        return lambda obj: any(_compare(v, op, expected) for v in _lookup(obj, path))

    def conjunction() -> Callable[[dict], bool]:
        parts = [comparison()]
        while (t := peek()) and t[0] == "word" and t[1].upper() == "AND":
            take()
            parts.append(comparison())
        return lambda obj: all(p(obj) for p in parts)

    def disjunction() -> Callable[[dict], bool]:
        parts = [conjunction()]
        while (t := peek()) and t[0] == "word" and t[1].upper() == "OR":
            take()
            parts.append(conjunction())
        return lambda obj: any(p(obj) for p in parts)

    predicate = disjunction()
    if pos != len(tokens):
        raise BadRequest(f"Invalid query: unexpected {tokens[pos][1]!r}")
    return predicate


def _lookup(obj: Any, path: list[str]) -> list[Any]:
    values = [obj]
    for seg in path:
        nxt = []
        for v in values:
            if isinstance(v, list):
                nxt.extend(x.get(seg) for x in v if isinstance(x, dict))
            elif isinstance(v, dict):
                nxt.append(v.get(seg))
            else:
                nxt.append(None)
        values = nxt
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return flat or [None]


_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def _datetime(value: Any) -> datetime | None:
    """A BBQL datetime: ISO-8601 with the time, milliseconds and offset optional; no offset means UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _ISO_DATETIME.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op in ("=", "!=", ">", ">=", "<", "<=") and (when := _datetime(actual)) and (than := _datetime(expected)):
        # A datetime field against a datetime, quoted or not: compared as instants, not as text.
        actual, expected = when, than
    elif isinstance(expected, datetime):
        expected = expected.isoformat()
    if op == "~":
        return actual is not None and str(expected).lower() in str(actual).lower()
    if op == "!~":
        return actual is None or str(expected).lower() not in str(actual).lower()
    if op == "=":
        return actual == expected
    if op == "!=":
        return actual != expected
    if op == "IN":
        return actual in expected
    if op == "NOT IN":
        return actual not in expected
    if actual is None:
        return False
    try:
        return {
            ">": actual > expected,
            ">=": actual >= expected,
            "<": actual < expected,
            "<=": actual <= expected,
        }[op]
    except TypeError:
        return False


def sort_values(values: list[dict], sort: str) -> list[dict]:
    desc = sort.startswith("-")
    path = sort.lstrip("-").split(".")

    def key(v: dict) -> tuple:
        val = _lookup(v, path)[0]
        if (when := _datetime(val)) is not None:  # datetimes in time order, whatever their text
            return (False, [(0, when.timestamp(), "")])
        if isinstance(val, str):  # natural sort, so feature/10 follows feature/9
            return (val is None, natural_key(val))
        return (val is None, [(0, val, "")] if val is not None else [])

    present = [v for v in values if _lookup(v, path)[0] is not None]
    missing = [v for v in values if _lookup(v, path)[0] is None]
    return sorted(present, key=key, reverse=desc) + missing


# ---------------------------------------- handlers
def _repo(ctx: Ctx, workspace: str, repo_slug: str, token: Token, level: str = "read") -> Repository:
    ctx.backend.get_workspace(workspace)
    repo = ctx.backend.get_repo(CLOUD, workspace, repo_slug)
    ctx.backend.require(token.user, repo, level)
    return repo


@routes.route("/2.0/user")
def get_user(ctx: Ctx) -> Response:
    token = authenticate(ctx, "account")
    return respond(ctx, account(ctx, ctx.backend.get_user(token.user), full=True))


@routes.route("/2.0/user/emails")
def get_user_emails(ctx: Ctx) -> Response:
    token = authenticate(ctx, "email")
    user = ctx.backend.get_user(token.user)
    email = {
        "type": "email",
        "email": user.email,
        "is_primary": True,
        "is_confirmed": True,
        "links": {"self": _href(f"{ctx.api}/user/emails/{quote(user.email)}")},
    }
    return paginate(ctx, [email], lambda e: e)


@routes.route("/2.0/user/workspaces")
def get_user_workspaces(ctx: Ctx) -> Response:
    token = authenticate(ctx, "account")
    admin_filter = ctx.request.args.get("administrator")
    items = []
    for ws in sorted(ctx.backend.workspaces.values(), key=lambda w: w.slug):
        role = ws.members.get(token.user)
        if role is None:
            continue
        is_admin = role == "owner"
        if admin_filter is not None and (admin_filter.lower() == "true") != is_admin:
            continue
        items.append(
            {
                "type": "workspace_access",
                "administrator": is_admin,
                "workspace": workspace_base(ctx, ws),
                "links": {"self": _href(f"{ctx.api}/user/workspaces/{ws.slug}/permission")},
            }
        )
    if ctx.request.args.get("sort", "").lstrip("-") == "slug" and ctx.request.args["sort"].startswith("-"):
        items.reverse()
    return paginate(ctx, items, lambda x: x, searchable=False)


_REMOVED = error_body(
    "This API is no longer supported.",
    "The cross-workspace APIs were removed (CHANGE-2770). Use GET /2.0/user/workspaces and "
    "GET /2.0/repositories/{workspace} instead. See "
    "https://developer.atlassian.com/cloud/bitbucket/changelog/#CHANGE-2770",
)


@routes.route("/2.0/repositories")
@routes.route("/2.0/workspaces")
@routes.route("/2.0/user/permissions/workspaces")
@routes.route("/2.0/user/permissions/repositories")
def removed_cross_workspace(ctx: Ctx) -> Response:
    return json_response(_REMOVED, 410)


_ROLE_LEVEL = {"member": "read", "contributor": "write", "admin": "admin"}


@routes.route("/2.0/repositories/<workspace>")
def list_repositories(ctx: Ctx, workspace: str) -> Response:
    token = authenticate(ctx, "repository")
    backend = ctx.backend
    with backend.lock:
        ws = backend.get_workspace(workspace)
        role = ctx.request.args.get("role")
        if role and role not in (*_ROLE_LEVEL, "owner"):
            raise BadRequest(f"Invalid role: {role}")
        repos = []
        for repo in sorted(backend.list_repos(CLOUD, ws.slug), key=lambda r: r.slug):
            level = backend.permission(token.user, repo)
            if level == 0:
                continue
            if role == "owner" and ws.members.get(token.user) != "owner":
                continue
            if role in _ROLE_LEVEL and level < LEVELS[_ROLE_LEVEL[role]]:
                continue
            repos.append(repo)
        return paginate(ctx, repos, lambda r: repository(ctx, r))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>")
def get_repository(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        return respond(ctx, repository(ctx, _repo(ctx, workspace, repo_slug, token)))


def _list_refs(ctx: Ctx, workspace: str, repo_slug: str, kind: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        refs, render = (repo.branches, branch) if kind == "branch" else (repo.tags, tag)
        ordered = sorted(refs.values(), key=lambda r: natural_key(r.name, fold_case=False))
        return paginate(ctx, ordered, lambda r: render(ctx, repo, r))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/refs/branches")
def list_branches(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    return _list_refs(ctx, workspace, repo_slug, "branch")


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/refs/branches/<path:name>")
def get_branch(ctx: Ctx, workspace: str, repo_slug: str, name: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        if name not in repo.branches:
            raise NotFound(f"Branch not found: {name}")
        return respond(ctx, branch(ctx, repo, repo.branches[name]))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/refs/tags")
def list_tags(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    return _list_refs(ctx, workspace, repo_slug, "tag")


PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests")
def list_pullrequests(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    token = authenticate(ctx, "pullrequest")
    states = _pr_states(ctx)
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        prs = sorted((p for p in repo.pull_requests.values() if p.state in states), key=lambda p: -p.id)
        # Collections omit reviewers/participants unless asked for (fields=+values.reviewers), as Cloud does.
        return paginate(
            ctx,
            prs,
            lambda p: pullrequest(ctx, repo, p),
            hidden=("reviewers", "participants"),
            max_pagelen=ctx.backend.config.cloud_max_pagelen_pullrequests,
        )


@routes.route("/2.0/workspaces/<workspace>/members")
def list_workspace_members(ctx: Ctx, workspace: str) -> Response:
    token = authenticate(ctx, "account")
    with ctx.backend.lock:
        ws = ctx.backend.get_workspace(workspace)
        if token.user not in ws.members:  # Cloud hides a workspace from those outside it
            raise NotFound(f"No workspace with identifier '{workspace}'.", entity="workspace", ident=workspace)
        users = [u for u in (_user(ctx, name) for name in sorted(ws.members)) if u]
        return paginate(
            ctx,
            users,
            lambda u: {
                "type": "workspace_membership",
                "user": account(ctx, u),
                "workspace": workspace_base(ctx, ws),
                "links": {"self": _href(f"{ctx.api}/workspaces/{ws.slug}/members/{quote(u.uuid)}")},
            },
            max_pagelen=100,
        )


@routes.route("/2.0/workspaces/<workspace>/pullrequests/<selected_user>")
def list_workspace_pullrequests(ctx: Ctx, workspace: str, selected_user: str) -> Response:
    """Every pull request `selected_user` (username, {uuid} or Atlassian ID) authored in the workspace's
    repositories the caller can read; OPEN unless `state` says otherwise; q and sort as for any collection."""
    token = authenticate(ctx, "pullrequest")
    states = _pr_states(ctx)
    backend = ctx.backend
    with backend.lock:
        ws = backend.get_workspace(workspace)
        author = next(
            (u for u in backend.users.values() if selected_user in (u.name, u.uuid, u.account_id)),
            None,
        )
        if author is None:
            raise NotFound(f"No user with identifier '{selected_user}'.", entity="user", ident=selected_user)
        found = [
            (repo, pr)
            for repo in sorted(backend.list_repos(CLOUD, ws.slug), key=lambda r: r.slug)
            if backend.permission(token.user, repo) > 0
            for pr in repo.pull_requests.values()
            if pr.author == author.name and pr.state in states
        ]
        return paginate(
            ctx,
            found,
            lambda found_pr: pullrequest(ctx, *found_pr),
            hidden=("reviewers", "participants"),
            max_pagelen=ctx.backend.config.cloud_max_pagelen_pullrequests,
        )


def _pr_states(ctx: Ctx) -> list[str]:
    states = [s.upper() for s in ctx.request.args.getlist("state")] or ["OPEN"]
    for s in states:
        if s not in PR_STATES:
            raise BadRequest(f"Invalid state: {s}. Valid states are {', '.join(PR_STATES)}")
    return states


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>")
def get_pullrequest(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    token = authenticate(ctx, "pullrequest")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        return respond(ctx, pullrequest(ctx, repo, ctx.backend.get_pr(repo, pr_id)))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/issues")
def list_issues(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    token = authenticate(ctx, "issue")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        if not repo.issues:
            raise NotFound("Repository has no issue tracker.")
        return paginate(ctx, sorted(repo.issues.values(), key=lambda i: i.id), lambda i: issue(ctx, repo, i))


def issue_comment(ctx: Ctx, repo: Repository, item: Issue, c: Comment) -> dict:
    """REST `issue_comment`: the comment, its author and the issue it is on."""
    api = f"{ctx.api}/repositories/{repo.full_name}/issues/{item.id}"
    return {
        "type": "issue_comment",
        "id": c.id,
        "created_on": iso(c.created_on),
        "updated_on": iso(c.updated_on),
        "content": _rendered(c.text),
        "user": _account_or_none(ctx, c.author),
        "issue": {
            "type": "issue",
            "id": item.id,
            "title": item.title,
            "repository": repo_condensed(ctx, repo),
            "links": {"self": _href(api), "html": _href(f"{ctx.root}/{repo.full_name}/issues/{item.id}")},
        },
        "links": {
            "self": _href(f"{api}/comments/{c.id}"),
            "html": _href(f"{ctx.root}/{repo.full_name}/issues/{item.id}#comment-{c.id}"),
        },
    }


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/issues/<int:issue_id>/comments")
def list_issue_comments(ctx: Ctx, workspace: str, repo_slug: str, issue_id: int) -> Response:
    """Every comment on an issue, oldest first (q / sort as any collection)."""
    token = authenticate(ctx, "issue")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        item = ctx.backend.get_issue(repo, issue_id)
        comments = sorted(item.comments, key=lambda c: (c.created_on, c.id))
        return paginate(ctx, comments, lambda c: issue_comment(ctx, repo, item, c))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/issues/<int:issue_id>/comments/<int:comment_id>")
def get_issue_comment(ctx: Ctx, workspace: str, repo_slug: str, issue_id: int, comment_id: int) -> Response:
    token = authenticate(ctx, "issue")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        item = ctx.backend.get_issue(repo, issue_id)
        found = next((c for c in item.comments if c.id == comment_id), None)
        if found is None:
            raise NotFound(f"Comment {comment_id} does not exist on issue {issue_id}.")
        return respond(ctx, issue_comment(ctx, repo, item, found))


def _hook_fields(body: dict, creating: bool) -> dict:
    out: dict[str, Any] = {}
    if "url" in body or creating:
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise BadRequest("url: Enter a valid URL.")
        out["url"] = url
    if "events" in body or creating:
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise BadRequest("events: This field is required.")
        unknown = [e for e in events if e not in HOOK_EVENTS]
        if unknown:
            raise BadRequest(f"events: Invalid event(s): {', '.join(map(str, unknown))}")
        out["events"] = events
    if "description" in body:
        out["description"] = str(body["description"] or "")
    if "active" in body:
        out["active"] = bool(body["active"])
    if "secret" in body:  # omitted keeps the secret, null or "" removes it
        secret = body["secret"]
        if secret is not None and (not isinstance(secret, str) or len(secret) > 128):
            raise BadRequest("secret: Ensure this value has at most 128 characters.")
        out["secret"] = secret or None
    if "skip_cert_verification" in body:
        out["ssl_verification_required"] = not body["skip_cert_verification"]
    return out


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/hooks")
def list_hooks(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    token = authenticate(ctx, "webhook")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token, "admin")
        return paginate(ctx, list(repo.hooks.values()), lambda h: hook(ctx, repo, h), searchable=False)


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/hooks", methods=("POST",))
def create_hook(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    token = authenticate(ctx, "webhook")
    fields = _hook_fields(ctx.json_body(), creating=True)
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token, "admin")
        h = ctx.backend.add_hook(repo, fields.pop("url"), fields.pop("events"), **fields)
        resp = respond(ctx, hook(ctx, repo, h), 201)
        resp.headers["Location"] = f"{ctx.api}/repositories/{repo.full_name}/hooks/{quote(h.id)}"
        return resp


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/hooks/<uid>", methods=("GET", "PUT", "DELETE"))
def hook_item(ctx: Ctx, workspace: str, repo_slug: str, uid: str) -> Response:
    token = authenticate(ctx, "webhook")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token, "admin")
        h = ctx.backend.get_hook(repo, uid)
        if ctx.request.method == "DELETE":
            ctx.backend.delete_hook(repo, h)
            return Response(status=204)
        if ctx.request.method == "PUT":
            ctx.backend.update_hook(h, _hook_fields(ctx.json_body(), creating=False))
        return respond(ctx, hook(ctx, repo, h))


# ---------------------------------------- webhook payloads
# Shapes follow the real payloads in ../shared/bitbucket/webhooks/cloud (key for key).
def p_account(ctx: Ctx, name: str | None, typed: bool = False) -> dict | None:
    user = _user(ctx, name)
    if user is None:
        return None
    body = {
        "nickname": user.name,
        "account_id": user.account_id,
        "display_name": user.display_name,
        "uuid": user.uuid,
        "links": _account_links(ctx, user),
    }
    return {"type": "user", **body} if typed else body


def p_repo(ctx: Ctx, repo: Repository, full: bool = False) -> dict:
    body: dict[str, Any] = {
        "links": _repo_links(ctx, repo.full_name),
        "uuid": repo.uuid,
        "full_name": repo.full_name,
        "name": repo.name,
        "scm": "git",
        "is_private": repo.is_private,
    }
    if full:
        ws = ctx.backend.workspaces[repo.owner]
        body = {
            "type": "repository",
            "links": body["links"],
            "uuid": repo.uuid,
            "project": {
                "type": "project",
                "project": ws.project_name,
                "uuid": ws.project_uuid,
                "links": _project_links(ctx, ws),
                "key": ws.project_key,
            },
            "full_name": repo.full_name,
            "name": repo.name,
            "website": "",
            "owner": {
                "type": "team",
                "nickname": ws.slug,
                "account_id": None,
                "display_name": ws.name,
                "uuid": ws.uuid,
                "links": _workspace_links(ctx, ws),
            },
            "scm": "git",
            "is_private": repo.is_private,
        }
    return body


def _p_target(ctx: Ctx, repo: Repository, sha: str) -> dict:
    c = ctx.backend.commit_info(repo, sha)
    return {
        "type": "commit",
        "hash": c.hash,
        "author": p_account(ctx, c.author) or {},
        "message": c.message + "\n",
        "date": iso(c.date),
        "parents": [{"type": "commit", "hash": p, "links": _commit_links(ctx, repo, p)} for p in c.parents],
        "links": _commit_links(ctx, repo, c.hash),
    }


def _p_ref(ctx: Ctx, repo: Repository, kind: str, ref: Ref | None) -> dict | None:
    if ref is None:
        return None
    return {
        "type": kind,
        "name": ref.name,
        "target": _p_target(ctx, repo, ref.target),
        "links": _ref_links(ctx, repo, kind, ref.name),
    }


#: Cloud lists a push's newest commits only, up to 5, and says `truncated` when there were more.
PUSH_COMMITS = 5


def _p_change(ctx: Ctx, repo: Repository, change: dict) -> dict:
    old, new = change["old"], change["new"]
    a = new.target if new else "0" * 40
    b = old.target if old else "0" * 40
    api = f"{ctx.api}/repositories/{repo.full_name}"
    return {
        "new": _p_ref(ctx, repo, change["kind"], new),
        "old": _p_ref(ctx, repo, change["kind"], old),
        "links": {
            "html": _href(f"{ctx.root}/{repo.full_name}/branches/compare/{a}..{b}"),
            "diff": _href(f"{api}/diff/{a}..{b}"),
            "commits": _href(f"{api}/commits?include={a}&exclude={b}"),
        },
        "created": old is None,
        "forced": bool(change.get("forced")),
        "closed": new is None,
        "commits": [
            {
                "hash": c.hash,
                "type": "commit",
                "message": c.message + "\n",
                "author": p_account(ctx, c.author) or {},
                "links": _commit_links(ctx, repo, c.hash),
            }
            for c in list(reversed(change["commits"]))[:PUSH_COMMITS]
        ],
        "truncated": len(change["commits"]) > PUSH_COMMITS,
    }


def p_pullrequest(ctx: Ctx, repo: Repository, pr: PullRequest) -> dict:
    def endpoint(branch_name: str, sha: str) -> dict:
        return {
            "branch": {"name": branch_name},
            "commit": {"hash": sha[:12]},
            "repository": p_repo(ctx, repo),
        }

    return {
        "id": pr.id,
        "title": pr.title,
        "description": pr.description,
        "state": pr.state,
        "author": p_account(ctx, pr.author),
        "source": endpoint(pr.source_branch, pr.source_hash),
        "destination": endpoint(pr.dest_branch, pr.dest_hash),
        "merge_commit": {"hash": pr.merge_hash[:12]} if pr.merge_hash else None,
        "participants": [
            p_account(ctx, n) for n in [*(r.user for r in pr.reviewers), *pr.participants] if n in ctx.backend.users
        ],
        "reviewers": [
            p_account(ctx, r.user) for r in pr.reviewers if r.role == "REVIEWER" and r.user in ctx.backend.users
        ],
        "close_source_branch": pr.close_source_branch,
        "closed_by": p_account(ctx, pr.closed_by),
        "reason": pr.reason,
        "created_on": iso(pr.created_on),
        "updated_on": iso(pr.updated_on),
        "links": {
            "self": _href(f"{ctx.api}/repositories/{repo.full_name}/pullrequests/{pr.id}"),
            "html": _href(f"{ctx.root}/{repo.full_name}/pull-requests/{pr.id}"),
        },
    }


# Backend event key -> Cloud X-Event-Key (None: Cloud has no such event).
EVENT_KEYS = {
    "repo:push": "repo:push",
    "repo:updated": "repo:updated",
    "pullrequest:created": "pullrequest:created",
    "pullrequest:updated": "pullrequest:updated",
    "pullrequest:push": "pullrequest:push",
    "pullrequest:fulfilled": "pullrequest:fulfilled",
    "pullrequest:rejected": "pullrequest:rejected",
    "pullrequest:approved": "pullrequest:approved",
    "pullrequest:unapproved": "pullrequest:unapproved",
    "pullrequest:changes_request_created": "pullrequest:changes_request_created",
    "pullrequest:changes_request_removed": "pullrequest:changes_request_removed",
    "pullrequest:comment_created": "pullrequest:comment_created",
    "pullrequest:comment_updated": "pullrequest:comment_updated",
    "pullrequest:comment_deleted": "pullrequest:comment_deleted",
    "repo:commit_status_created": "repo:commit_status_created",
    "repo:commit_status_updated": "repo:commit_status_updated",
    "pullrequest:deleted": None,
}


def render_event(ctx: Ctx, event: Event) -> tuple[str, dict] | None:
    key = EVENT_KEYS.get(event.key)
    if key is None:
        return None
    repo = event.repo
    if key == "repo:push":
        changes = [_p_change(ctx, repo, c) for c in event.data["changes"]]
        return key, {
            "actor": p_account(ctx, event.actor),
            "repository": p_repo(ctx, repo),
            "push": {"changes": changes},
        }
    if key == "repo:updated":
        old = event.data["old"]
        full_old = f"{repo.owner}/{old['slug']}"

        def links(full_name: str) -> dict:  # avatar first, as in Cloud's repo:updated payload
            by_kind = _repo_links(ctx, full_name)
            return {"avatar": by_kind["avatar"], "self": by_kind["self"], "html": by_kind["html"]}

        changes = {
            "name": {"new": repo.name, "old": old["name"]},
            "website": {"new": "", "old": ""},
            "language": {"new": repo.language, "old": repo.language},
            "links": {"new": links(repo.full_name), "old": links(full_old)},
            "description": {"new": repo.description, "old": old["description"]},
            "full_name": {"new": repo.full_name, "old": full_old},
        }
        return key, {
            "actor": p_account(ctx, event.actor, typed=True),
            "repository": p_repo(ctx, repo, full=True),
            "changes": changes,
        }
    if key in ("repo:commit_status_created", "repo:commit_status_updated"):
        return key, {
            "actor": p_account(ctx, event.actor),
            "repository": p_repo(ctx, repo),
            "commit_status": commit_status(ctx, repo, event.data["status"]),
        }
    pr = event.data["pr"]
    body: dict[str, Any] = {
        "actor": p_account(ctx, event.actor),
        "pullrequest": p_pullrequest(ctx, repo, pr),
        "repository": p_repo(ctx, repo),
    }
    if key in ("pullrequest:approved", "pullrequest:unapproved"):
        body["approval"] = {"date": iso(event.data["reviewer"].participated_on), "user": p_account(ctx, event.actor)}
    if key in ("pullrequest:changes_request_created", "pullrequest:changes_request_removed"):
        # No shared sample; the shape of `approval` under the key Atlassian's event payload page names.
        body["changes_request"] = {
            "date": iso(event.data["reviewer"].participated_on),
            "user": p_account(ctx, event.actor),
        }
    if key.startswith("pullrequest:comment_"):
        body["comment"] = p_comment(ctx, repo, pr, event.data["comment"])
    return key, body


def p_comment(ctx: Ctx, repo: Repository, pr: PullRequest, c: Comment) -> dict:
    """A comment as pull-request comment payloads carry it (created, updated and deleted alike)."""
    comment: dict[str, Any] = {"id": c.id}
    if c.parent is not None:
        comment["parent"] = {"id": c.parent}
    comment["content"] = _rendered(c.text)
    if c.inline:
        comment["inline"] = {"path": c.inline["path"], "from": c.inline.get("from"), "to": c.inline.get("to")}
    comment.update(created_on=iso(c.created_on), updated_on=iso(c.updated_on), links=_comment_links(ctx, repo, pr, c))
    return comment


def _comment_links(ctx: Ctx, repo: Repository, pr: PullRequest, c: Comment) -> dict:
    api = f"{ctx.api}/repositories/{repo.full_name}/pullrequests/{pr.id}/comments/{c.id}"
    return {
        "self": _href(api),
        "html": _href(f"{ctx.root}/{repo.full_name}/pull-requests/{pr.id}/_/diff#comment-{c.id}"),
    }


# ---------------------------------------- source: commits, diffs, files (answered from the git objects)
def _git_error(exc: GitError) -> NotFound:
    return NotFound(str(exc))


def _resolve(ctx: Ctx, repo: Repository, revision: str) -> str:
    try:
        return ctx.backend.resolve(repo, revision)
    except NotFound as exc:
        raise NotFound(f"Commit not found: {revision}") from exc


def _commit_full(ctx: Ctx, repo: Repository, sha: str) -> dict:
    body = commit(ctx, repo, ctx.backend.commit_info(repo, sha))
    api = f"{ctx.api}/repositories/{repo.full_name}"
    body["links"].update(
        diff=_href(f"{api}/diff/{sha}"),
        patch=_href(f"{api}/patch/{sha}"),
        comments=_href(f"{api}/commit/{sha}/comments"),
        approve=_href(f"{api}/commit/{sha}/approve"),
        statuses=_href(f"{api}/commit/{sha}/statuses"),
    )
    body["rendered"] = {"message": {"type": "rendered", **body["summary"]}}
    body["participants"] = []
    return body


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/commit/<commit_id>")
def get_commit(ctx: Ctx, workspace: str, repo_slug: str, commit_id: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        sha = repo.git.resolve_prefix(commit_id)
        if sha is None:
            raise NotFound(f"Commit not found: {commit_id}")
        return respond(ctx, _commit_full(ctx, repo, sha))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/commits")
@routes.route("/2.0/repositories/<workspace>/<repo_slug>/commits/<path:revision>")
def list_commits(ctx: Ctx, workspace: str, repo_slug: str, revision: str | None = None) -> Response:
    """`git log`: commits of `revision` and `include` refs but not of `exclude` refs (no revision and no include:
    every branch and tag), newest first; `path` keeps the commits that changed it."""
    token = authenticate(ctx, "repository")
    args = ctx.request.args
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        include = [_resolve(ctx, repo, r) for r in ([revision] if revision else []) + args.getlist("include")]
        if not include:
            include = sorted({r.target for r in (*repo.branches.values(), *repo.tags.values())})
        exclude = [_resolve(ctx, repo, r) for r in args.getlist("exclude")]
        log = repo.git.log(include, exclude, args.get("path"))
        return paginate(ctx, log, lambda c: commit(ctx, repo, ctx.backend.commit_info(repo, c.id.decode())))


def _spec(ctx: Ctx, repo: Repository, spec: str) -> tuple[str | None, str]:
    """(old, new) commits of a diff spec: `new..old` (Bitbucket's order, the opposite of git's; three-dot from
    their merge base unless `topic=false` / `merge=false`), or one commit (against its first parent)."""
    if ".." in spec:
        new_rev, _, old_rev = spec.partition("..")
        new, old = _resolve(ctx, repo, new_rev), _resolve(ctx, repo, old_rev)
        args = ctx.request.args
        two_dot = (args.get("topic") or args.get("merge") or "true").lower() == "false"
        return (old if two_dot else repo.git.merge_base(new, old)), new
    new = _resolve(ctx, repo, spec)
    parents = repo.git.parents(new)
    return (parents[0] if parents else None), new


def _src_link(ctx: Ctx, repo: Repository, sha: str, path: str) -> dict:
    return _href(f"{ctx.api}/repositories/{repo.full_name}/src/{sha}/{quote(path)}")


def _commit_file(ctx: Ctx, repo: Repository, sha: str, path: str) -> dict:
    return {
        "path": path,
        "escaped_path": path,
        "type": "commit_file",
        "links": {"self": _src_link(ctx, repo, sha, path)},
    }


def _diffstat(ctx: Ctx, repo: Repository, old: str | None, new: str, change: Change) -> dict:
    return {
        "type": "diffstat",
        "status": change.status,
        "lines_added": change.lines_added,
        "lines_removed": change.lines_removed,
        "old": _commit_file(ctx, repo, old, change.old_path) if old and change.old_path else None,
        "new": _commit_file(ctx, repo, new, change.path) if change.path else None,
    }


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/diffstat/<path:spec>")
def get_diffstat(ctx: Ctx, workspace: str, repo_slug: str, spec: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        old, new = _spec(ctx, repo, spec)
        paths = set(ctx.request.args.getlist("path"))
        changes = [c for c in repo.git.changes(old, new) if not paths or {c.path, c.old_path} & paths]
        return paginate(
            ctx,
            changes,
            lambda c: _diffstat(ctx, repo, old, new, c),
            searchable=False,
            max_pagelen=5000,
            default_pagelen=500,
        )


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/diff/<path:spec>")
def get_diff(ctx: Ctx, workspace: str, repo_slug: str, spec: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        old, new = _spec(ctx, repo, spec)
        body = repo.git.diff(old, new, ctx.request.args.getlist("path"))
    return Response(body, 200, content_type="text/plain")


def _tree_entry(ctx: Ctx, repo: Repository, sha: str, entry: Entry) -> dict:
    api = f"{ctx.api}/repositories/{repo.full_name}/src/{sha}/{quote(entry.path)}"
    c = {"type": "commit", "hash": sha, "links": _commit_links(ctx, repo, sha)}
    if entry.is_dir:
        return {
            "path": entry.path,
            "type": "commit_directory",
            "links": {"self": _href(api + "/"), "meta": _href(api + "/?format=meta")},
            "commit": c,
        }
    return {
        "path": entry.path,
        "commit": c,
        "type": "commit_file",
        "attributes": _attributes(entry.mode, repo.git.read(entry.sha) if entry.size is not None else b""),
        "escaped_path": entry.path,
        "size": entry.size or 0,
        "mimetype": mimetypes.guess_type(entry.path)[0],
        "links": {"self": _href(api), "meta": _href(api + "?format=meta")},
    }


def _attributes(mode: int, content: bytes) -> list[str]:
    attributes = {EXEC_MODE: ["executable"], LINK_MODE: ["link"], SUBMODULE_MODE: ["subrepository"]}.get(mode, [])
    return attributes + (["binary"] if mode != SUBMODULE_MODE and is_binary(content) else [])


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/src")
def src_root(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    """Redirects to the root directory of the main branch, as Bitbucket does."""
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        head = repo.branches[repo.default_branch].target
    query = ctx.request.query_string.decode()
    location = f"{ctx.api}/repositories/{repo.full_name}/src/{head}/" + (f"?{query}" if query else "")
    return Response("", 302, headers={"Location": location})


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/src/<commit_id>/")
@routes.route("/2.0/repositories/<workspace>/<repo_slug>/src/<commit_id>/<path:path>")
def get_src(ctx: Ctx, workspace: str, repo_slug: str, commit_id: str, path: str = "") -> Response:
    """A file's raw bytes, or a directory's entries (breadth-first to `max_depth`); `format=meta` for JSON."""
    token = authenticate(ctx, "repository")
    args = ctx.request.args
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        sha = _resolve(ctx, repo, commit_id)
        found = repo.git.lookup(sha, path)
        if found is None:
            raise NotFound(f"No such file or directory: {path}")
        mode, object_id = found
        clean = path.strip("/")
        if mode == DIR_MODE:
            if args.get("format") == "meta":
                entry = Entry(clean, clean.rpartition("/")[2], mode, object_id.decode(), None)
                return respond(ctx, _tree_entry(ctx, repo, sha, entry))
            try:
                entries = repo.git.listdir(sha, clean, int_arg(ctx.request, "max_depth", 1))
            except GitError as exc:
                raise _git_error(exc) from exc
            return paginate(ctx, entries, lambda e: _tree_entry(ctx, repo, sha, e), max_pagelen=100)
        content = repo.git.read(object_id) if mode != SUBMODULE_MODE else object_id + b"\n"
        entry = Entry(clean, clean.rpartition("/")[2], mode, object_id.decode(), len(content))
    if args.get("format") == "meta":
        return respond(ctx, _tree_entry(ctx, repo, sha, entry))
    headers = {
        "Content-Disposition": "attachment",
        "ETag": '"' + hashlib.sha1(bytes(str(mode), "ascii") + content, usedforsecurity=False).hexdigest() + '"',
    }
    mimetype = mimetypes.guess_type(clean)[0] or ("application/octet-stream" if is_binary(content) else "text/plain")
    return Response(content, 200, headers=headers, content_type=mimetype)


# ---------------------------------------- commit statuses, pull request comments, reviews, activity
# Shapes per the `commitstatus`, `pullrequest_comment`, `participant` schemas; scopes as the operations declare
# them (statuses: repository; comments and activity: pullrequest; approve, request changes, merge, decline:
# pullrequest:write). Validation wording from Bitbucket's own answers (README "Write-back and review").
STATUS_STATES = ("INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED")
STATUS_KEY_MAX = 40  # "key: Ensure this value has at most 40 characters (it has 53)."
MERGE_STRATEGIES = {"merge_commit": "merge_commit", "squash": "squash", "fast_forward": "fast_forward"}


def _field_error(field: str, message: str) -> Response:
    """Cloud's validation answer: 400 with the field's message (as bitbucket.org words it) under `fields`."""
    body = {"type": "error", "error": {"message": f"{field}: {message}", "fields": {field: [message]}}}
    return json_response(body, 400)


def commit_status(ctx: Ctx, repo: Repository, status: CommitStatus) -> dict:
    api = f"{ctx.api}/repositories/{repo.full_name}/commit/{status.commit}"
    body: dict[str, Any] = {
        "type": "build",
        "key": status.key,
        "state": status.state,
        "name": status.name,
        "description": status.description,
        "url": status.url,
    }
    if status.refname:
        body["refname"] = status.refname
    body.update(
        created_on=iso(status.created_on),
        updated_on=iso(status.updated_on),
        links={"commit": _href(api), "self": _href(f"{api}/statuses/build/{quote(status.key, safe='')}")},
    )
    return body


def _status_commit(ctx: Ctx, repo: Repository, commit_id: str) -> str:
    sha = repo.git.resolve_prefix(commit_id)
    if sha is None:
        raise NotFound(f"Commit not found: {commit_id}")
    return sha


def _status_fields(body: dict, *, creating: bool) -> dict | Response:
    """The fields of a build status body, or Cloud's 400 naming the first bad one."""
    out: dict[str, Any] = {}
    if creating:
        key = body.get("key")
        if not isinstance(key, str) or not key:
            return _field_error("key", "This field is required.")
        if len(key) > STATUS_KEY_MAX:
            return _field_error(
                "key", f"Ensure this value has at most {STATUS_KEY_MAX} characters (it has {len(key)})."
            )
        out["key"] = key
    state = body.get("state")
    if creating or "state" in body:
        if state not in STATUS_STATES:
            return _field_error("state", f'"{state}" is not a valid choice.' if state else "This field is required.")
        out["state"] = state
    if creating or "url" in body:
        url = body.get("url")
        if not url:
            return _field_error("url", "This field is required.")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            return _field_error("url", "Enter a valid URL.")
        out["url"] = url
    for name in ("name", "description", "refname"):
        if isinstance(body.get(name), str):
            out[name] = body[name]
    return out


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/commit/<commit_id>/statuses/build", methods=("POST",))
def create_status(ctx: Ctx, workspace: str, repo_slug: str, commit_id: str) -> Response:
    """Creates a build status; "if the specified key already exists, the existing status object will be
    overwritten" (201 either way): repo:commit_status_created, then _updated."""
    token = authenticate(ctx, "repository")
    fields = _status_fields(ctx.json_body(), creating=True)
    if isinstance(fields, Response):
        return fields
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        sha = _status_commit(ctx, repo, commit_id)
        status, _ = ctx.backend.set_commit_status(repo, sha, token.user, **fields)
        resp = respond(ctx, commit_status(ctx, repo, status), 201)
        resp.headers["Location"] = commit_status(ctx, repo, status)["links"]["self"]["href"]
        return resp


@routes.route(
    "/2.0/repositories/<workspace>/<repo_slug>/commit/<commit_id>/statuses/build/<path:key>", methods=("GET", "PUT")
)
def status_item(ctx: Ctx, workspace: str, repo_slug: str, commit_id: str, key: str) -> Response:
    token = authenticate(ctx, "repository")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        sha = _status_commit(ctx, repo, commit_id)
        status = repo.statuses.get((sha, key))
        if status is None:
            raise NotFound(f"No build status {key} for commit {commit_id}.")
        if ctx.request.method == "PUT":
            fields = _status_fields(ctx.json_body(), creating=False)
            if isinstance(fields, Response):
                return fields
            merged = {"state": status.state, "url": status.url, **fields}
            status, _ = ctx.backend.set_commit_status(repo, sha, token.user, key, **merged)
        return respond(ctx, commit_status(ctx, repo, status))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/commit/<commit_id>/statuses")
def list_statuses(ctx: Ctx, workspace: str, repo_slug: str, commit_id: str) -> Response:
    token = authenticate(ctx, "repository")
    refname = ctx.request.args.get("refname")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        sha = _status_commit(ctx, repo, commit_id)
        statuses = [s for s in ctx.backend.statuses_of(repo, sha) if not refname or s.refname in (None, refname)]
        return paginate(ctx, statuses, lambda s: commit_status(ctx, repo, s))


# -- comments
def pr_comment(ctx: Ctx, repo: Repository, pr: PullRequest, c: Comment) -> dict:
    """REST `pullrequest_comment`. Cloud keeps a deleted comment in the listing, marked `deleted`."""
    links = _comment_links(ctx, repo, pr, c)
    body: dict[str, Any] = {
        "type": "pullrequest_comment",
        "id": c.id,
        "created_on": iso(c.created_on),
        "updated_on": iso(c.updated_on),
        "content": _rendered(c.text),
        "user": _account_or_none(ctx, c.author),
        "deleted": c.deleted,
        "pending": False,
    }
    if c.parent is not None:
        parent_links = {"self": _href(links["self"]["href"].rpartition("/")[0] + f"/{c.parent}")}
        body["parent"] = {"type": "pullrequest_comment", "id": c.parent, "links": parent_links}
    if c.inline:
        # Cloud sends the side a comment is not on as null (`from` for a new-side line).
        body["inline"] = {"from": c.inline.get("from"), "to": c.inline.get("to"), "path": c.inline["path"]}
    body["pullrequest"] = {
        "type": "pullrequest",
        "id": pr.id,
        "title": pr.title,
        "links": {
            "self": _href(f"{ctx.api}/repositories/{repo.full_name}/pullrequests/{pr.id}"),
            "html": _href(f"{ctx.root}/{repo.full_name}/pull-requests/{pr.id}"),
        },
    }
    body["links"] = links
    return body


def _comment_text(body: dict) -> str | Response:
    raw = (body.get("content") or {}).get("raw") if isinstance(body.get("content"), dict) else None
    if not isinstance(raw, str) or not raw.strip():
        return _field_error("content", "This field is required.")
    return raw


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/comments", methods=("GET", "POST"))
def pr_comments(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """Every comment (general, inline, replies, deleted ones marked), oldest first; POST adds one."""
    token = authenticate(ctx, "pullrequest")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        pr = ctx.backend.get_pr(repo, pr_id)
        if ctx.request.method == "GET":
            comments = sorted(pr.comments, key=lambda c: (c.created_on, c.id))
            return paginate(ctx, comments, lambda c: pr_comment(ctx, repo, pr, c))
        body = ctx.json_body()
        text = _comment_text(body)
        if isinstance(text, Response):
            return text
        parent = body.get("parent")
        parent_id = parent.get("id") if isinstance(parent, dict) else None
        if parent is not None and not isinstance(parent_id, int):
            return _field_error("parent", "Give the id of the comment to reply to.")
        c = ctx.backend.comment_pull_request(repo, pr.id, token.user, text, parent_id, body.get("inline"))
        rendered = pr_comment(ctx, repo, pr, c)
        resp = respond(ctx, rendered, 201)
        resp.headers["Location"] = rendered["links"]["self"]["href"]
        return resp


@routes.route(
    "/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/comments/<int:comment_id>",
    methods=("GET", "PUT", "DELETE"),
)
def pr_comment_item(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int, comment_id: int) -> Response:
    """Only its author edits a comment; its author or a repository admin deletes it (it stays, `deleted`)."""
    token = authenticate(ctx, "pullrequest")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        pr, c = ctx.backend.get_comment(repo, pr_id, comment_id)
        if ctx.request.method == "DELETE":
            ctx.backend.delete_comment(repo, pr.id, c.id, token.user)
            return Response(status=204)
        if ctx.request.method == "PUT":
            text = _comment_text(ctx.json_body())
            if isinstance(text, Response):
                return text
            c = ctx.backend.edit_comment(repo, pr.id, c.id, token.user, text)
        return respond(ctx, pr_comment(ctx, repo, pr, c))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/commits")
def pr_commits(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """The commits the pull request brings, newest first; none once its source branch is gone, as Atlassian's
    document says ("This list will be empty if the source branch no longer exists")."""
    token = authenticate(ctx, "pullrequest")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        pr = ctx.backend.get_pr(repo, pr_id)
        shas = ctx.backend.pull_request_commits(repo, pr) if pr.source_branch in repo.branches else []
        return paginate(ctx, shas, lambda sha: commit(ctx, repo, ctx.backend.commit_info(repo, sha)))


# -- reviews, merge, decline
def _review(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int, status: str) -> Response:
    token = authenticate(ctx, "pullrequest:write")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        try:
            _, reviewer = ctx.backend.review(repo, pr_id, token.user, status)
        except PullRequestClosed as exc:  # Cloud answers 400 ("... has already been merged")
            raise BadRequest(exc.message) from exc
        if status == "UNAPPROVED":
            return Response(status=204)
        return respond(ctx, participant(ctx, ctx.backend.get_user(token.user), reviewer))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/approve", methods=("POST", "DELETE"))
def approve(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """POST: approve (pullrequest:approved). DELETE: withdraw the approval (pullrequest:unapproved)."""
    return _review(ctx, workspace, repo_slug, pr_id, "APPROVED" if ctx.request.method == "POST" else "UNAPPROVED")


@routes.route(
    "/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/request-changes", methods=("POST", "DELETE")
)
def request_changes(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """POST: request changes (pullrequest:changes_request_created). DELETE: withdraw the request
    (pullrequest:changes_request_removed)."""
    return _review(ctx, workspace, repo_slug, pr_id, "NEEDS_WORK" if ctx.request.method == "POST" else "UNAPPROVED")


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/merge", methods=("POST",))
def merge(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """Merge (write permission): `merge_strategy` merge_commit (default), squash or fast_forward, `message`.
    Conflicts: 400, and the pull request stays open."""
    token = authenticate(ctx, "pullrequest:write")
    body = ctx.json_body()
    strategy = body.get("merge_strategy") or "merge_commit"
    if strategy not in MERGE_STRATEGIES:
        allowed = ", ".join(MERGE_STRATEGIES)
        return json_response(error_body(f"merge_strategy: {strategy} is not allowed here; use one of {allowed}."), 400)
    message = body.get("message") if isinstance(body.get("message"), str) else None
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token, "write")
        try:
            pr = ctx.backend.merge_pull_request(repo, pr_id, token.user, MERGE_STRATEGIES[strategy], message)
        except MergeConflicted as exc:
            raise BadRequest(
                "You can't merge until you resolve all merge conflicts.", paths=exc.detail.get("paths")
            ) from exc
        except PullRequestClosed as exc:
            raise BadRequest(exc.message) from exc
        return respond(ctx, pullrequest(ctx, repo, pr))


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/decline", methods=("POST",))
def decline(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """Decline (its author or someone with write permission); the operation takes no body."""
    token = authenticate(ctx, "pullrequest:write")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        pr = ctx.backend.get_pr(repo, pr_id)
        if token.user != pr.author:
            ctx.backend.require(token.user, repo, "write")
        try:
            ctx.backend.decline_pull_request(repo, pr.id, token.user)
        except PullRequestClosed as exc:
            raise BadRequest(exc.message) from exc
        return respond(ctx, pullrequest(ctx, repo, pr))


# -- activity
def _pr_ref(ctx: Ctx, repo: Repository, pr: PullRequest) -> dict:
    return {
        "type": "pullrequest",
        "id": pr.id,
        "title": pr.title,
        "links": {
            "self": _href(f"{ctx.api}/repositories/{repo.full_name}/pullrequests/{pr.id}"),
            "html": _href(f"{ctx.root}/{repo.full_name}/pull-requests/{pr.id}"),
        },
    }


def _activity_item(ctx: Ctx, repo: Repository, pr: PullRequest, entry: Any) -> dict | None:
    """One `/activity` value as the operation's examples show them: `comment`, `update` or `approval` (and
    `changes_request`), with the pull request beside it."""
    ref = _pr_ref(ctx, repo, pr)
    if entry.kind == "commented":
        c = next((c for c in pr.comments if c.id == entry.data["comment"]), None)
        if c is None:
            return None
        comment = pr_comment(ctx, repo, pr, c)
        comment["content"]["type"] = "rendered"
        if c.inline:
            comment["inline"].update(outdated=c.commit != pr.source_hash, context_lines="")
        return {"comment": comment, "pull_request": ref}
    if entry.kind in ("approved", "changes_requested"):
        # An approval (or change request) shows while it stands: withdrawn ones leave the log.
        reviewer = next((r for r in pr.reviewers if r.user == entry.user), None)
        wanted = "APPROVED" if entry.kind == "approved" else "NEEDS_WORK"
        latest = next(a for a in reversed(pr.activity) if a.user == entry.user and a.kind == entry.kind)
        if reviewer is None or reviewer.status != wanted or latest is not entry:
            return None
        name = "approval" if entry.kind == "approved" else "changes_request"
        return {
            name: {"date": iso(entry.at), "pullrequest": ref, "user": account(ctx, ctx.backend.users[entry.user])},
            "pull_request": ref,
        }
    if entry.kind in ("opened", "updated", "rescoped", "merged", "declined"):
        state = {"merged": "MERGED", "declined": "DECLINED"}.get(entry.kind, "OPEN")

        def end(branch: str, sha: str) -> dict:
            return {
                "commit": {"type": "commit", "hash": sha[:12], "links": _commit_links(ctx, repo, sha[:12])},
                "branch": {"name": branch},
                "repository": repo_condensed(ctx, repo),
            }

        source = entry.data.get("current") or pr.source_hash
        update = {
            "description": pr.description,
            "title": pr.title,
            "destination": end(pr.dest_branch, pr.dest_hash),
            "reason": entry.data.get("reason", ""),
            "source": end(pr.source_branch, source),
            "state": state,
            "author": account(ctx, ctx.backend.users[pr.author]) if pr.author in ctx.backend.users else None,
            "date": iso(entry.at),
        }
        return {"update": update, "pull_request": ref}
    return None  # unapprovals and withdrawn change requests are not in the log


@routes.route("/2.0/repositories/<workspace>/<repo_slug>/pullrequests/<int:pr_id>/activity")
def pr_activity(ctx: Ctx, workspace: str, repo_slug: str, pr_id: int) -> Response:
    """The pull request's activity, newest first: comments, updates (opened, edited, new commits, merged,
    declined) and the approvals and change requests that stand."""
    token = authenticate(ctx, "pullrequest")
    with ctx.backend.lock:
        repo = _repo(ctx, workspace, repo_slug, token)
        pr = ctx.backend.get_pr(repo, pr_id)
        items = [i for i in (_activity_item(ctx, repo, pr, a) for a in reversed(pr.activity)) if i is not None]
        return paginate(ctx, items, lambda i: i, searchable=False, default_pagelen=20)
