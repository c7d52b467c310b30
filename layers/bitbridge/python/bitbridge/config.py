"""Configuration, parsed once from the environment into a typed object.

Nothing else in bitbridge reads os.environ. The variable names are the ones template.yaml's
Globals set on every function, and the local stack sets the very same ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


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
    budgets_table: str = ""  # rate-limit budgets (bitbridge.budget)
    metrics_namespace: str = "bitbridge"  # CloudWatch namespace of bitbridge's metrics (Powertools' variable)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        def get(name: str, default: str = "") -> str:
            return environ.get(f"BITBRIDGE_{name}", default)

        origins = tuple(o.strip().rstrip("/") for o in get("ALLOWED_RETURN_TO_ORIGINS").split(",") if o.strip())
        return cls(
            stage=get("STAGE", "dev"),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            public_base_url=get("PUBLIC_BASE_URL").rstrip("/"),
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
            event_bus_name=get("EVENT_BUS_NAME"),
            snapshots_bucket=get("SNAPSHOTS_BUCKET"),
            token_key_id=get("TOKEN_KEY_ID"),
            session_key_secret_arn=get("SESSION_KEY_SECRET_ARN"),
            webhook_master_key_secret_arn=get("WEBHOOK_MASTER_KEY_SECRET_ARN"),
            provider_secret_prefix=get("PROVIDER_SECRET_PREFIX", "bitbridge/dev/providers/"),
            reconcile_interval_minutes=max(1, int(get("RECONCILE_INTERVAL_MINUTES", "15") or 15)),
            reconcile_api_budget=max(1, int(get("RECONCILE_API_BUDGET", "10000") or 10000)),
            service_table=get("SERVICE_TABLE"),
            service_audit_retention_days=int(get("SERVICE_AUDIT_RETENTION_DAYS", "90") or 90),
            budgets_table=get("BUDGETS_TABLE"),
            metrics_namespace=environ.get("POWERTOOLS_METRICS_NAMESPACE") or "bitbridge",
        )


@cache
def settings() -> Settings:
    """The process-wide settings (read once per container)."""
    return Settings.from_environ()
