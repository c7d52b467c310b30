"""Control API under /_emulator/ (same on both servers, same backend). Not counted in request stats.

See README.md for the full reference.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from . import cloud, datacenter
from .models import CLOUD, DC, FLAVORS, BadRequest, Repository
from .oauth import authorize_decision, cloud_check, dc_check, dc_scopes
from .ratelimit import RATE_LIMIT_KEYS, configure
from .seed import apply_spec, seed_default
from .web import Ctx, Routes, json_response

routes = Routes()
P = "/_emulator"
REPO = P + "/<flavor>/repos/<owner>/<slug>"


def _flavor(flavor: str) -> str:
    aliases = {"cloud": CLOUD, "datacenter": DC, "dc": DC, "server": DC}
    if flavor not in aliases:
        raise BadRequest(f"Unknown flavor {flavor!r}; use cloud or datacenter.")
    return aliases[flavor]


def _flavor_ctx(ctx: Ctx, flavor: str) -> Ctx:
    root = ctx.backend.public_urls[flavor]
    return Ctx(ctx.request, ctx.backend, flavor, root, ctx.emulator)


def _repo(ctx: Ctx, flavor: str, owner: str, slug: str) -> tuple[str, Repository]:
    flavor = _flavor(flavor)
    return flavor, ctx.backend.get_repo(flavor, owner, slug)


def _actor(ctx: Ctx, body: dict, repo: Repository | None = None) -> str:
    name = body.get("user") or ctx.request.args.get("user")
    if not name:
        if "alice" in ctx.backend.users:
            name = "alice"
        elif ctx.backend.users:
            name = next(iter(ctx.backend.users))
        else:
            raise BadRequest("No users exist; seed some first.")
    return ctx.backend.get_user(name).name


def _deliver(ctx: Ctx) -> bool:
    """A change's ``deliver`` flag (JSON body, or ``?deliver=`` for DELETE); false = the change fires no webhook."""
    raw = ctx.request.args.get("deliver")
    if raw is not None:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise BadRequest("deliver must be true or false")
        return raw.lower() in ("true", "1")
    value = ctx.json_body().get("deliver", True)
    if not isinstance(value, bool):
        raise BadRequest("deliver must be true or false")
    return value


def change(fn: Callable[..., Response]) -> Callable[..., Response]:
    """A control call that changes data: with ``"deliver": false`` it happens without any webhook delivery
    (the delivery log records what was suppressed), so tests can make 'missed' changes deterministically."""

    @functools.wraps(fn)
    def wrapper(ctx: Ctx, **values: Any) -> Response:
        with ctx.emulator.webhooks.silenced(not _deliver(ctx)):
            return fn(ctx, **values)

    return wrapper


def _render_pr(ctx: Ctx, flavor: str, repo: Repository, pr: Any) -> dict:
    fctx = _flavor_ctx(ctx, flavor)
    if flavor == CLOUD:
        return cloud.pullrequest(fctx, repo, pr)
    return datacenter.pull_request(fctx, repo, pr)


# ---------------------------------------- data
@routes.route(P + "/reset", methods=("POST",))
def reset(ctx: Ctx) -> Response:
    body = ctx.json_body()
    ctx.emulator.reset(seed=bool(body.get("seed", False)))
    return json_response({"reset": True, "seeded": bool(body.get("seed", False))})


@routes.route(P + "/seed", methods=("POST",))
def seed(ctx: Ctx) -> Response:
    body = ctx.json_body()
    created = seed_default(ctx.backend) if not body or body.get("default") else apply_spec(ctx.backend, body)
    return json_response({"created": created}, 201)


@routes.route(P + "/state")
def state(ctx: Ctx) -> Response:
    return json_response(ctx.backend.state())


@routes.route(P + "/config", methods=("GET", "POST"))
def config(ctx: Ctx) -> Response:
    cfg = ctx.backend.config
    if ctx.request.method == "POST":
        for key, value in ctx.json_body().items():
            if not hasattr(cfg, key):
                raise BadRequest(f"Unknown config key: {key}")
            if key in RATE_LIMIT_KEYS:
                configure(cfg, key, value)
                continue
            if key == "dc_hook_on_failures" and value not in ("skip", "disable"):
                raise BadRequest("dc_hook_on_failures must be skip or disable")
            if key.endswith("_authorization_response_iss"):
                if value is not None and not (isinstance(value, str) and value):
                    raise BadRequest(f'{key} must be null (not sent), "self" (this server) or an issuer to send')
                setattr(cfg, key, value)
                continue
            setattr(cfg, key, type(getattr(cfg, key))(value))
    return json_response(dataclasses.asdict(cfg))


@routes.route(P + "/users", methods=("POST",))
def add_user(ctx: Ctx) -> Response:
    body = ctx.json_body()
    if not body.get("name"):
        raise BadRequest("name is required")
    u = ctx.backend.add_user(body["name"], body.get("display_name"), body.get("email"), bool(body.get("admin")))
    return json_response(
        {
            "name": u.name,
            "display_name": u.display_name,
            "email": u.email,
            "id": u.id,
            "uuid": u.uuid,
            "account_id": u.account_id,
        },
        201,
    )


@routes.route(P + "/<flavor>/repos", methods=("POST",))
def add_repo(ctx: Ctx, flavor: str) -> Response:
    body = ctx.json_body()
    flavor = _flavor(flavor)
    if not body.get("owner") or not body.get("slug"):
        raise BadRequest("owner and slug are required")
    owner = body["owner"]
    if flavor == DC and owner.startswith("~"):
        ctx.backend.personal_project(owner[1:])
    repo = ctx.backend.add_repository(
        flavor,
        owner,
        body["slug"],
        name=body.get("name"),
        description=body.get("description", ""),
        is_private=body.get("is_private", True),
        permissions=body.get("permissions"),
        default_branch=body.get("default_branch", "main"),
    )
    return json_response({"flavor": flavor, "full_name": repo.full_name, "id": repo.id, "uuid": repo.uuid}, 201)


@routes.route(REPO + "/permissions", methods=("PUT",))
def set_permissions(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    flavor, repo = _repo(ctx, flavor, owner, slug)
    with ctx.backend.lock:
        for user, level in ctx.json_body().items():
            ctx.backend.get_user(user)
            if level is None:
                repo.permissions.pop(user.lower(), None)
            elif level not in ("read", "write", "admin"):
                raise BadRequest(f"Invalid level {level!r}: use read, write, admin or null")
            else:
                repo.permissions[user.lower()] = level
        return json_response(repo.permissions)


# ---------------------------------------- changes (fire webhooks)
def _file_contents(files: object) -> dict[str, bytes] | None:
    """`files` of a push: {"path": "text"} or {"path": {"base64": "..."}} for binary content."""
    if files is None:
        return None
    if not isinstance(files, dict):
        raise BadRequest('files must be an object: {"path": "content"}.')
    out = {}
    for path, content in files.items():
        if isinstance(content, str):
            out[path] = content.encode()
        elif isinstance(content, dict) and isinstance(content.get("base64"), str):
            try:
                out[path] = base64.b64decode(content["base64"], validate=True)
            except binascii.Error as exc:
                raise BadRequest(f"files[{path!r}].base64 is not valid base64.") from exc
        else:
            raise BadRequest(f'files[{path!r}] must be a string or {{"base64": "..."}}.')
    return out


@routes.route(REPO + "/push", methods=("POST",))
@change
def push(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    branch = body.get("branch") or repo.default_branch
    to, delete, rename = body.get("to"), body.get("delete"), body.get("rename")
    if to is not None and not isinstance(to, str):
        raise BadRequest('"to" must be a commit hash.')
    if delete is not None and not (isinstance(delete, list) and all(isinstance(p, str) for p in delete)):
        raise BadRequest('delete must be a list of paths: ["path", ...].')
    if rename is not None and not (isinstance(rename, dict) and all(isinstance(v, str) for v in rename.values())):
        raise BadRequest('rename must be an object: {"old path": "new path"}.')
    new = ctx.backend.push(
        repo,
        branch,
        _actor(ctx, body),
        body.get("commits"),
        force=bool(body.get("force")),
        to=to,
        files=_file_contents(body.get("files")),
        delete=delete,
        rename=rename,
        message=body.get("message"),
    )
    head = new[-1].hash if new else to
    return json_response({"branch": branch, "commits": [c.hash for c in new], "head": head}, 201)


@routes.route(REPO + "/update", methods=("POST",))
@change
def update_repo(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    ctx.backend.update_repository(repo, _actor(ctx, body), name=body.get("name"), description=body.get("description"))
    return json_response({"name": repo.name, "description": repo.description})


@routes.route(REPO + "/<any(branches, tags):kind>", methods=("POST",))
@change
def create_ref(ctx: Ctx, flavor: str, owner: str, slug: str, kind: str) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    if not body.get("name"):
        raise BadRequest("name is required")
    ref = ctx.backend.create_ref(
        repo,
        kind[:-1] if kind == "tags" else "branch",
        body["name"],
        _actor(ctx, body),
        body.get("target") or body.get("from"),
        body.get("message", ""),
    )
    return json_response({"name": ref.name, "target": ref.target}, 201)


@routes.route(REPO + "/<any(branches, tags):kind>/<path:name>", methods=("DELETE",))
@change
def delete_ref(ctx: Ctx, flavor: str, owner: str, slug: str, kind: str, name: str) -> Response:
    flavor, repo = _repo(ctx, flavor, owner, slug)
    ctx.backend.delete_ref(repo, "tag" if kind == "tags" else "branch", name, _actor(ctx, {}))
    return Response(status=204)


@routes.route(REPO + "/pullrequests", methods=("POST",))
@change
def open_pr(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    if not body.get("source"):
        raise BadRequest("source (branch name) is required")
    pr = ctx.backend.open_pull_request(
        repo,
        _actor(ctx, body),
        body.get("title") or f"Merge {body['source']}",
        body["source"],
        body.get("destination"),
        body.get("description", ""),
        body.get("reviewers", []),
    )
    with ctx.backend.lock:
        return json_response(_render_pr(ctx, flavor, repo, pr), 201)


@routes.route(
    REPO + "/pullrequests/<int:pr_id>/<any(update, merge, decline, approve, unapprove, 'request-changes'):action>",
    methods=("POST",),
)
@change
def pr_action(ctx: Ctx, flavor: str, owner: str, slug: str, pr_id: int, action: str) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    actor = _actor(ctx, body)
    b = ctx.backend
    if action == "update":
        pr = b.update_pull_request(
            repo,
            pr_id,
            actor,
            title=body.get("title"),
            description=body.get("description"),
            destination=body.get("destination"),
        )
    elif action == "merge":
        pr = b.merge_pull_request(repo, pr_id, actor, body.get("strategy") or "merge_commit", body.get("message"))
    elif action == "decline":
        pr = b.decline_pull_request(repo, pr_id, actor, body.get("reason", ""))
    else:
        status = {"approve": "APPROVED", "unapprove": "UNAPPROVED", "request-changes": "NEEDS_WORK"}[action]
        pr = b.review(repo, pr_id, actor, status)[0]
    with b.lock:
        return json_response(_render_pr(ctx, flavor, repo, pr))


@routes.route(REPO + "/pullrequests/<int:pr_id>", methods=("GET",))
def pr_state(ctx: Ctx, flavor: str, owner: str, slug: str, pr_id: int) -> Response:
    """A pull request as the backend holds it: state, reviewers with their review status, every comment (deleted
    ones too, marked), the activity kinds (oldest first)."""
    flavor, repo = _repo(ctx, flavor, owner, slug)
    with ctx.backend.lock:
        pr = ctx.backend.get_pr(repo, pr_id)
        return json_response(
            {
                "id": pr.id,
                "state": pr.state,
                "version": pr.version,
                "merge_commit": pr.merge_hash,
                "reviewers": [{"user": r.user, "status": r.status, "role": r.role} for r in pr.reviewers],
                "comments": [{**_comment(c), "author": c.author} for c in pr.comments],
                "activity": [a.kind for a in pr.activity],
            }
        )


@routes.route(REPO + "/statuses/<commit>", methods=("GET",))
def statuses_state(ctx: Ctx, flavor: str, owner: str, slug: str, commit: str) -> Response:
    """A commit's build statuses as the backend holds them (Data Center's repository resource has no list)."""
    flavor, repo = _repo(ctx, flavor, owner, slug)
    sha = ctx.backend.resolve(repo, commit)
    found = ctx.backend.statuses_of(repo, sha)
    return json_response({"statuses": [{"key": s.key, "state": s.state, "url": s.url, "name": s.name} for s in found]})


@routes.route(REPO + "/pullrequests/<int:pr_id>", methods=("DELETE",))
@change
def delete_pr(ctx: Ctx, flavor: str, owner: str, slug: str, pr_id: int) -> Response:
    flavor, repo = _repo(ctx, flavor, owner, slug)
    ctx.backend.delete_pull_request(repo, pr_id, _actor(ctx, {}))
    return Response(status=204)


@routes.route(REPO + "/pullrequests/<int:pr_id>/comments", methods=("POST",))
@change
def comment_pr(ctx: Ctx, flavor: str, owner: str, slug: str, pr_id: int) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    c = ctx.backend.comment_pull_request(
        repo,
        pr_id,
        _actor(ctx, body),
        body.get("text", "A comment"),
        body.get("parent"),
        body.get("inline"),
        line_type=body.get("line_type"),
    )
    return json_response(_comment(c), 201)


def _comment(c: Any) -> dict:
    return {
        "id": c.id,
        "text": c.text,
        "parent": c.parent,
        "inline": c.inline,
        "version": c.version,
        "deleted": c.deleted,
    }


@routes.route(REPO + "/pullrequests/<int:pr_id>/comments/<int:comment_id>", methods=("PUT", "DELETE"))
@change
def comment_item(ctx: Ctx, flavor: str, owner: str, slug: str, pr_id: int, comment_id: int) -> Response:
    """PUT {"text", "user"}: edit (its author only). DELETE [?user=]: delete (author or admin)."""
    flavor, repo = _repo(ctx, flavor, owner, slug)
    if ctx.request.method == "DELETE":
        ctx.backend.delete_comment(repo, pr_id, comment_id, _actor(ctx, {}))
        return Response(status=204)
    body = ctx.json_body()
    c = ctx.backend.edit_comment(repo, pr_id, comment_id, _actor(ctx, body), body.get("text", ""))
    return json_response(_comment(c))


@routes.route(REPO + "/statuses", methods=("POST",))
@change
def set_status(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    """{"commit", "key", "state", "url", "name", "description", "refname", "user"}: a build status (Cloud fires
    repo:commit_status_created / _updated; Data Center fires nothing)."""
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    missing = [k for k in ("commit", "key", "state", "url") if not isinstance(body.get(k), str) or not body[k]]
    if missing:
        raise BadRequest(f"Missing: {', '.join(missing)}")
    sha = ctx.backend.resolve(repo, body["commit"])
    status, created = ctx.backend.set_commit_status(
        repo,
        sha,
        _actor(ctx, body),
        body["key"],
        body["state"],
        body["url"],
        name=body.get("name") or "",
        description=body.get("description") or "",
        refname=body.get("refname"),
    )
    return json_response({"commit": sha, "key": status.key, "state": status.state, "created": created}, 201)


@routes.route(REPO + "/issues", methods=("POST",))
def add_issue(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    body = ctx.json_body()
    flavor, repo = _repo(ctx, flavor, owner, slug)
    i = ctx.backend.add_issue(repo, _actor(ctx, body), body.get("title", "An issue"), body.get("content", ""))
    return json_response({"id": i.id, "title": i.title}, 201)


# ---------------------------------------- OAuth, tokens
@routes.route(P + "/oauth/clients", methods=("POST",))
def register_client(ctx: Ctx) -> Response:
    body = ctx.json_body()
    missing = [k for k in ("flavor", "client_id", "client_secret", "redirect_uri") if not body.get(k)]
    if missing:
        raise BadRequest(f"Missing: {', '.join(missing)}")
    client = ctx.backend.register_client(
        _flavor(body["flavor"]),
        body["client_id"],
        body["client_secret"],
        body["redirect_uri"],
        body.get("scopes"),
        body.get("name", "bitbridge"),
    )
    return json_response(dataclasses.asdict(client) | {"client_secret": "********"}, 201)


@routes.route(P + "/oauth/authorize", methods=("POST",))
def authorize(ctx: Ctx) -> Response:
    """Non-interactive consent: same code path as the consent form's Grant/Deny. Returns the redirect."""
    body = ctx.json_body()
    flavor = (
        _flavor(body["flavor"])
        if body.get("flavor")
        else next((f for f in FLAVORS if ctx.backend.get_client(f, body.get("client_id"))), CLOUD)
    )
    params = MultiDict({k: str(v) for k, v in body.items() if v is not None and k != "flavor"})
    params.setdefault("response_type", "code")
    params.setdefault("decision", "grant")
    fctx = _flavor_ctx(ctx, flavor)
    if flavor == CLOUD:
        checked = cloud_check(fctx, params)
        if isinstance(checked, Response):
            return json_response({"error": "Invalid redirect_uri", "location": None}, 400)
        client, redirect_uri = checked
        scopes = client.scopes
    else:
        if not params.get("redirect_uri") and ctx.backend.get_client(DC, params.get("client_id")):
            params["redirect_uri"] = ctx.backend.get_client(DC, params["client_id"]).redirect_uri  # type: ignore[union-attr]
        checked = dc_check(fctx, params)
        if isinstance(checked, Response):
            return json_response({"error": "Invalid client or redirect_uri", "location": None}, 400)
        client, redirect_uri = checked
        scopes_or_error = dc_scopes(client, params.get("scope"))
        if not isinstance(scopes_or_error, list):
            return json_response({"error": scopes_or_error.error, "location": None}, 400)
        scopes = scopes_or_error
    resp = authorize_decision(fctx, flavor, client, params, redirect_uri, scopes)
    location = resp.headers.get("Location")
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(location or "").query)
    return json_response(
        {
            "location": location,
            "code": (query.get("code") or [None])[0],
            "state": (query.get("state") or [None])[0],
            "error": (query.get("error") or [None])[0],
        },
        200 if location else resp.status_code,
    )


def _token_selector(body: dict) -> dict:
    return {
        "token": body.get("token"),
        "user": body.get("user"),
        "flavor": _flavor(body["flavor"]) if body.get("flavor") else None,
        "all_tokens": bool(body.get("all")),
    }


@routes.route(P + "/tokens/expire", methods=("POST",))
def expire_tokens(ctx: Ctx) -> Response:
    body = ctx.json_body()
    n = ctx.backend.expire_tokens(**_token_selector(body), refresh=bool(body.get("refresh")))
    return json_response({"expired": n})


@routes.route(P + "/tokens/revoke", methods=("POST",))
def revoke_tokens(ctx: Ctx) -> Response:
    n = ctx.backend.revoke_tokens(**_token_selector(ctx.json_body()))
    return json_response({"revoked": n})


# ---------------------------------------- faults, stats, deliveries
@routes.route(P + "/faults", methods=("GET", "POST", "DELETE"))
def faults(ctx: Ctx) -> Response:
    f = ctx.emulator.faults
    if ctx.request.method == "DELETE":
        f.clear()
        return Response(status=204)
    if ctx.request.method == "POST":
        body = ctx.json_body()
        if "flavor" in body and body["flavor"] is not None:
            body["flavor"] = _flavor(body["flavor"])
        try:
            fault = f.add(body)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from exc
        return json_response({"id": fault.id}, 201)
    return json_response({"faults": f.list()})


@routes.route(P + "/requests", methods=("GET", "DELETE"))
def requests_stats(ctx: Ctx) -> Response:
    if ctx.request.method == "DELETE":
        ctx.emulator.stats.reset()
        return Response(status=204)
    return json_response(ctx.emulator.stats.snapshot())


@routes.route(P + "/rate-limits", methods=("GET", "DELETE"))
def rate_limits(ctx: Ctx) -> Response:
    """Each counter: Cloud per (user or consumer, class) in the rolling window, DC per user's bucket."""
    limiter = ctx.emulator.limits
    if ctx.request.method == "DELETE":
        limiter.clear()
        return Response(status=204)
    args = ctx.request.args
    flavor = _flavor(args["flavor"]) if args.get("flavor") else None
    cfg = ctx.backend.config
    return json_response(
        {
            "enabled": cfg.rate_limits_enabled,
            "counting": cfg.rate_limit_counting,
            "limits": limiter.snapshot(flavor, args.get("user"), args.get("class")),
        }
    )


@routes.route(P + "/delivery-faults", methods=("GET", "POST", "DELETE"))
def delivery_faults(ctx: Ctx) -> Response:
    rules = ctx.emulator.delivery_faults
    if ctx.request.method == "DELETE":
        rules.clear()
        return Response(status=204)
    if ctx.request.method == "POST":
        body = ctx.json_body()
        if body.get("flavor") is not None:
            body["flavor"] = _flavor(body["flavor"])
        try:
            rule = rules.add(body)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from exc
        return json_response({"id": rule.id}, 201)
    return json_response({"delivery_faults": rules.list()})


@routes.route(P + "/delivery-faults/<int:rule_id>", methods=("DELETE",))
def delete_delivery_fault(ctx: Ctx, rule_id: int) -> Response:
    if not ctx.emulator.delivery_faults.remove(rule_id):
        raise BadRequest(f"No delivery fault {rule_id}.")
    return Response(status=204)


@routes.route(P + "/deliveries", methods=("GET", "DELETE"))
def deliveries(ctx: Ctx) -> Response:
    hooks = ctx.emulator.webhooks
    if ctx.request.method == "DELETE":
        hooks.clear()
        return Response(status=204)
    if ctx.request.args.get("wait", "").lower() in ("1", "true", "yes"):
        hooks.wait_idle(float(ctx.request.args.get("timeout", 10)))
    items = hooks.deliveries()
    for key in ("event_key", "flavor", "url", "state", "hook_id"):
        if ctx.request.args.get(key):
            items = [d for d in items if d[key] == ctx.request.args[key]]
    if ctx.request.args.get("repository"):
        items = [d for d in items if d["repository"].lower() == ctx.request.args["repository"].lower()]
    return json_response({"deliveries": items})


@routes.route(P + "/hooks")
def hooks_health(ctx: Ctx) -> Response:
    """Every hook with its delivery health (what DC keeps internally: failures, circuit breaker, disable)."""
    backend = ctx.backend
    with backend.lock:
        now = time.monotonic()
        items = [
            {
                "flavor": repo.flavor,
                "repository": repo.full_name,
                "id": h.id,
                "url": h.url,
                "events": list(h.events),
                "active": h.active,
                "secret_set": bool(h.secret),
                "consecutive_failures": h.consecutive_failures,
                "skipped_for_seconds": round(max(0.0, h.skip_until - now), 3) if h.skip_until else 0.0,
                "disabled_reason": h.disabled_reason,
            }
            for repo in sorted(backend.repos.values(), key=lambda r: (r.flavor, r.owner.lower(), r.slug))
            for h in repo.hooks.values()
        ]
    return json_response({"hooks": items})
