"""GET /api/repos: the repositories a signed-in user can see, with stable cursors and import status.

One response reads only the Bitbucket pages it needs; the flavor's `list_repositories` says where to go
on (its state), which becomes the cursor - opaque to clients (base64url JSON).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bitbridge import accounts, providers, tokens
from bitbridge.bitbucket.repos import ListQuery
from bitbridge.calls import INTERACTIVE, Caller, Patience
from bitbridge.imports import jobs
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
        raise ImportRequestError("Invalid cursor.") from None
    if not isinstance(state, dict):
        raise ImportRequestError("Invalid cursor.")
    return state


def _username(user_id: str, provider_id: str) -> str:
    for conn in accounts.connections(user_id):
        if conn.provider_id == provider_id:
            return str(conn.username or "")
    raise tokens.NotConnected(provider_id)


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
    state = _decode(cursor)
    caller = Caller(user_id, provider, priority=INTERACTIVE, patience=Patience(transient_retries=1))
    username = _username(user_id, provider_id)
    query = ListQuery(username, search, scope, state, limit)
    listed = providers.bitbucket(provider).list_repositories(caller.fetch, caller.api, query)
    status = jobs.statuses(provider_id, [r.id for r in listed.repositories])
    return {
        "provider": provider_id,
        "flavor": provider.flavor,
        "repositories": [r.public() | {"import": status.get(r.id)} for r in listed.repositories],
        "next_cursor": _encode(listed.state),
    }


def scopes(user_id: str, provider_id: str) -> dict[str, Any]:
    """The workspaces (Cloud) or projects (Data Center, plus the personal one) for a picker."""
    provider = providers.get_provider(provider_id)
    caller = Caller(user_id, provider, priority=INTERACTIVE, patience=Patience(transient_retries=1))
    items = providers.bitbucket(provider).scopes(caller.fetch, caller.api, _username(user_id, provider_id))
    return {"provider": provider_id, "flavor": provider.flavor, "scopes": items}
