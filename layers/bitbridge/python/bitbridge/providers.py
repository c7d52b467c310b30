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

from pynamodb.expressions.update import Action

from bitbridge import ssh_keys
from bitbridge.aws import client, secret_value
from bitbridge.bitbucket import FLAVORS
from bitbridge.bitbucket.api import Bitbucket, for_flavor
from bitbridge.bitbucket.identity import Identity
from bitbridge.bitbucket.limits import Limits, LimitsError, apply
from bitbridge.bitbucket.repos import Get
from bitbridge.config import settings
from bitbridge.errors import Problem
from bitbridge.safe_text import one_line
from bitbridge.store.base import condition_failed
from bitbridge.store.providers import ProviderRecord
from bitbridge.timestamps import iso

# Per flavor, for the command line and the local stack (each flavor's module says why).
DEFAULT_SCOPES = {flavor: list(for_flavor(flavor).default_scopes) for flavor in FLAVORS}
PERMISSIONS_TO_TICK = {flavor: for_flavor(flavor).permissions_to_tick for flavor in FLAVORS}

_PROVIDER_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


class ProviderError(Problem):
    """A registry problem the admin can fix (bad id, duplicate, unknown provider, ...)."""

    code = "invalid_request"


class UnknownProvider(ProviderError):
    code = "unknown_provider"
    title = "Unknown provider"

    def __init__(self, provider_id: str) -> None:
        super().__init__(f"No provider '{provider_id}' is registered.", provider=provider_id)
        self.provider_id = provider_id


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


def bitbucket(provider: ProviderRecord) -> Bitbucket:
    """The Bitbucket interface for this provider's flavor."""
    return for_flavor(provider.flavor)


def limits(provider: ProviderRecord) -> Limits:
    """The provider's rate limits: its flavor's published numbers with the admin's settings on top."""
    return apply(bitbucket(provider).default_limits(), provider.rate_limits)


def set_limits(provider_id: str, changes: dict[str, Any], *, reset: bool = False) -> ProviderRecord:
    """Change a provider's rate-limit settings (`classes` merge with those set before; `reset`: back to the
    flavor's published numbers first). Checked against the flavor before anything is written."""
    record = get_provider(provider_id)
    current = {} if reset else dict(record.rate_limits or {})
    merged = current | {k: v for k, v in changes.items() if k != "classes" and v is not None}
    if changes.get("classes"):
        merged["classes"] = dict(current.get("classes") or {}) | dict(changes["classes"])
    try:
        apply(bitbucket(record).default_limits(), merged)
    except LimitsError as exc:
        raise ProviderError(f"{provider_id}: {exc}") from None
    record.update(
        actions=[
            ProviderRecord.rate_limits.set(merged) if merged else ProviderRecord.rate_limits.remove(),
            ProviderRecord.updated_at.set(iso()),
        ]
    )
    return record


def identify(provider: ProviderRecord, get: Get) -> Identity:
    """Whose token a caller (`calls.Caller.get`) holds, asked the way the provider's flavor answers it."""
    return bitbucket(provider).identify(get, provider.web_url, provider.api_url)


def issuer(provider: ProviderRecord) -> str:
    """The provider's issuer identifier (RFC 9207's `iss`): the authorization server's base URL, its web URL."""
    return provider.web_url.rstrip("/")


def endpoints(provider: ProviderRecord) -> Endpoints:
    web, flavor = provider.web_url.rstrip("/"), bitbucket(provider)
    return Endpoints(flavor.authorize_url(web), flavor.token_url(web), provider.api_url, web)


def revocation_note(provider: ProviderRecord) -> str:
    """How the user revokes bitbridge's grant on the Bitbucket side, in words (no flavor has an API)."""
    return bitbucket(provider).revocation_note(provider.web_url)


def oauth_session(provider: ProviderRecord, creds: Credentials, redirect_uri: str | None = None) -> Any:
    """An Authlib OAuth 2 client configured for this provider's flavor."""
    from authlib.integrations.requests_client import OAuth2Session

    return OAuth2Session(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        redirect_uri=redirect_uri,
        **bitbucket(provider).oauth_options(provider.scopes),
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
        raise UnknownProvider(provider_id) from None


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
    kind = for_flavor(flavor)
    given = web_url or kind.default_web_url
    if not given:
        raise ProviderError(f"a {kind.display_name} provider needs its base URL (--url https://bitbucket.example.com)")
    web = _check_url(given, kind.web_url_name)
    api = _check_url(api_url or kind.default_api_url(web, web_url is not None), "API URL")
    record = ProviderRecord(
        provider_id,
        flavor=flavor,
        label=label or kind.default_label(web),
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
    allowed = {"label", "scopes", "sign_in", "imports", "web_url", "api_url", "sends_iss"}
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


MAX_LABEL = 100


def set_deploy_key(provider_id: str, key_text: str | None, label: str | None = None) -> ProviderRecord:
    """Register the SSH public key imports add read-only to each repository (None: stop adding one). The key
    is checked as Bitbucket checks it, so an import never finds it refused; the label names it in Bitbucket."""
    record = get_provider(provider_id)
    if key_text is None:
        record.update(
            actions=[
                ProviderRecord.deploy_key.remove(),
                ProviderRecord.deploy_key_label.remove(),
                ProviderRecord.updated_at.set(iso()),
            ]
        )
        return record
    try:
        key = ssh_keys.parse(key_text)
    except ssh_keys.InvalidPublicKey as exc:
        raise ProviderError(f"deploy key: {exc}") from None
    if label is not None and (not label.strip() or len(label) > MAX_LABEL or one_line(label) != label):
        raise ProviderError(f"--label: one line of 1-{MAX_LABEL} printable characters")
    record.update(
        actions=[
            ProviderRecord.deploy_key.set(key.line()),
            ProviderRecord.deploy_key_label.set(label or "bitbridge"),
            ProviderRecord.updated_at.set(iso()),
        ]
    )
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
    # The detail may quote Bitbucket (or whoever answered): one bounded line, no terminal escapes.
    ProviderRecord(provider_id).update(
        actions=[ProviderRecord.status.set("failed"), ProviderRecord.status_detail.set(one_line(detail) or "failed")]
    )


def clear_diagnosis(provider_id: str) -> None:
    """The pre-flight checks passed: an earlier failure's diagnosis is stale (a verified provider stays
    verified; a failed one is pending its round trip)."""
    record = get_provider(provider_id)
    actions: list[Action] = [ProviderRecord.status_detail.remove(), ProviderRecord.updated_at.set(iso())]
    if record.status == "failed":
        actions.append(ProviderRecord.status.set("pending"))
    record.update(actions=actions)


def verification_url(base_url: str, provider_id: str, ticket: str | None = None) -> str:
    """The round trip's URL; with a ticket (bitbridge.verification) it works once without an admin session."""
    query = {"purpose": "verify", **({"ticket": ticket} if ticket else {})}
    return f"{base_url.rstrip('/')}/auth/{provider_id}/authorize?{urlencode(query)}"


def missing_scopes(provider: ProviderRecord, granted: str | None) -> list[str]:
    """Scopes bitbridge asked for that the token does not carry (None: the provider did not say)."""
    if granted is None:
        return []
    return bitbucket(provider).missing_scopes(provider.scope_list, set(granted.replace(",", " ").split()))
