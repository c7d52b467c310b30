"""Import jobs: reading one, the refusal every import route answers with, and the API's opaque cursors.

What happens to jobs lives beside this module, one concern each: `kickoff` (a request becomes jobs and
their messages), `queries` (what the API and the command line show, and to whom), `changes` (cancel,
retry and the one failure transition), `worker` (the steps). The items themselves are `store/imports`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bitbridge.errors import Problem
from bitbridge.store.imports import JOB_SK, JobRecord, job_pk


class ImportRequestError(Problem):
    """A request bitbridge refuses as a whole (nothing is created); `code` says why."""

    code = "invalid_request"


def load(job_id: str) -> JobRecord | None:
    job: JobRecord | None = get_item(JobRecord, job_pk(job_id), JOB_SK)
    return job


def get_item(model: Any, pk: str, sk: str) -> Any:
    """One item by key, strongly consistent; None when missing."""
    try:
        return model.get(pk, sk, consistent_read=True)
    except model.DoesNotExist:
        return None


def batch_get(model: Any, keys: list[tuple[str, str]]) -> list[Any]:
    """Items by key, BatchGetItem (100 keys a call), strongly consistent; missing ones left out."""
    return list(model.batch_get(keys, consistent_read=True)) if keys else []


def encode_cursor(position: dict[str, Any] | None) -> str | None:
    """Where a list goes on, as a cursor opaque to clients (base64url JSON); None at the end."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode() if position else None


#: The one answer to a cursor bitbridge did not hand out (or that no longer fits the list), on every API.
INVALID_CURSOR = "Invalid cursor: send back the `next_cursor` of a previous answer, or none to start from the top."


def invalid_cursor() -> ImportRequestError:
    return ImportRequestError(INVALID_CURSOR)


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The position a cursor holds (a JSON object), or None without one. Only its form is checked here:
    each list checks the position is one of its own before using it (store.imports.owner_page_start, the
    flavors' listing states)."""
    if not cursor:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeError):
        raise invalid_cursor() from None
    if not isinstance(position, dict):
        raise invalid_cursor()
    return position
