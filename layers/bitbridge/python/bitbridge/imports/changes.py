"""What changes an import job's state outside its worker's steps: cancel and retry (a person asks), and
the one failure transition every path that fails a job takes (`failure`, `fail`)."""

from __future__ import annotations

from typing import Any

from bitbridge.imports import notify
from bitbridge.imports.jobs import ImportRequestError, get_item
from bitbridge.imports.kickoff import enqueue_all
from bitbridge.store.base import condition_failed
from bitbridge.store.imports import (
    ACTIVE_STATES,
    CANCELLED,
    FAILED,
    QUEUED,
    REPOJOB_SK,
    JobRecord,
    RepoJobRecord,
    repojob_pk,
)
from bitbridge.timestamps import iso

ERROR_LIMIT = 500  # characters of a failure's message kept on the job


def failure(reason: str, message: str) -> list[Any]:
    """The update that marks a job failed: state, why (`reason`, a stable word; `message`, for people), when,
    and its lease released."""
    return [
        JobRecord.state.set(FAILED),
        JobRecord.reason.set(reason),
        JobRecord.error.set(message[:ERROR_LIMIT]),
        JobRecord.finished_at.set(iso()),
        JobRecord.lease_owner.remove(),
        JobRecord.lease_until.remove(),
    ]


def fail(job: JobRecord, reason: str, message: str) -> None:
    """Mark a job failed outside a run's fenced writes (its provider is gone, its message is poison), and
    say so on the bus. A run fails its job with `failure` in its own fenced save."""
    job.update(actions=failure(reason, message))
    notify.publish(job, "import.failed")


def cancel(job: JobRecord) -> JobRecord:
    """Stop an active job; the worker notices at its next checkpoint (its writes are fenced on the state)."""
    try:
        job.update(
            actions=[
                JobRecord.state.set(CANCELLED),
                JobRecord.finished_at.set(iso()),
                JobRecord.updated_at.set(iso()),
                JobRecord.not_before.remove(),
            ],
            condition=JobRecord.state.is_in(*ACTIVE_STATES),
        )
    except Exception as exc:
        if condition_failed(exc):
            job.refresh(consistent_read=True)
            raise ImportRequestError(f"The import is already {job.state}.", code="invalid_state") from None
        raise
    return job


def retry(job: JobRecord) -> JobRecord:
    """Resume a failed or cancelled job from its last checkpoint (nothing written is redone)."""
    pointer = get_item(RepoJobRecord, repojob_pk(job.provider_id, job.repository_id), REPOJOB_SK)
    if pointer is not None and pointer.job_id != job.job_id:
        raise ImportRequestError(f"A newer import of this repository exists: {pointer.job_id}.", code="invalid_state")
    try:
        job.update(
            actions=[
                JobRecord.state.set(QUEUED),
                JobRecord.error.remove(),
                JobRecord.reason.remove(),
                JobRecord.finished_at.remove(),
                JobRecord.transient_failures.set(0),
                JobRecord.lease_owner.remove(),
                JobRecord.lease_until.remove(),
                JobRecord.enqueued_at.remove(),  # set again once its message is sent
                JobRecord.kickoff_id.remove(),  # its first request's record says nothing of this send
                JobRecord.updated_at.set(iso()),
            ],
            condition=JobRecord.state.is_in(FAILED, CANCELLED),
        )
    except Exception as exc:
        if condition_failed(exc):
            job.refresh(consistent_read=True)
            raise ImportRequestError(
                f"Only failed or cancelled imports can be retried; it is {job.state}.", code="invalid_state"
            ) from None
        raise
    enqueue_all([job])
    return job
