"""DynamoDB's single-item atomicity, on moto.

On AWS every PutItem, UpdateItem and DeleteItem - conditional or not - is atomic, and a transaction is
all or nothing; bitbridge's one-job-per-repository, one-delivery-once and lease rules rest on it. moto
evaluates a condition and then writes, with no lock, so two threads can both pass the same condition.
`install()` serialises moto's item writes (one lock for the backend: slower than DynamoDB, never less
strict). Reads too: DynamoDB answers a read with one version of the item, while moto builds its answer
from the live item, which a concurrent UpdateItem changes in place (seen: "dictionary changed size during
iteration", a 500 to the reader). So each DynamoDB request, answer included, holds the same lock. Used by
the local stack (moto server runs in its process) and the in-process tests.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def install() -> None:
    """Idempotent: wraps each write of moto's DynamoDB backend, and each request's handling, once."""
    for owner, name in [*((DynamoDBBackend, name) for name in _WRITES), (DynamoHandler, "call_action")]:
        method = getattr(owner, name)
        if getattr(method, "_bitbridge_atomic", False):
            continue

        @functools.wraps(method)
        def atomic(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with _lock:
                return _method(self, *args, **kwargs)

        atomic._bitbridge_atomic = True  # type: ignore[attr-defined]
        setattr(owner, name, atomic)


def installed() -> bool:
    wrapped = [getattr(DynamoDBBackend, name) for name in _WRITES] + [DynamoHandler.call_action]
    return all(getattr(method, "_bitbridge_atomic", False) for method in wrapped)
