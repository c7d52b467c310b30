"""The service API's audit trail: one record per authenticated call, never a token or a secret from the URL.

The call itself only writes the record as one JSON line on stdout (`emit`): microseconds, instead of a
DynamoDB write on every proxied request. On Lambda that line lands in the function's CloudWatch log
group, whose subscription filter (AUDIT_FILTER_PATTERN, in template.yaml) hands it to AuditWriterFunction
(`write_log_batch`), which stores it under AUDIT#{client} ordered by time; DynamoDB's TTL deletes it after
the stack's ServiceAuditRetentionDays. The line does not depend on the log level, and a write that fails is
retried by Lambda, then parked on AuditRetryQueue and retried from there: a record is late, never lost.
Records are keyed by time and request id, so a batch delivered twice is stored once.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from urllib.parse import quote, unquote_plus

from bitbridge.config import settings
from bitbridge.store.service import AuditRecord, audit_pk
from bitbridge.timestamps import epoch, iso_ms

REDACTED = "REDACTED"
# The marker the log subscription filters on: template.yaml's FilterPattern is `{ $.bitbridge_audit = 1 }`.
MARKER = "bitbridge_audit"
_FIELDS = ("client_id", "key_id", "action", "method", "path", "status", "duration_ms", "at", "request_id")
_OPTIONAL = ("end_user_id", "provider_id")
_MAX_DETAIL = 2048  # a typed action's detail (ids, states, a comment's first characters), as JSON
_MAX_TEXT = 256  # ids, names and times; well inside DynamoDB's key limits
_MAX_DURATION_MS = 15 * 60 * 1000  # no invocation outlives Lambda's 15 minutes


# What a record keeps of the request line is an allow-list: a deny-list of secret-looking names always misses
# one (`pw`, `jwt`, `state`, `nonce`, a `;`-separated pair...). Parameter names are kept when they look like
# names; a value only when its parameter pages, filters or sorts, or names what a file read reads (repository,
# path, ref), and the value is one such a parameter takes.
_SAFE_VALUES: dict[str, re.Pattern[str]] = {
    "page": re.compile(r"\d{1,9}"),
    "pagelen": re.compile(r"\d{1,9}"),
    "start": re.compile(r"\d{1,9}"),
    "limit": re.compile(r"\d{1,9}"),
    "state": re.compile(r"OPEN|MERGED|DECLINED|SUPERSEDED|ALL", re.I),
    "role": re.compile(r"member|contributor|admin|owner", re.I),
    "sort": re.compile(r"-?[A-Za-z_.]{1,64}"),
    "repository": re.compile(r"~?[\w.-]{1,64}/[\w.-]{1,128}"),
    "path": re.compile(r"[\w./ @+,=()-]{1,512}"),
    "ref": re.compile(r"[\w./@+-]{1,255}"),
    "base": re.compile(r"[\w./@+-]{1,255}"),
    "head": re.compile(r"[\w./@+-]{1,255}"),
    "recursive": re.compile(r"true|false"),
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]-]{0,39}")
# A path segment kept as is: ids, slugs, hashes, file names. Longer or stranger ones (a token pasted into the
# path) are redacted, and so is every `;` matrix parameter after a segment.
_SEGMENT = re.compile(r"[A-Za-z0-9_.~@{}:+,=-]{1,64}")


def redact_query(query: str) -> str:
    """The query string as the audit trail keeps it (`&` and `;` both separate parameters: servers differ)."""
    kept: list[str] = []
    for part in re.split(r"[&;]", query):
        if not part:
            continue
        raw_name, has_value, raw_value = part.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        safe = _SAFE_VALUES.get(name)
        if not has_value:  # a bare word is a flag only when it is a known parameter; else it may be a secret
            kept.append(name if safe is not None else REDACTED)
            continue
        shown = value if safe is not None and safe.fullmatch(value) else REDACTED
        kept.append(f"{name if _NAME.fullmatch(name) else REDACTED}={quote(shown, safe='')}")
    return "&".join(kept)


def redact_path(path: str) -> str:
    """The path as the audit trail keeps it: each segment as is when it looks like an id, a slug or a file
    name, else REDACTED; matrix parameters (`;name=value`) always REDACTED."""
    segments = []
    for segment in path.split("/"):
        plain, matrix, _ = segment.partition(";")
        shown = plain if not plain or _SEGMENT.fullmatch(plain) else REDACTED
        segments.append(shown + (f";{REDACTED}" if matrix else ""))
    return "/".join(segments)


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
    detail: dict[str, Any] | None = None,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Write the call's record as one line for the log subscription; returns what was written."""
    at = iso_ms()
    safe_query = redact_query(query)
    path = redact_path(path)
    entry = {
        MARKER: 1,
        "client_id": client_id,
        "key_id": key_id,
        "action": action,
        "end_user_id": end_user_id,
        "provider_id": provider_id,
        "method": method,
        "path": (path + (f"?{safe_query}" if safe_query else ""))[:2048],
        "status": status,
        "duration_ms": round(duration_ms, 1),
        "at": at,
        "request_id": request_id,
    }
    if detail:  # what a typed action did (service.actions.audit_detail): ids and states, never a whole text
        entry["detail"] = detail
    stream = out or sys.stdout
    stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
    stream.flush()
    return entry


# ------------------------------------------------------------------------------------------- the writer


def decode_log_batch(data: str) -> dict[str, Any]:
    """The payload of a CloudWatch Logs subscription event (`event["awslogs"]["data"]`: base64 gzip JSON)."""
    return dict(json.loads(gzip.decompress(base64.b64decode(data))))


def entries(log_events: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The audit entries among a batch's log events, and how many matched lines were not valid entries."""
    found, invalid = [], 0
    for log_event in log_events:
        try:
            entry = json.loads(str(log_event.get("message", "")))
        except ValueError:
            invalid += 1
            continue
        if not _valid(entry):
            invalid += 1
            continue
        found.append(entry)
    return found, invalid


def _valid(entry: Any) -> bool:
    """A record ServiceApiFunction wrote, with values DynamoDB will take (a batch with one bad item would
    be refused whole, and retried for hours)."""
    marker = entry.get(MARKER) if isinstance(entry, dict) else None
    if not (isinstance(marker, int) and not isinstance(marker, bool) and marker == 1):
        return False
    texts = [name for name in _FIELDS if name not in ("status", "duration_ms", "path")]
    if not all(isinstance(entry.get(name), str) and 0 < len(entry[name]) <= _MAX_TEXT for name in texts):
        return False
    if not (isinstance(entry.get("path"), str) and entry["path"]):
        return False
    status, duration = entry.get("status"), entry.get("duration_ms")
    if not (isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599):
        return False
    if not (isinstance(duration, int | float) and not isinstance(duration, bool)):
        return False
    if not (math.isfinite(duration) and 0 <= duration <= _MAX_DURATION_MS):
        return False
    optional = (entry.get(name) for name in _OPTIONAL)
    if not all(value is None or (isinstance(value, str) and len(value) <= _MAX_TEXT) for value in optional):
        return False
    detail = entry.get("detail")
    return detail is None or (isinstance(detail, dict) and len(json.dumps(detail)) <= _MAX_DETAIL)


def store(batch: list[dict[str, Any]]) -> None:
    """Write the entries (BatchWriteItem, unprocessed items retried by PynamoDB); raises if DynamoDB refuses."""
    expires_at = epoch(settings().service_audit_retention_days * 86400)
    with AuditRecord.batch_write() as writer:
        for entry in batch:
            writer.save(
                AuditRecord(
                    audit_pk(entry["client_id"]),
                    f"{entry['at']}#{entry['request_id']}",
                    client_id=entry["client_id"],
                    key_id=entry["key_id"],
                    action=entry["action"],
                    end_user_id=entry.get("end_user_id"),
                    provider_id=entry.get("provider_id"),
                    method=entry["method"],
                    path=entry["path"][:2048],
                    status=int(entry["status"]),
                    duration_ms=float(entry["duration_ms"]),
                    at=entry["at"],
                    detail=json.dumps(entry["detail"]) if entry.get("detail") else None,
                    expires_at=expires_at,
                )
            )


def since(client_id: str, start: datetime, end_user_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The client's records from `start`, oldest first."""
    lower = iso_ms(start)
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
        "detail": json.loads(row.detail) if row.detail else None,
    }


def parse_since(value: str) -> datetime:
    """`90s`, `15m`, `2h`, `7d`, or an ISO time."""
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
