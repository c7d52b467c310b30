"""Who the token belongs to, keyed by Bitbucket's stable ids (never usernames)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from bitbridge.bitbucket.http import BitbucketError, get, get_json


@dataclass(frozen=True)
class Identity:
    external_id: str  # Cloud account uuid, Data Center numeric user id
    username: str | None
    display_name: str | None
    email: str | None


def cloud_identity(api_url: str, token: str) -> Identity:
    user = get_json(f"{api_url}/user", token, "reading the Bitbucket user")
    emails = get_json(f"{api_url}/user/emails", token, "reading the user's email addresses")
    primary = next(
        (e["email"] for e in emails.get("values", []) if e.get("is_primary") and e.get("is_confirmed")), None
    )
    external_id = user.get("uuid") or user.get("account_id")
    if not external_id:
        raise BitbucketError("Bitbucket returned a user without a uuid or account id", permanent=True)
    return Identity(str(external_id), user.get("nickname"), user.get("display_name"), primary)


def datacenter_identity(web_url: str, token: str) -> Identity:
    # Data Center has no "current user" REST endpoint: whoami names the user, then we look them up.
    name = get(f"{web_url}/plugins/servlet/applinks/whoami", token, "asking Data Center who the user is").text
    name = name.strip()
    if not name:
        raise BitbucketError("Data Center did not say who the token belongs to", permanent=True)
    api = f"{web_url}/rest/api/1.0"
    try:
        user = get_json(f"{api}/users/{quote(name, safe='')}", token, "reading the Data Center user")
    except BitbucketError as exc:
        if exc.status != 404:
            raise
        # A username can differ from its slug (e.g. names with "@"): search and match exactly.
        page = get_json(f"{api}/users", token, "searching Data Center users", params={"filter": name})
        user = next((u for u in page.get("values", []) if u.get("name") == name), None)
        if user is None:
            raise BitbucketError("Data Center user not found", status=404, permanent=True) from None
    return Identity(str(user["id"]), user.get("name"), user.get("displayName"), user.get("emailAddress"))


class _Provider(Protocol):
    flavor: str
    web_url: str
    api_url: str


def identify(provider: _Provider, token: str) -> Identity:
    """The identity behind `token`, asked the way the provider's flavor answers it."""
    if provider.flavor == "cloud":
        return cloud_identity(provider.api_url, token)
    return datacenter_identity(provider.web_url, token)
