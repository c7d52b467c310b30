"""Configuration, parsed once from the environment into a typed object, and checked whole.

Nothing else in bitbridge reads os.environ. The variable names are the ones template.yaml's Globals set on
every function, and the local stack sets the very same ones. Every function reads its settings at cold
start (`settings()` in its module): a missing or malformed variable fails there, named in one
`ConfigurationError`, not at the first call that would have used it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

PREFIX = "BITBRIDGE_"
#: What every function needs (template.yaml's Globals give each of them a value).
REQUIRED = (
    "PROVIDERS_TABLE",
    "ACCOUNTS_TABLE",
    "EPHEMERAL_TABLE",
    "DELIVERIES_TABLE",
    "SUBSCRIPTIONS_TABLE",
    "IMPORTS_TABLE",
    "SERVICE_TABLE",
    "BUDGETS_TABLE",
    "IMPORT_QUEUE_URL",
    "PUBLISH_FAILURE_QUEUE_URL",
    "TOKEN_REFRESH_QUEUE_URL",
    "EVENT_BUS_NAME",
    "SNAPSHOTS_BUCKET",
    "TOKEN_KEY_ID",
    "SESSION_KEY_SECRET_ARN",
    "WEBHOOK_MASTER_KEY_SECRET_ARN",
)


class ConfigurationError(RuntimeError):
    """The function's environment lacks a variable or has a malformed one: the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    stage: str
    region: str
    public_base_url: str
    allowed_return_to_origins: tuple[str, ...]
    admin_users: frozenset[str]  # "{provider id}:{Bitbucket account id}" entries (deploy parameter AdminUsers)
    providers_table: str
    accounts_table: str
    ephemeral_table: str
    deliveries_table: str
    subscriptions_table: str
    imports_table: str
    import_queue_url: str
    publish_failure_queue_url: str
    token_refresh_queue_url: str
    event_bus_name: str
    snapshots_bucket: str
    token_key_id: str
    session_key_secret_arn: str
    webhook_master_key_secret_arn: str
    provider_secret_prefix: str
    reconcile_interval_minutes: int = 15
    reconcile_api_budget: int = 10_000  # Bitbucket calls per provider per interval
    service_table: str = ""
    service_audit_retention_days: int = 90
    git_bundle_limit_mb: int = 1024  # the largest git data an import bundles (template.yaml GitBundleLimitMb)
    git_sync_queue_url: str = ""  # the push consumer's queue (its retries set their own delay)
    budgets_table: str = ""  # rate-limit budgets (bitbridge.budget)
    metrics_namespace: str = "bitbridge"  # CloudWatch namespace of bitbridge's metrics (Powertools' variable)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        """The settings `environ` gives; a malformed value raises ConfigurationError naming it (a missing
        one is left empty: `checked` says which are required)."""

        def get(name: str, default: str = "") -> str:
            return environ.get(f"{PREFIX}{name}", default)

        def whole(name: str, default: int) -> int:
            raw = get(name).strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise ConfigurationError(f"{PREFIX}{name}={raw!r} is not a whole number of at least 1.")
            return int(raw)

        origins = tuple(_origin(o) for o in get("ALLOWED_RETURN_TO_ORIGINS").split(",") if o.strip())
        return cls(
            stage=get("STAGE", "dev"),
            region=aws_region(environ),
            public_base_url=_base_url(get("PUBLIC_BASE_URL")),
            allowed_return_to_origins=origins,
            admin_users=frozenset(a.strip() for a in get("ADMIN_USERS").split(",") if a.strip()),
            providers_table=get("PROVIDERS_TABLE"),
            accounts_table=get("ACCOUNTS_TABLE"),
            ephemeral_table=get("EPHEMERAL_TABLE"),
            deliveries_table=get("DELIVERIES_TABLE"),
            subscriptions_table=get("SUBSCRIPTIONS_TABLE"),
            imports_table=get("IMPORTS_TABLE"),
            import_queue_url=get("IMPORT_QUEUE_URL"),
            publish_failure_queue_url=get("PUBLISH_FAILURE_QUEUE_URL"),
            token_refresh_queue_url=get("TOKEN_REFRESH_QUEUE_URL"),
            event_bus_name=get("EVENT_BUS_NAME"),
            snapshots_bucket=get("SNAPSHOTS_BUCKET"),
            token_key_id=get("TOKEN_KEY_ID"),
            session_key_secret_arn=get("SESSION_KEY_SECRET_ARN"),
            webhook_master_key_secret_arn=get("WEBHOOK_MASTER_KEY_SECRET_ARN"),
            provider_secret_prefix=get("PROVIDER_SECRET_PREFIX", "bitbridge/dev/providers/"),
            reconcile_interval_minutes=whole("RECONCILE_INTERVAL_MINUTES", 15),
            reconcile_api_budget=whole("RECONCILE_API_BUDGET", 10_000),
            service_table=get("SERVICE_TABLE"),
            service_audit_retention_days=whole("SERVICE_AUDIT_RETENTION_DAYS", 90),
            git_bundle_limit_mb=whole("GIT_BUNDLE_LIMIT_MB", 1024),
            git_sync_queue_url=get("GIT_SYNC_QUEUE_URL"),
            budgets_table=get("BUDGETS_TABLE"),
            metrics_namespace=environ.get("POWERTOOLS_METRICS_NAMESPACE") or "bitbridge",
        )

    @classmethod
    def checked(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        """`from_environ`, refusing an environment that lacks a required variable."""
        missing = [f"{PREFIX}{name}" for name in REQUIRED if not environ.get(f"{PREFIX}{name}", "").strip()]
        if missing:
            raise ConfigurationError(
                f"{missing[0]} is not set"
                + (f" (nor {', '.join(missing[1:])})" if missing[1:] else "")
                + ": every bitbridge function needs it. Deployed, template.yaml's Globals set it; locally,"
                " the local stack does (python -m infra.local)."
            )
        return cls.from_environ(environ)


def aws_region(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The region Lambda (or the local stack) runs in: AWS's own variables, not bitbridge's. Read on its
    own where a library asks for it at import (PynamoDB's models), before a command line has configured
    the rest."""
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _base_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise ConfigurationError(f"{PREFIX}PUBLIC_BASE_URL={raw!r} is not an http(s) URL (or leave it empty).")
    return url


def _origin(raw: str) -> str:
    origin = raw.strip().rstrip("/")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ConfigurationError(
            f"{PREFIX}ALLOWED_RETURN_TO_ORIGINS: {raw.strip()!r} is not an origin (scheme://host[:port], no path)."
        )
    return origin


@cache
def settings() -> Settings:
    """The process-wide settings, read and checked once per container (at cold start: each function's
    module calls this)."""
    return Settings.checked()
