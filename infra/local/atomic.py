"""DynamoDB's single-item atomicity, on moto.

On AWS every PutItem, UpdateItem and DeleteItem - conditional or not - is atomic, and a transaction is
all or nothing; bitbridge's one-job-per-repository, one-delivery-once and lease rules rest on it. moto
evaluates a condition and then writes, with no lock, so two threads can both pass the same condition.
`install()` serialises moto's item writes (one lock for the backend: slower than DynamoDB, never less
strict). Used by the local stack (moto server runs in its process) and the in-process tests.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def install() -> None:
    """Idempotent: wraps each write of moto's DynamoDB backend once."""
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_bitbridge_atomic", False):
            continue

        @functools.wraps(method)
        def atomic(self: Any, *args: Any, _write: Any = method, **kwargs: Any) -> Any:
            with _lock:
                return _write(self, *args, **kwargs)

        atomic._bitbridge_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


def installed() -> bool:
    return all(getattr(getattr(DynamoDBBackend, name), "_bitbridge_atomic", False) for name in _WRITES)
