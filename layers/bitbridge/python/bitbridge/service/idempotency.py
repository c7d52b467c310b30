"""`Idempotency-Key` on the service API's writes: a retried call with the same key is answered with the first
call's answer and never writes to Bitbucket twice.

The key (1-255 printable ASCII characters, chosen by the client; the SDK makes one per call) is held per service
client for RETENTION_SECONDS (24 hours) in ServiceTable (`store.service.IdempotencyRecord`, by SHA-256 of the key).
The first call takes it with one conditional put and runs; its answer - a success, or Bitbucket's refusal - is
written on the record. A call with the same key:
- and the same request (route, end user, parameters, body; `fingerprint`): the first answer, marked replayed;
- and another request: 422 `idempotency_key_reused` (a key names one request);
- while the first still runs: 409 `idempotency_in_progress` (retry after a moment).
A call that ended without an answer worth keeping (bitbridge's own refusals such as `not_connected`, Bitbucket
unreachable, a 429) releases the key, so its retry runs again. A call that crashed holds the key until its lease
(LEASE_SECONDS, past the function's timeout) ends; then the next call with it runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bitbridge.bitbucket.actions import ActionRefused
from bitbridge.errors import Problem
from bitbridge.service.errors import refuse
from bitbridge.store.base import condition_failed
from bitbridge.store.service import IdempotencyRecord, idempotency_pk, idempotency_sk

RETENTION_SECONDS = 24 * 3600
LEASE_SECONDS = 60  # ServiceApiFunction's timeout is 29 s
HEADER = "idempotency-key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    replayed: bool = False


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY.match(key):
        raise refuse("invalid_idempotency_key", "`Idempotency-Key` is 1-255 printable ASCII characters without spaces.")
    return key


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _keys(client_id: str, key: str) -> tuple[str, str]:
    return idempotency_pk(client_id), idempotency_sk(hashlib.sha256(key.encode()).hexdigest())


def once(client_id: str, key: str | None, request: str, action: Callable[[], Answer]) -> Answer:
    """Run `action` once per (client, key): see the module's docstring. `request` is the call's fingerprint."""
    if key is None:
        return action()
    pk, sk = _keys(client_id, key)
    now = time.time()
    record = IdempotencyRecord(
        pk,
        sk,
        fingerprint=request,
        state=RUNNING,
        lease_until=now + LEASE_SECONDS,
        expires_at=int(now + RETENTION_SECONDS),
    )
    try:
        record.save(
            condition=IdempotencyRecord.pk.does_not_exist()
            | ((IdempotencyRecord.state == RUNNING) & (IdempotencyRecord.lease_until < now))
        )
    except Exception as exc:
        if not condition_failed(exc):
            raise
        return _earlier(pk, sk, request)
    try:
        answer = action()
    except ActionRefused as exc:  # Bitbucket's answer to this request: the same on every retry
        _finish(record, error={"code": exc.code, "message": exc.message, "details": exc.details})
        raise
    except BaseException:
        record.delete()  # no answer worth keeping: the retry runs again
        raise
    _finish(record, status=answer.status, body=answer.body)
    return answer


def _earlier(pk: str, sk: str, request: str) -> Answer:
    try:
        found = IdempotencyRecord.get(pk, sk, consistent_read=True)
    except IdempotencyRecord.DoesNotExist:
        raise refuse("idempotency_in_progress", "A call with this Idempotency-Key just ended; retry it.") from None
    if found.fingerprint != request:
        raise refuse(
            "idempotency_key_reused",
            "This Idempotency-Key was used for another request in the last 24 hours: use a new key for a new request.",
        )
    if found.state != DONE:
        raise refuse(
            "idempotency_in_progress", "A call with this Idempotency-Key is still running; retry in a few seconds."
        )
    if found.error:
        error = json.loads(found.error)
        raise Problem(error["message"], code=error["code"], **error.get("details", {}))
    return Answer(int(found.status or 200), json.loads(found.body or "null"), replayed=True)


def _finish(record: IdempotencyRecord, *, status: int | None = None, body: Any = None, error: Any = None) -> None:
    answer = (
        [IdempotencyRecord.error.set(json.dumps(error))]
        if error is not None
        else [IdempotencyRecord.status.set(status or 200), IdempotencyRecord.body.set(json.dumps(body))]
    )
    record.update(actions=[IdempotencyRecord.state.set(DONE), *answer])
