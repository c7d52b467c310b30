"""Import jobs, their checkpoints and output parts, and imported projects (ImportsTable).

  JOB#{job id}                            / JOB              the job: state, step, cursor, counts, lease
  JOB#{job id}                            / PART#{entity}#{page:05d}   one written output object (older jobs)
  JOB#{job id}                            / PARTS#{chunk:05d}  written objects moved off a very long job item
  JOB#{job id}                            / PEOPLE#{chunk:05d} people met so far, moved off a job item that held many
  REPOJOB#{provider}#{repository id}      / REPOJOB          which job is the repository's import (idempotency)
  KICKOFF#{kickoff id}                    / KICKOFF          the messages of one POST /api/imports' new jobs were sent
  PROJECT#{provider}#{repository id}      / PROJECT          repository <-> subscription <-> latest import

Only JOB items carry `owner_id` + `created_at`, so only they appear in the `by_owner` index.
The PROJECT item's push / default-branch / open pull request attributes are kept current by the event
publisher (bitbridge.webhooks.project_state) under exactly these names; imports write them too.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    MapAttribute,
    NumberAttribute,
    NumberSetAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta
from bitbridge.timestamps import iso

HOOK_INSTALLED = "installed"
HOOK_MANUAL = "manual_required"
HOOK_FAILED = "failed"

QUEUED = "queued"
RUNNING = "running"
WAITING = "waiting_rate_limit"  # Bitbucket answered 429 (another app spends the allowance)
WAITING_BUDGET = "waiting_budget"  # the person's rate-limit budget has no room now (bitbridge.budget)
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
ACTIVE_STATES = (QUEUED, RUNNING, WAITING, WAITING_BUDGET)
WAITING_STATES = (WAITING, WAITING_BUDGET)
MAX_TRANSIENT_DEFERRALS = 5  # a step's retries after 5xx / network errors (2, 4, 8, 16, 32 s apart), then failed
TERMINAL_STATES = (COMPLETED, FAILED, CANCELLED)


JOB_SK = "JOB"
REPOJOB_SK = "REPOJOB"
KICKOFF_SK = "KICKOFF"
PROJECT_SK = "PROJECT"


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def repojob_pk(provider_id: str, repository_id: str) -> str:
    return f"REPOJOB#{provider_id}#{repository_id}"


def kickoff_pk(kickoff_id: str) -> str:
    return f"KICKOFF#{kickoff_id}"


def project_pk(provider_id: str, repository_id: str) -> str:
    return f"PROJECT#{provider_id}#{repository_id}"


def part_sk(entity: str, page: int) -> str:
    return f"PART#{entity}#{page:05d}"


def parts_chunk_sk(chunk: int) -> str:
    return f"PARTS#{chunk:05d}"


def people_chunk_sk(chunk: int) -> str:
    return f"PEOPLE#{chunk:05d}"


def people_chunks_of() -> Any:
    """The sort-key condition that selects a job's moved-off people (a Query on the job's pk)."""
    return PeopleChunkRecord.sk.startswith("PEOPLE#")


def parts_chunks_of() -> Any:
    """The sort-key condition that selects a job's moved-off part lists (a Query on the job's pk)."""
    return PartsChunkRecord.sk.startswith("PARTS#")


def parts_of() -> Any:
    """The sort-key condition that selects a job's output parts (a Query on the job's pk)."""
    return PartRecord.sk.startswith("PART#")


class ByOwner(GlobalSecondaryIndex["JobRecord"]):
    class Meta:
        index_name = "by_owner"
        projection = AllProjection()

    owner_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


def owner_page_start(position: dict[str, Any], owner_id: str) -> dict[str, Any]:
    """`position` (a by_owner page's LastEvaluatedKey, as a client sent it back in a cursor) when it is one
    of `owner_id`'s jobs: exactly the table's and the index's keys, each a string. ValueError otherwise, so
    nothing a client made up reaches DynamoDB (which would refuse it with a 500, or page another's jobs)."""
    keys = {"pk", "sk", "owner_id", "created_at"}
    if set(position) != keys:
        raise ValueError("not a position in a user's jobs")
    values = {}
    for name in keys:
        attr = position[name]
        text = attr.get("S") if isinstance(attr, dict) and set(attr) == {"S"} else None
        if not (isinstance(text, str) and 0 < len(text) <= 256):
            raise ValueError("not a position in a user's jobs")
        values[name] = text
    if values["owner_id"] != owner_id or values["sk"] != JOB_SK or not values["pk"].startswith(job_pk("")):
        raise ValueError("not a position in this user's jobs")
    return position


@register
class JobRecord(Model):
    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # JOB#{job id}
    sk = UnicodeAttribute(range_key=True, default=JOB_SK)
    job_id = UnicodeAttribute()
    owner_id = UnicodeAttribute()  # the user whose connection imports
    created_at = UnicodeAttribute(default=iso)
    updated_at = UnicodeAttribute(default=iso)
    provider_id = UnicodeAttribute()
    flavor = UnicodeAttribute()
    repository_id = UnicodeAttribute()
    repository_full_name = UnicodeAttribute()
    repository = JSONAttribute(null=True)  # the repository as read at kickoff (saves the worker a call)
    options = JSONAttribute(default=dict)  # {"comments": bool, "git": bool, "deploy_key": bool, "hook_base_url"}
    requested_by = UnicodeSetAttribute(null=True)  # other users who asked for the same import
    state = UnicodeAttribute(default=QUEUED)
    # repository | <entity> | webhook | deploy_key | git | manifest | done
    step = UnicodeAttribute(default="repository")
    checkpoint = JSONAttribute(default=dict)  # {"cursor": str|None, "page": int} within `step`
    counts = JSONAttribute(default=dict)  # entity -> items written
    facts = JSONAttribute(default=dict)  # gathered on the way: default branch, its head, open PR ids
    # What the webhook step did: {"status": installed | manual_required | failed, "reason", "subscription_id",
    # "url", "events"} (never the secret). Stored as `webhook_outcome`: older jobs held free text in `webhook`.
    webhook = JSONAttribute(null=True, attr_name="webhook_outcome")
    # What the deploy-key step did ({"status": installed | manual_required | failed, "reason", ...}; None: the
    # provider has no key) and what the git step did ({"status": completed | empty | too_large | failed, ...}).
    deploy_key = JSONAttribute(null=True, attr_name="deploy_key_outcome")
    git = JSONAttribute(null=True, attr_name="git_outcome")
    api_calls = NumberAttribute(default=0)  # Bitbucket REST calls: the kickoff's access check + the worker's
    aws_calls = JSONAttribute(default=dict)  # the worker's AWS calls: {"dynamodb:UpdateItem": n, ...}
    # Objects written so far, [key, entity, page, items, bytes, sha256] each, saved with the page's
    # checkpoint in one write; past PARTS_ON_JOB they move to a PartsChunkRecord (the item stays small).
    parts = JSONAttribute(default=list)
    parts_chunks = NumberAttribute(default=0)
    # The people the entities written so far name ({id: record}), saved with each page's checkpoint; past
    # PEOPLE_ON_JOB they move to a PeopleChunkRecord. people.jsonl is written from them at the end.
    people = JSONAttribute(default=dict)
    people_chunks = NumberAttribute(default=0)
    error = UnicodeAttribute(null=True)  # message (never a token)
    reason = UnicodeAttribute(null=True)  # not_found | forbidden | reauth_required | bitbucket_error | internal
    started_at = UnicodeAttribute(null=True)
    finished_at = UnicodeAttribute(null=True)
    not_before = NumberAttribute(null=True)  # epoch: waiting for a rate limit or the budget until then
    # epoch: when a message naming the job was confirmed sent on its own (a re-send, a retry); a new job's
    # send is recorded once per request on a KickoffRecord instead. Neither while queued: the sender may
    # have died before sending, and asking for the repository again sends it (bitbridge.imports.jobs).
    enqueued_at = NumberAttribute(null=True)
    kickoff_id = UnicodeAttribute(null=True)  # the request that made it (its KICKOFF item says it was sent)
    rate_limit_waits = NumberAttribute(default=0)
    budget_waits = NumberAttribute(default=0)  # times it waited for room in the person's budget
    budget_resume = NumberAttribute(null=True)  # set while it comes back from a budget wait (leaves the queue)
    transient_failures = NumberAttribute(default=0)  # consecutive deferrals after 5xx / network errors
    # While a step is retrying (transient_failures > 0): when the next attempt is due (epoch) and what
    # failed last (a message, never a token), so the console shows the retries instead of a silent "running".
    retry_at = NumberAttribute(null=True)
    retry_error = UnicodeAttribute(null=True)
    continuations = NumberAttribute(default=0)  # times it saved and re-enqueued itself (time limit)
    lease_owner = UnicodeAttribute(null=True)  # the invocation running it now
    lease_until = NumberAttribute(null=True)

    by_owner = ByOwner()


@register
class PartRecord(Model):
    """One output object written under the import's prefix: makes the manifest without reading S3."""

    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # JOB#{job id}
    sk = UnicodeAttribute(range_key=True)  # PART#{entity}#{page}
    key = UnicodeAttribute()  # relative to the import's prefix
    entity = UnicodeAttribute()
    page = NumberAttribute()
    items = NumberAttribute()  # lines (entities) in the object
    size = NumberAttribute()  # bytes
    sha256 = UnicodeAttribute()


PARTS_ON_JOB = 200  # ~20 KB of part entries on the job item at most


@register
class PartsChunkRecord(Model):
    """A job's part entries moved off the job item (only for imports of more than PARTS_ON_JOB pages)."""

    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # JOB#{job id}
    sk = UnicodeAttribute(range_key=True)  # PARTS#{chunk}
    parts = JSONAttribute(default=list)


PEOPLE_ON_JOB = 200  # ~40 KB of people records on the job item at most


@register
class PeopleChunkRecord(Model):
    """People an import met, moved off the job item (only for repositories naming more than PEOPLE_ON_JOB)."""

    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # JOB#{job id}
    sk = UnicodeAttribute(range_key=True)  # PEOPLE#{chunk}
    people = JSONAttribute(default=dict)


@register
class RepoJobRecord(Model):
    """Created with a conditional put: two concurrent requests for one repository make one job."""

    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # REPOJOB#{provider}#{repository id}
    sk = UnicodeAttribute(range_key=True, default=REPOJOB_SK)
    job_id = UnicodeAttribute()
    updated_at = UnicodeAttribute(default=iso)


@register
class KickoffRecord(Model):
    """Written once SQS took every message of one request's new jobs (one write, not one per job)."""

    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # KICKOFF#{kickoff id}
    sk = UnicodeAttribute(range_key=True, default=KICKOFF_SK)
    kickoff_id = UnicodeAttribute()
    sent_at = NumberAttribute()  # epoch


@register
class ProjectRecord(Model):
    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # PROJECT#{provider}#{repository id}
    sk = UnicodeAttribute(range_key=True, default=PROJECT_SK)
    provider_id = UnicodeAttribute()
    repository_id = UnicodeAttribute()
    repository_full_name = UnicodeAttribute()
    latest_import_id = UnicodeAttribute(null=True)
    latest_import_at = UnicodeAttribute(null=True)
    snapshot_prefix = UnicodeAttribute(null=True)  # s3 key prefix of the latest snapshot
    subscription_id = UnicodeAttribute(null=True)
    webhook = UnicodeAttribute(null=True)  # the latest import's webhook status (installed | manual_required | failed)
    # Kept current by the event publisher (names fixed by bitbridge.webhooks.project_state):
    default_branch = UnicodeAttribute(null=True)
    default_branch_head = UnicodeAttribute(null=True)
    default_branch_head_at = UnicodeAttribute(null=True)
    last_push_at = UnicodeAttribute(null=True)
    last_push_event_id = UnicodeAttribute(null=True)
    open_pull_request_ids = NumberSetAttribute(null=True)
    # Written by the publisher (bitbridge.store.webhook_state.record_recent_event) with plain boto3:
    # event id -> {id, type, repository, actor, occurred_at, summary}; read by bitbridge.imports.activity.
    recent_events = MapAttribute(null=True)  # type: ignore[var-annotated]
