"""The provider registry: Bitbucket Cloud consumers and Data Center application links.

Key and secret live in Secrets Manager only (one secret per provider); everything else in
the providers table. This module also knows each flavor's endpoints and how to diagnose a
misconfigured provider in words an admin can act on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

from bitbridge.aws import client, secret_value
from bitbridge.config import settings
from bitbridge.store.base import condition_failed, iso
from bitbridge.store.providers import ProviderRecord

CLOUD = "cloud"
DATACENTER = "datacenter"
FLAVORS = (CLOUD, DATACENTER)

CLOUD_WEB_URL = "https://bitbucket.org"
CLOUD_API_URL = "https://api.bitbucket.org/2.0"

# What bitbridge needs: identity, repository data, pull requests, issues and webhooks.
DEFAULT_SCOPES = {
    CLOUD: ["account", "email", "repository", "pullrequest", "issue", "webhook"],
    DATACENTER: ["REPO_ADMIN"],  # implies REPO_READ; needed to install repository webhooks
}
# The boxes to tick on the Bitbucket side, in its own words.
PERMISSIONS_TO_TICK = {
    CLOUD: ("Account: Email, Read; Repositories: Read; Pull requests: Read; Issues: Read; Webhooks: Read and write"),
    DATACENTER: "Repositories: Admin (scope REPO_ADMIN)",
}

_PROVIDER_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


class ProviderError(Exception):
    """A registry problem the admin can fix (bad id, duplicate, unknown provider, ...)."""


class UnknownProvider(ProviderError):
    pass


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Credentials(client_id={self.client_id!r}, client_secret=***)"


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str
    token_url: str
    api_url: str
    web_url: str


def endpoints(provider: ProviderRecord) -> Endpoints:
    web = provider.web_url.rstrip("/")
    if provider.flavor == CLOUD:
        return Endpoints(f"{web}/site/oauth2/authorize", f"{web}/site/oauth2/access_token", provider.api_url, web)
    return Endpoints(f"{web}/rest/oauth2/latest/authorize", f"{web}/rest/oauth2/latest/token", provider.api_url, web)


def revocation_note(provider: ProviderRecord) -> str:
    """How the user revokes bitbridge's grant on the Bitbucket side. Neither flavor has a token
    revocation endpoint (docs/bitbucket-api.md: Cloud documents none; Data Center users revoke under
    their profile), so deleting the tokens is all bitbridge can do itself."""
    if provider.flavor == CLOUD:
        return (
            "Bitbucket Cloud has no API to revoke the grant: to revoke it too, open "
            f"{provider.web_url.rstrip('/')}/account/settings/app-authorizations/ and revoke bitbridge."
        )
    return (
        "Bitbucket Data Center has no API to revoke the grant: to revoke it too, open your profile "
        f"on {provider.web_url.rstrip('/')} > Manage account > Authorized applications."
    )


def oauth_session(provider: ProviderRecord, creds: Credentials, redirect_uri: str | None = None) -> Any:
    """An Authlib OAuth 2 client configured for this provider's flavor."""
    from authlib.integrations.requests_client import OAuth2Session

    datacenter = provider.flavor == DATACENTER
    return OAuth2Session(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        # Cloud accepts client credentials only as HTTP Basic; Data Center reads them from the body.
        token_endpoint_auth_method="client_secret_post" if datacenter else "client_secret_basic",
        redirect_uri=redirect_uri,
        # Cloud's scopes are fixed on the consumer; Data Center takes them on the request.
        scope=provider.scopes if datacenter else None,
        code_challenge_method="S256" if datacenter else None,
    )


def callback_url(base_url: str, provider_id: str) -> str:
    return f"{base_url.rstrip('/')}/auth/{provider_id}/callback"


def secret_name(provider_id: str) -> str:
    return f"{settings().provider_secret_prefix}{provider_id}"


def _is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in {"127.0.0.1", "localhost", "::1"}


def _check_url(url: str, what: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ProviderError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parsed.scheme != "https" and not _is_loopback(url):
        raise ProviderError(f"{what} must use HTTPS (plain HTTP is only accepted on loopback): {url}")
    return url.rstrip("/")


def get_provider(provider_id: str) -> ProviderRecord:
    try:
        return ProviderRecord.get(provider_id)
    except ProviderRecord.DoesNotExist:
        raise UnknownProvider(f"no provider {provider_id!r} is registered") from None


def list_providers() -> list[ProviderRecord]:
    return sorted(ProviderRecord.scan(), key=lambda p: p.provider_id)


def credentials(provider_id: str) -> Credentials:
    data = json.loads(secret_value(secret_name(provider_id)))
    return Credentials(data["client_id"], data["client_secret"])


def add_provider(
    provider_id: str,
    flavor: str,
    client_id: str,
    client_secret: str,
    *,
    web_url: str | None = None,
    api_url: str | None = None,
    label: str | None = None,
    scopes: list[str] | None = None,
    sign_in: bool = True,
    imports: bool = True,
) -> ProviderRecord:
    if not _PROVIDER_ID.match(provider_id):
        raise ProviderError("provider id: 1-40 lowercase letters, digits and dashes (it appears in URLs)")
    if flavor not in FLAVORS:
        raise ProviderError(f"flavor must be one of {', '.join(FLAVORS)}")
    if not client_id or not client_secret:
        raise ProviderError("both the key (client id) and the secret are required")
    if flavor == CLOUD:
        web = _check_url(web_url or CLOUD_WEB_URL, "web URL")
        api = _check_url(api_url or (CLOUD_API_URL if web_url is None else f"{web}/2.0"), "API URL")
    else:
        if not web_url:
            raise ProviderError("a Data Center provider needs its base URL (--url https://bitbucket.example.com)")
        web = _check_url(web_url, "Data Center base URL")
        api = _check_url(api_url or f"{web}/rest/api/1.0", "API URL")
    record = ProviderRecord(
        provider_id,
        flavor=flavor,
        label=label or ("Bitbucket" if flavor == CLOUD else f"Bitbucket ({urlparse(web).hostname})"),
        web_url=web,
        api_url=api,
        scopes=" ".join(scopes or DEFAULT_SCOPES[flavor]),
        sign_in=sign_in,
        imports=imports,
    )
    existing = _find(provider_id)
    if existing is not None and _has_secret(provider_id):
        raise ProviderError(f"provider {provider_id!r} already exists (use `providers set`)")
    # New, or left half-registered by an interrupted add (a record without its secret, or a secret
    # without its record): write both, so a retry completes what the first attempt started.
    created = _store_credentials(provider_id, client_id, client_secret)
    try:
        if existing is None:
            record.save(condition=ProviderRecord.pk.does_not_exist())
        else:
            record.save()
    except Exception as exc:
        if created:  # leave nothing behind
            client("secretsmanager").delete_secret(SecretId=secret_name(provider_id), ForceDeleteWithoutRecovery=True)
        if condition_failed(exc):  # registered concurrently by another admin
            raise ProviderError(f"provider {provider_id!r} already exists (use `providers set`)") from None
        raise
    return record


def _find(provider_id: str) -> ProviderRecord | None:
    try:
        return ProviderRecord.get(provider_id, consistent_read=True)
    except ProviderRecord.DoesNotExist:
        return None


def _has_secret(provider_id: str) -> bool:
    sm = client("secretsmanager")
    try:
        sm.describe_secret(SecretId=secret_name(provider_id))
    except sm.exceptions.ResourceNotFoundException:
        return False
    return True


def _store_credentials(provider_id: str, client_id: str, client_secret: str) -> bool:
    """Create the provider's secret, or overwrite an orphan one; True when it was created."""
    sm = client("secretsmanager")
    value = json.dumps({"client_id": client_id, "client_secret": client_secret})
    try:
        sm.create_secret(
            Name=secret_name(provider_id),
            Description=f"bitbridge OAuth client for provider {provider_id}",
            SecretString=value,
        )
        return True
    except sm.exceptions.ResourceExistsException:
        pass
    except sm.exceptions.InvalidRequestException as exc:
        if "deletion" in str(exc):
            raise ProviderError(
                f"secret {secret_name(provider_id)} is scheduled for deletion: restore it "
                "(aws secretsmanager restore-secret --secret-id ...) or wait until it is gone, then add again"
            ) from None
        raise
    sm.put_secret_value(SecretId=secret_name(provider_id), SecretString=value)
    return False


def update_provider(provider_id: str, **changes: object) -> ProviderRecord:
    record = get_provider(provider_id)
    allowed = {"label", "scopes", "sign_in", "imports", "web_url", "api_url"}
    unknown = set(changes) - allowed
    if unknown:
        raise ProviderError(f"cannot set {', '.join(sorted(unknown))}")
    for name in ("web_url", "api_url"):
        if name in changes:
            changes[name] = _check_url(str(changes[name]), name.replace("_", " "))
    actions = [getattr(ProviderRecord, name).set(value) for name, value in changes.items()]
    if {"web_url", "api_url", "scopes"} & set(changes):
        actions.append(ProviderRecord.status.set("pending"))  # configuration changed: verify again
    actions.append(ProviderRecord.updated_at.set(iso()))
    record.update(actions=actions)
    return record


def rotate_secret(provider_id: str, client_secret: str, client_id: str | None = None) -> None:
    get_provider(provider_id)  # an unknown id is an error, not a new secret
    current = credentials(provider_id)
    client("secretsmanager").put_secret_value(
        SecretId=secret_name(provider_id),
        SecretString=json.dumps({"client_id": client_id or current.client_id, "client_secret": client_secret}),
    )
    # A new secret is unproven until the next verification round trip.
    ProviderRecord(provider_id).update(
        actions=[ProviderRecord.status.set("pending"), ProviderRecord.updated_at.set(iso())]
    )


def remove_provider(provider_id: str) -> None:
    record = get_provider(provider_id)
    # Immediate deletion, so the same id can be registered again right away.
    client("secretsmanager").delete_secret(SecretId=secret_name(provider_id), ForceDeleteWithoutRecovery=True)
    record.delete()


def mark_verified(provider_id: str) -> None:
    ProviderRecord(provider_id).update(
        actions=[
            ProviderRecord.status.set("verified"),
            ProviderRecord.status_detail.remove(),
            ProviderRecord.verified_at.set(iso()),
        ]
    )


def mark_failed(provider_id: str, detail: str) -> None:
    ProviderRecord(provider_id).update(
        actions=[ProviderRecord.status.set("failed"), ProviderRecord.status_detail.set(detail[:500])]
    )


def verification_url(base_url: str, provider_id: str) -> str:
    return f"{base_url.rstrip('/')}/auth/{provider_id}/authorize?{urlencode({'purpose': 'verify'})}"


def missing_scopes(provider: ProviderRecord, granted: str | None) -> list[str]:
    """Scopes bitbridge asked for that the token does not carry (None: the provider did not say)."""
    if granted is None:
        return []
    have = set(granted.replace(",", " ").split())
    if provider.flavor == DATACENTER:
        return [] if have else provider.scope_list  # DC scopes are hierarchical; any grant is echoed
    return [s for s in provider.scope_list if s not in have and not _cloud_implied(s, have)]


def _cloud_implied(scope: str, have: set[str]) -> bool:
    implied_by = {
        "repository": {"repository:write", "pullrequest", "pullrequest:write", "project", "project:admin"},
        "email": {"account", "account:write"},
        "pullrequest": {"pullrequest:write"},
        "issue": {"issue:write"},
        "account": {"account:write"},
    }
    return bool(implied_by.get(scope, set()) & have)
