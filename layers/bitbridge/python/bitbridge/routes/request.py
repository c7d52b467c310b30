"""What the api function's routes read from a request: the session's user, query values, a page size."""

from __future__ import annotations

from typing import Any

from bitbridge import edge
from bitbridge.errors import InvalidRequest

Event = dict[str, Any]


def user(event: Event) -> str:
    """The signed-in user (NotSignedIn, 401 with the login URL, otherwise)."""
    return edge.require_user(event)


def query_value(event: Event, name: str) -> str | None:
    """A query parameter, stripped; None when absent or blank."""
    value = edge.query(event).get(name)
    return value.strip() if value and value.strip() else None


def limit(event: Event, default: int, maximum: int) -> int:
    raw = query_value(event, "limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"`limit` must be between 1 and {maximum}.")
    return int(raw)


def provider_param(event: Event) -> str:
    provider_id = query_value(event, "provider")
    if provider_id is None:
        raise InvalidRequest("`provider` (a provider id) is required.")
    return provider_id
