"""The service API's audit trail: one record per authenticated call, never a token or a query secret.

Records live under AUDIT#{client} ordered by time, and DynamoDB's TTL deletes them after the stack's
ServiceAuditRetentionDays.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from bitbridge.config import settings
from bitbridge.store.base import epoch
from bitbridge.store.service import AuditRecord, audit_pk

_SECRET_PARAM = re.compile(r"(token|secret|key|password|passwd|signature|sig|code|auth|credential)", re.I)
REDACTED = "REDACTED"


def redact_query(query: str) -> str:
    """The query string with the value of every parameter that may carry a secret replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in pairs])


def record(
    *,
    client_id: str,
    key_id: str,
    action: str,
    method: str,
    path: str,
    query: str,
    status: int,
    duration_ms: float,
    request_id: str,
    end_user_id: str | None = None,
    provider_id: str | None = None,
) -> None:
    now = datetime.now(UTC)
    at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    safe_query = redact_query(query)
    AuditRecord(
        audit_pk(client_id),
        f"{at}#{request_id}",
        client_id=client_id,
        key_id=key_id,
        action=action,
        end_user_id=end_user_id,
        provider_id=provider_id,
        method=method,
        path=(path + (f"?{safe_query}" if safe_query else ""))[:2048],
        status=status,
        duration_ms=round(duration_ms, 1),
        at=at,
        expires_at=epoch(settings().service_audit_retention_days * 86400),
    ).save()


def since(client_id: str, start: datetime, end_user_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The client's records from `start`, oldest first."""
    lower = start.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    condition = AuditRecord.end_user_id == end_user_id if end_user_id else None
    rows = AuditRecord.query(audit_pk(client_id), AuditRecord.sk >= lower, filter_condition=condition, limit=limit)
    return [public(r) for r in rows]


def public(row: AuditRecord) -> dict[str, Any]:
    return {
        "at": row.at,
        "client_id": row.client_id,
        "key_id": row.key_id,
        "action": row.action,
        "end_user_id": row.end_user_id,
        "provider": row.provider_id,
        "method": row.method,
        "path": row.path,
        "status": int(row.status),
        "duration_ms": float(row.duration_ms),
    }


def parse_since(value: str) -> datetime:
    """`90s`, `15m`, `2h`, `7d`, or an ISO time."""
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
