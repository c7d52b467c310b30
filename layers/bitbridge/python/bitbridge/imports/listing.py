"""GET /api/repos: the repositories a signed-in user can see, with stable cursors and import status.

One response reads only the Bitbucket pages it needs; the flavor's `list_repositories` says where to go
on (its state), which becomes the cursor - opaque to clients (base64url JSON).
"""

from __future__ import annotations

from typing import Any

from bitbridge import accounts, providers, tokens
from bitbridge.bitbucket.repos import BadListState, ListQuery
from bitbridge.calls import INTERACTIVE, Caller, Patience
from bitbridge.imports import queries
from bitbridge.imports.jobs import decode_cursor, encode_cursor, invalid_cursor

MAX_LIMIT = 100


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
    state = decode_cursor(cursor)
    caller = Caller(user_id, provider, priority=INTERACTIVE, patience=Patience(transient_retries=1))
    username = _username(user_id, provider_id)
    query = ListQuery(username, search, scope, state, limit)
    try:
        listed = providers.bitbucket(provider).list_repositories(caller.fetch, caller.api, query)
    except BadListState:
        raise invalid_cursor() from None
    status = queries.statuses(provider_id, [r.id for r in listed.repositories])
    return {
        "provider": provider_id,
        "flavor": provider.flavor,
        "repositories": [r.public() | {"import": status.get(r.id)} for r in listed.repositories],
        "next_cursor": encode_cursor(listed.state),
    }


def scopes(user_id: str, provider_id: str) -> dict[str, Any]:
    """The workspaces (Cloud) or projects (Data Center, plus the personal one) for a picker."""
    provider = providers.get_provider(provider_id)
    caller = Caller(user_id, provider, priority=INTERACTIVE, patience=Patience(transient_retries=1))
    items = providers.bitbucket(provider).scopes(caller.fetch, caller.api, _username(user_id, provider_id))
    return {"provider": provider_id, "flavor": provider.flavor, "scopes": items}
