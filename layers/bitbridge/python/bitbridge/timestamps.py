"""Timestamps, one way: RFC 3339 in UTC with a `Z`, at the precision a field needs.

Seconds for most item fields (`iso`), milliseconds where strings are compared or sorted as times and
several happen within a second (`iso_ms`: deliveries' `received_at`, import jobs' `created_at`, audit
records), microseconds where the reconciler compares Bitbucket's times. Epoch seconds for DynamoDB TTLs.
Standard library only: the receiver's and the publisher's cold paths use it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def epoch(offset_seconds: float = 0) -> int:
    """Seconds since the epoch: DynamoDB TTL attributes are numbers."""
    return int(time.time() + offset_seconds)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def iso(value: datetime | None = None, *, timespec: str = "seconds") -> str:
    """`value` (default: now) as RFC 3339 UTC, `2024-05-01T12:00:00Z`; a naive value is taken as UTC."""
    moment = value or now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_ms(value: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds: compares as a string the way the times compare."""
    return iso(value, timespec="milliseconds")
