"""What the API and the command line show of import jobs, and to whom: the job's owner (who started it),
those who joined it by asking for the same repository, and admins; cancel and retry belong to the owner
and admins only."""

from __future__ import annotations

from typing import Any

from bitbridge.accounts import is_admin
from bitbridge.config import settings
from bitbridge.errors import NotFound
from bitbridge.imports import output
from bitbridge.imports.jobs import ImportRequestError, decode_cursor, encode_cursor, invalid_cursor, load
from bitbridge.store.imports import (
    ACTIVE_STATES,
    CANCELLED,
    COMPLETED,
    FAILED,
    HOOK_INSTALLED,
    HOOK_MANUAL,
    JOB_SK,
    MAX_TRANSIENT_DEFERRALS,
    REPOJOB_SK,
    WAITING_STATES,
    JobRecord,
    RepoJobRecord,
    job_pk,
    owner_page_start,
    repojob_pk,
)
from bitbridge.timestamps import from_epoch, iso


def visible_to(job: JobRecord, user_id: str) -> bool:
    """The user who started the job, those who joined it by requesting the same repository, and admins."""
    return job.owner_id == user_id or user_id in (job.requested_by or set()) or is_admin(user_id)


def may_change(job: JobRecord, user_id: str) -> bool:
    """Cancel and retry belong to the user who started the job (whose connection runs it) and to admins;
    a user who joined a shared job only watches it."""
    return job.owner_id == user_id or is_admin(user_id)


def get_for(user_id: str, job_id: str) -> JobRecord | None:
    job = load(job_id) if job_id.isalnum() else None
    return job if job is not None and visible_to(job, user_id) else None


def visible(user_id: str, job_id: str) -> JobRecord:
    """The job, if `user_id` may see it; NotFound otherwise (the same answer as for a missing job)."""
    job = get_for(user_id, job_id)
    if job is None:
        raise NotFound("No such import.")
    return job


def for_change(user_id: str, job_id: str, action: str) -> JobRecord:
    """The job `user_id` asks to cancel or retry: NotFound when they cannot see it, refused (403) when
    they only joined it."""
    job = visible(user_id, job_id)
    if not may_change(job, user_id):
        raise ImportRequestError(
            f"Only the user who started this import, or an admin, can {action} it; "
            "you joined it by requesting the same repository.",
            code="not_import_owner",
        )
    return job


def view_for(job: JobRecord, user_id: str, *, admin: bool | None = None) -> dict[str, Any]:
    """The job as `user_id` sees it: the shared job plus what they may do with it (`admin`: known already)."""
    admin = is_admin(user_id) if admin is None else admin
    may = job.owner_id == user_id or admin
    return public(job) | {
        "you": {
            "started_it": job.owner_id == user_id,
            "admin": admin,
            "can_cancel": may and job.state in ACTIVE_STATES,
            "can_retry": may and job.state in (FAILED, CANCELLED),
        }
    }


def public(job: JobRecord) -> dict[str, Any]:
    """What the API and the command line show: never a token, never the raw repository."""
    body: dict[str, Any] = {
        "id": job.job_id,
        "provider": job.provider_id,
        "repository": {"id": job.repository_id, "full_name": job.repository_full_name},
        "state": job.state,
        "step": job.step,
        "progress": dict(job.counts or {}),
        "api_calls": int(job.api_calls or 0),
        "aws_calls": dict(job.aws_calls or {}),
        "error": {"reason": job.reason, "message": job.error} if job.error else None,
        "webhook": job.webhook,
        "deploy_key": job.deploy_key,
        "git": job.git,
        "options": dict(job.options or {}),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "rate_limit_waits": int(job.rate_limit_waits or 0),
        "budget_waits": int(job.budget_waits or 0),
        "continuations": int(job.continuations or 0),
    }
    if job.state in WAITING_STATES and job.not_before:
        body["waiting_until"] = iso(from_epoch(job.not_before))  # when it resumes
    if job.state in ACTIVE_STATES and job.transient_failures and job.retry_at:
        # A step Bitbucket keeps failing: `failures` attempts so far, retry number `failures` of `limit` is due
        # at `next_attempt_at` (or running now, once past it); beyond the limit the job fails.
        body["retrying"] = {
            "failures": int(job.transient_failures),
            "limit": MAX_TRANSIENT_DEFERRALS,
            "next_attempt_at": iso(from_epoch(job.retry_at)),
            "error": job.retry_error,
        }
    if job.state == COMPLETED:
        body["snapshot"] = {
            "bucket": settings().snapshots_bucket,
            "prefix": output.prefix(job.provider_id, job.repository_id, job.job_id),
        }
    return body


def may_see_hook_secret(job: JobRecord, user_id: str, admin: bool) -> bool:
    """The secret of a hook to add by hand goes to the user whose import it is (the job's owner) and to
    admins - not to others who asked for the same repository (they see the URL and events only)."""
    return bool(job.webhook and job.webhook.get("status") == HOOK_MANUAL and (admin or job.owner_id == user_id))


def with_secret_flag(body: dict[str, Any], visible: bool) -> dict[str, Any]:
    """Tell the console whether this viewer may ask for a manual hook's secret (the secret itself is only
    ever answered on its own request, to whom `may_see_hook_secret`)."""
    hook = body.get("webhook")
    if hook and hook.get("status") == HOOK_MANUAL:
        body["webhook"] = hook | {"secret_visible": visible}
    return body


def installed_hooks(user_id: str, provider_id: str) -> list[str]:
    """Subscription ids of the hooks this user's imports installed on `provider_id` (for Disconnect's answer)."""
    found = {
        str(job.webhook["subscription_id"])
        for job in JobRecord.by_owner.query(user_id)
        if job.provider_id == provider_id and job.webhook and job.webhook.get("status") == HOOK_INSTALLED
    }
    return sorted(found)


def list_for(user_id: str, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """The user's jobs, newest first, paged by DynamoDB's own key (stable under new jobs)."""
    position = decode_cursor(cursor)
    try:
        start = owner_page_start(position, user_id) if position is not None else None
    except ValueError:
        raise invalid_cursor() from None
    result = JobRecord.by_owner.query(user_id, scan_index_forward=False, limit=limit, last_evaluated_key=start)
    admin = is_admin(user_id)
    items = [view_for(j, user_id, admin=admin) for j in result]
    return {"imports": items, "next_cursor": encode_cursor(result.last_evaluated_key)}


def statuses(provider_id: str, repository_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each repository's current import (id, state, step, finished_at), for the repository list."""
    if not repository_ids:
        return {}
    pointers = RepoJobRecord.batch_get([(repojob_pk(provider_id, rid), REPOJOB_SK) for rid in set(repository_ids)])
    job_ids = {p.job_id for p in pointers}
    found = {j.repository_id: j for j in JobRecord.batch_get([(job_pk(i), JOB_SK) for i in job_ids])} if job_ids else {}
    return {
        rid: {
            "id": j.job_id,
            "state": j.state,
            "step": j.step,
            "finished_at": j.finished_at,
            "webhook": (j.webhook or {}).get("status"),
        }
        for rid, j in found.items()
    }
