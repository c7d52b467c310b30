"""What the console (and /api/me) shows: the signed-in user, their connections, the providers, and
the answers of Disconnect and the admin's provider list. Never a token or a client secret."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from bitbridge import accounts, providers, tokens
from bitbridge.imports import listing, queries

logger = Logger(child=True)


def public_provider(p: Any) -> dict[str, Any]:
    return {"id": p.provider_id, "label": p.label, "flavor": p.flavor, "sign_in": p.sign_in, "imports": p.imports}


def me(user_id: str) -> dict[str, Any] | None:
    """The user, their connections and whether they are an admin; None if the user is gone."""
    user = accounts.get_user(user_id)
    if user is None:
        return None
    conns = accounts.connections(user_id)
    return {
        "user": {"id": user_id, "display_name": user.display_name, "email": user.email},
        "connections": [accounts.public_connection(c) for c in conns],
        "admin": accounts.is_admin(user_id, conns),
    }


FIRST_PAGE = 50  # repositories embedded in the page, the same page size the console asks for


def boot(user_id: str) -> dict[str, Any] | None:
    """Everything the console needs to paint its first screen, embedded in the page: who, connections,
    providers and the first page of repositories, so the list appears after HTML, CSS and JS alone."""
    found = me(user_id)
    if found is None:
        return None
    found["providers"] = [public_provider(p) for p in providers.list_providers()]
    found["repositories"] = _first_repositories(user_id, found)
    if found["repositories"] is None and found["connections"]:
        # Listing may just have found a connection to be re-authorised: show what is true now.
        found["connections"] = [accounts.public_connection(c) for c in accounts.connections(user_id)]
    return found


def _first_repositories(user_id: str, found: dict[str, Any]) -> dict[str, Any] | None:
    """The first page for the provider the console opens on (its first active connection with imports on).
    Best effort: on any failure the page is served without it and the console asks /api/repos itself,
    which then answers the error with its usual status and message."""
    imports_on = {p["id"] for p in found["providers"] if p["imports"]}
    usable = [c["provider"] for c in found["connections"] if c["status"] == "active" and c["provider"] in imports_on]
    if not usable:
        return None
    try:
        return listing.list_repositories(user_id, usable[0], limit=FIRST_PAGE)
    except Exception as exc:
        logger.info("console: first repositories not embedded", extra={"error": type(exc).__name__})
        return None


def disconnect(user_id: str, provider_id: str) -> dict[str, Any]:
    """Delete the connection's tokens; keep imports; say what becomes of the hooks it installed."""
    provider = providers.get_provider(provider_id)
    if accounts.disconnect(user_id, provider_id) is None:
        raise tokens.NotConnected(provider_id)
    hooks = queries.installed_hooks(user_id, provider_id)
    if hooks:
        # A hook does not depend on the token that created it; removing one needs a connected token again.
        hook_message = (
            f"{len(hooks)} webhook(s) your imports installed keep delivering events; bitbridge can no longer "
            "update or remove them. To remove them: connect again, then an admin runs each remove command."
        )
    else:
        hook_message = "No webhook was installed with this connection."
    return {
        "provider": provider_id,
        "disconnected": True,
        "message": f"Disconnected {provider.label}; imported snapshots are kept.",
        "revoked_at_bitbucket": False,
        "revocation": providers.revocation_note(provider),
        "webhooks": {
            "subscriptions": hooks,
            "message": hook_message,
            "remove_commands": [f"bitbridge hooks remove {sub}" for sub in hooks],
        },
    }


def admin_providers(base_url: str) -> list[dict[str, Any]]:
    """Every provider with its verification state and the exact callback URL to paste into Bitbucket."""
    return [
        public_provider(p)
        | {
            "web_url": p.web_url,
            "status": p.status,
            "status_detail": p.status_detail,
            "verified_at": p.verified_at,
            "callback_url": providers.callback_url(base_url, p.provider_id),
        }
        for p in providers.list_providers()
    ]
