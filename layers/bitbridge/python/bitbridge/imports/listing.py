"""GET /api/repos: the repositories a signed-in user can see, with stable cursors and import status.

One response reads only the Bitbucket pages it needs, and its cursor says where to go on:
Cloud `{"ws": [workspaces still to read], "page": n, "skip": k}` (page numbers over `sort=slug`, so the
same cursor gives the same items); Data Center `{"phase": "all" | "personal", "start": n, "skip": k,
"own": bool}` (`/repos`, then the user's personal repositories unless `/repos` already listed them).
The cursor is opaque to clients (base64url JSON).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bitbridge import accounts, providers
from bitbridge.bitbucket import repos
from bitbridge.imports import jobs
from bitbridge.imports.access import Caller
from bitbridge.imports.jobs import ImportRequestError

MAX_LIMIT = 100


def _encode(state: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode() if state else None


def _decode(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except ValueError:
        raise ImportRequestError(400, "Invalid cursor.") from None
    if not isinstance(state, dict):
        raise ImportRequestError(400, "Invalid cursor.")
    return state


def _username(user_id: str, provider_id: str) -> str:
    for conn in accounts.connections(user_id):
        if conn.provider_id == provider_id:
            return str(conn.username or "")
    raise ImportRequestError(404, f"You have no connection to {provider_id}.")


def list_repositories(
    user_id: str,
    provider_id: str,
    *,
    search: str | None = None,
    scope: str | None = None,
    cursor: str | None = None,
    limit: int = MAX_LIMIT,
) -> dict[str, Any]:
    provider = providers.get_provider(provider_id)
    limit = max(1, min(MAX_LIMIT, limit))
    caller = Caller(user_id, provider, retries=1)
    state = _decode(cursor)
    if provider.flavor == repos.CLOUD:
        found, state = _cloud(caller, search, scope, state, limit)
    else:
        found, state = _datacenter(caller, _username(user_id, provider_id), search, scope, state, limit)
    status = jobs.statuses(provider_id, [r.id for r in found])
    return {
        "provider": provider_id,
        "flavor": provider.flavor,
        "repositories": [r.public() | {"import": status.get(r.id)} for r in found],
        "next_cursor": _encode(state),
    }


def _cloud(
    caller: Caller, search: str | None, scope: str | None, state: dict[str, Any] | None, limit: int
) -> tuple[list[repos.Repo], dict[str, Any] | None]:
    if state is None:
        slugs = [scope] if scope else [w["slug"] for w in repos.cloud_workspaces(caller.fetch, caller.api)]
        state = {"ws": slugs, "page": 1, "skip": 0}
    out: list[repos.Repo] = []
    ws, page_no, skip = list(state.get("ws") or []), int(state.get("page", 1)), int(state.get("skip", 0))
    while ws and len(out) < limit:
        page = repos.cloud_repos_page(caller.fetch, caller.api, ws[0], page_no, search)
        rest = page.values[skip:]
        take = rest[: limit - len(out)]
        out.extend(repos.cloud_repo(v) for v in take)
        if len(take) < len(rest):
            return out, {"ws": ws, "page": page_no, "skip": skip + len(take)}
        if page.next:
            page_no, skip = page_no + 1, 0
        else:
            ws, page_no, skip = ws[1:], 1, 0
    return out, ({"ws": ws, "page": page_no, "skip": skip} if ws else None)


def _datacenter(
    caller: Caller,
    username: str,
    search: str | None,
    scope: str | None,
    state: dict[str, Any] | None,
    limit: int,
) -> tuple[list[repos.Repo], dict[str, Any] | None]:
    own_key = f"~{username.upper()}"
    personal_only = bool(scope and scope.upper() == own_key)
    if state is None:
        state = {"phase": "personal" if personal_only else "all", "start": 0, "skip": 0, "own": False}
    out: list[repos.Repo] = []
    phase, start, skip, own = state["phase"], int(state["start"]), int(state.get("skip", 0)), bool(state.get("own"))
    while phase and len(out) < limit:
        if phase == "all":
            page, _ = repos.dc_repos_page(caller.fetch, caller.api, start, repos.DC_LIMIT, search, scope)
        else:
            page = repos.dc_personal_repos_page(caller.fetch, caller.api, username, start, repos.DC_LIMIT)
        found = [repos.dc_repo(v) for v in page.values]
        if phase == "personal" and search:
            found = [r for r in found if search.lower() in r.name.lower()]
        own = own or any(r.owner.upper() == own_key for r in found if phase == "all")
        rest = found[skip:]
        take = rest[: limit - len(out)]
        out.extend(take)
        if len(take) < len(rest):
            return out, {"phase": phase, "start": start, "skip": skip + len(take), "own": own}
        if page.next is not None:
            start, skip = int(page.next), 0
        elif phase == "all" and not own and not scope and username:
            phase, start, skip = "personal", 0, 0  # /repos did not list the user's own: read them
        else:
            phase = ""
    return out, ({"phase": phase, "start": start, "skip": skip, "own": own} if phase else None)


def scopes(user_id: str, provider_id: str) -> dict[str, Any]:
    """The workspaces (Cloud) or projects (Data Center, plus the personal one) for a picker."""
    provider = providers.get_provider(provider_id)
    caller = Caller(user_id, provider, retries=1)
    if provider.flavor == repos.CLOUD:
        items = [
            {"key": w["slug"], "name": w["name"], "kind": "workspace", "administrator": w["administrator"]}
            for w in repos.cloud_workspaces(caller.fetch, caller.api)
        ]
    else:
        items = [
            {"key": p["key"], "name": p["name"], "kind": "project"} for p in repos.dc_projects(caller.fetch, caller.api)
        ]
        username = _username(user_id, provider_id)
        if username:
            items.append({"key": f"~{username.upper()}", "name": "Personal repositories", "kind": "personal"})
    return {"provider": provider_id, "flavor": provider.flavor, "scopes": items}
