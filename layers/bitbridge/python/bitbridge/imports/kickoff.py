"""Kickoff: a request for repositories becomes import jobs (access checked first, all or nothing) and messages.

Time limit: the access checks' calls are reserved from the person's rate-limit budget at once, before any
is made, waiting INTERACTIVE_WAIT_SECONDS at most (bitbridge.budget): a request the budget cannot serve now
is answered 429 `rate_limited` with `retry_after` and starts nothing, so no request waits out an hour.

Idempotency: the REPOJOB item names the repository's import. It is created with a conditional put (or
moved from one finished job to a new one with a conditional update), so two concurrent requests for the
same repository make one job; the loser deletes its draft and returns the winner's. A repository whose
import is active or completed gets that job back unless `reimport` is asked; a failed or cancelled
import is replaced by a new job. `reimport` never starts a second import beside an active one.

No lost job: a job is written before its message is sent, so a kickoff that dies between the two (its
Lambda timed out) leaves it queued with no message. A send is recorded once SQS took it: one KICKOFF item
per request (its jobs carry its id), or `enqueued_at` on a job sent on its own. Asking for the
repository again finds the job queued with neither, and sends it.

Economy (a request's repositories are settled within the kickoff's 10 s Timeout): pointers, jobs and
KICKOFF items are read with BatchGetItem (not one GetItem each), new jobs written WRITE_THREADS at once,
messages sent ten per SendMessageBatch and recorded with one write per request, the admin rule read once.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bitbridge import providers
from bitbridge.accounts import is_admin
from bitbridge.aws import client
from bitbridge.bitbucket import repos
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.calls import INTERACTIVE, REPOSITORIES, Caller, Patience
from bitbridge.config import settings
from bitbridge.imports.jobs import ImportRequestError, batch_get, get_item, load
from bitbridge.imports.options import defaults, parts
from bitbridge.imports.queries import view_for
from bitbridge.store.base import condition_failed
from bitbridge.store.imports import (
    ACTIVE_STATES,
    COMPLETED,
    JOB_SK,
    KICKOFF_SK,
    QUEUED,
    REPOJOB_SK,
    JobRecord,
    KickoffRecord,
    RepoJobRecord,
    job_pk,
    kickoff_pk,
    repojob_pk,
)
from bitbridge.timestamps import iso, iso_ms

# What one kickoff (10 s Timeout) settles with room to spare on the local stack while the worker imports at
# full concurrency on a shared 2-core machine (25 took 4-8 s there, 50 took 6-10+ s): larger imports are
# sent as several requests.
MAX_REPOSITORIES_PER_REQUEST = 20
ACCESS_CHECK_THREADS = 8  # Bitbucket calls at once (one user's token)
# DynamoDB writes at once: a request's job writes are latency-bound, and the kickoff has 10 s for 100.
WRITE_THREADS = 25
SEND_BATCH = 10  # SQS SendMessageBatch's most entries per call
# A job still queued this long after its message was confirmed sent lost it (a queue backlog drains far
# sooner): asking for the repository again sends another.
RESEND_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class Checked:
    full_name: str
    repo: repos.Repo | None = None
    raw: dict[str, Any] | None = None
    calls: int = 0
    error: BitbucketError | None = None


@dataclass(frozen=True)
class Settled:
    """A repository's import job after a request: made by it (`created`), or found; `send` when the job
    needs a message (new, or queued with no message confirmed sent)."""

    job: JobRecord
    created: bool
    send: bool


def parse_request(body: Any) -> tuple[str, list[str], bool]:
    """(provider id, repository full names, reimport) from a POST /api/imports body."""
    if not isinstance(body, dict):
        raise ImportRequestError("The body must be a JSON object.")
    provider_id = body.get("provider")
    names = body.get("repositories")
    if not isinstance(provider_id, str) or not provider_id:
        raise ImportRequestError("`provider` (a provider id) is required.")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise ImportRequestError("`repositories` must list at least one repository full name (owner/slug).")
    if len(names) > MAX_REPOSITORIES_PER_REQUEST:
        raise ImportRequestError(
            f"At most {MAX_REPOSITORIES_PER_REQUEST} repositories per request ({len(names)} given): "
            "send the rest in further requests.",
            limit=MAX_REPOSITORIES_PER_REQUEST,
        )
    cleaned: list[str] = []
    for name in names:
        full_name = name.get("full_name") if isinstance(name, dict) else name
        try:
            owner, slug = repos.split_full_name(str(full_name or ""))
        except ValueError as exc:
            raise ImportRequestError(str(exc)) from None
        if f"{owner}/{slug}" not in cleaned:
            cleaned.append(f"{owner}/{slug}")
    if not isinstance(body.get("reimport", False), bool):
        raise ImportRequestError("`reimport` must be true or false.")
    parts(body)  # `include` / `exclude` checked with the rest: a bad one starts nothing
    return provider_id, cleaned, bool(body.get("reimport", False))


def start(
    user_id: str,
    provider_id: str,
    full_names: list[str],
    *,
    reimport: bool = False,
    hook_base_url: str = "",
    wanted_parts: dict[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """Check access to every repository first (all or nothing), then make or find one job each
    (`wanted_parts`: `parts(body)`, the optional parts a new job copies; default the defaults)."""
    provider = providers.get_provider(provider_id)
    if not provider.imports:
        raise ImportRequestError(f"Imports are turned off for provider {provider_id}.", code="imports_disabled")

    shared = Caller(user_id, provider, priority=INTERACTIVE, patience=Patience(transient_retries=1))
    shared.prime()  # one token read for every check
    # Every check's call from the person's budget at once, waiting a few seconds at most: without room the
    # answer is 429 rate_limited with retry_after and nothing is started (the kickoff fits its time limit).
    shared.reserve(len(full_names), REPOSITORIES)

    def check(full_name: str) -> Checked:
        caller = shared.fork()
        try:
            repo, raw = providers.bitbucket(provider).repository(caller.fetch, caller.api, full_name)
        except BitbucketError as exc:
            if exc.permanent and exc.status in (403, 404):
                return Checked(full_name, calls=caller.calls, error=exc)
            raise  # 401 (reauth), 429 and Bitbucket outages answer the whole request
        return Checked(full_name, repo, raw, caller.calls)

    with ThreadPoolExecutor(max_workers=min(ACCESS_CHECK_THREADS, len(full_names))) as pool:
        checked = list(pool.map(check, full_names))
    refused = [c for c in checked if c.error is not None]
    if refused:
        missing = any(c.error and c.error.status == 404 for c in refused)
        raise ImportRequestError(
            "You cannot import some of these repositories (not found, or no access); nothing was started.",
            code="repositories_not_found" if missing else "repositories_forbidden",
            repositories=[{"repository": c.full_name, "status": c.error.status if c.error else None} for c in refused],
        )
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(checked))) as pool:
        kickoff_id = uuid.uuid4().hex
        wanted = [Wanted(c.repo, c.raw, c.calls) for c in checked if c.repo is not None and c.raw is not None]
        settled = settle(
            user_id,
            provider,
            wanted,
            kickoff_id=kickoff_id,
            reimport=reimport,
            hook_base_url=hook_base_url,
            pool=pool,
            wanted_parts=wanted_parts,
        )
        enqueue_all([s.job for s in settled if s.send], kickoff_id=kickoff_id, pool=pool)
    admin = is_admin(user_id)  # once per request, not once per job
    return [view_for(s.job, user_id, admin=admin) | {"created": s.created} for s in settled]


@dataclass(frozen=True)
class Wanted:
    """A repository to import, as its access check read it (`calls`: the Bitbucket calls that took)."""

    repo: repos.Repo
    raw: dict[str, Any]
    calls: int = 0


def settle(
    user_id: str,
    provider: Any,
    wanted: list[Wanted],
    *,
    kickoff_id: str,
    reimport: bool = False,
    hook_base_url: str = "",
    pool: ThreadPoolExecutor | None = None,
    wanted_parts: dict[str, bool] | None = None,
) -> list[Settled]:
    """Each repository's import job, in order: the one it has (active, or completed unless `reimport`), or
    a new one. Reads are batched (pointers, their jobs, their requests' KICKOFF items); each new job is
    written and claimed on `pool`, and a repository a concurrent request claimed first is read again
    (`ensure_job`). Sending the messages is the caller's."""
    keys = [repojob_pk(provider.provider_id, w.repo.id) for w in wanted]
    pointers = {p.pk: p for p in batch_get(RepoJobRecord, [(k, REPOJOB_SK) for k in dict.fromkeys(keys)])}
    current = {j.job_id: j for j in batch_get(JobRecord, [(job_pk(p.job_id), JOB_SK) for p in pointers.values()])}
    sent = _kickoffs_sent([j for j in current.values() if j.state == QUEUED])
    out: list[Settled | None] = []
    new: list[tuple[int, RepoJobRecord | None, JobRecord]] = []
    for i, (w, key) in enumerate(zip(wanted, keys, strict=True)):
        pointer = pointers.get(key)
        existing = current.get(pointer.job_id) if pointer else None
        if existing is not None and _reusable(existing, reimport):
            out.append(Settled(existing, created=False, send=_needs_message(existing, sent)))
        else:
            out.append(None)
            job = _draft(user_id, provider, w, kickoff_id, base=hook_base_url, wanted_parts=wanted_parts)
            new.append((i, pointer, job))
    run = pool.map if pool else map
    for _ in run(lambda s: _note_requester(s.job, user_id), [s for s in out if s is not None]):
        pass

    def write(entry: tuple[int, RepoJobRecord | None, JobRecord]) -> tuple[int, Settled]:
        i, pointer, job = entry
        try:
            _create(pointer, job)
            return i, Settled(job, created=True, send=True)
        except Exception as exc:
            if not condition_failed(exc):
                raise
        # A concurrent request claimed the repository first: read what it made.
        return i, ensure_job(
            user_id, provider, wanted[i], kickoff_id, reimport=reimport, base=hook_base_url, wanted_parts=wanted_parts
        )

    for i, settled in run(write, new):
        out[i] = settled
    return [s for s in out if s is not None]


def ensure_job(
    user_id: str,
    provider: Any,
    wanted: Wanted,
    kickoff_id: str,
    *,
    reimport: bool = False,
    base: str = "",
    wanted_parts: dict[str, bool] | None = None,
) -> Settled:
    """One repository's import job, read and settled on its own (after a lost race: re-read until settled)."""
    key = repojob_pk(provider.provider_id, wanted.repo.id)
    for _ in range(8):
        pointer = get_item(RepoJobRecord, key, REPOJOB_SK)
        existing = load(pointer.job_id) if pointer else None
        if existing is not None and _reusable(existing, reimport):
            _note_requester(existing, user_id)
            return Settled(existing, created=False, send=_needs_message(existing, _kickoffs_sent([existing])))
        job = _draft(user_id, provider, wanted, kickoff_id, base=base, wanted_parts=wanted_parts)
        try:
            _create(pointer, job)
        except Exception as exc:
            if condition_failed(exc):
                continue  # a concurrent request made the job: read it and return it
            raise
        return Settled(job, created=True, send=True)
    raise RuntimeError("could not settle the repository's import job")


def _reusable(job: JobRecord, reimport: bool) -> bool:
    """An active import is always the repository's; a completed one unless `reimport` is asked."""
    return job.state in ACTIVE_STATES or (job.state == COMPLETED and not reimport)


def _draft(
    user_id: str, provider: Any, w: Wanted, kickoff_id: str, *, base: str, wanted_parts: dict[str, bool] | None = None
) -> JobRecord:
    job_id = uuid.uuid4().hex
    return JobRecord(
        job_pk(job_id),
        JOB_SK,
        job_id=job_id,
        owner_id=user_id,
        # Milliseconds: the user's list is ordered (and paged) by this, and jobs come in bursts.
        created_at=iso_ms(),
        provider_id=provider.provider_id,
        flavor=provider.flavor,
        repository_id=w.repo.id,
        repository_full_name=w.repo.full_name,
        repository=w.raw,
        # Where the webhook step points the hook when the stack has no PublicBaseUrl: the
        # URL this request came in on (the worker has no request of its own). The optional parts it copies
        # (`imports.options`): each named, true or false. The deploy-key step runs for every new job (it does
        # nothing where the provider has no key).
        options={"hook_base_url": base, "deploy_key": True, **(wanted_parts or defaults())},
        api_calls=w.calls,
        kickoff_id=kickoff_id,
    )


def _create(pointer: RepoJobRecord | None, job: JobRecord) -> None:
    """Write a new job, then claim its repository's pointer: created only where none exists, or moved only
    from the finished job it named when read. A lost claim deletes the job and raises the condition
    failure. (Not one TransactWriteItems: moto copies the whole table per transaction, which the local
    stack cannot afford while the worker writes.)"""
    job.save()
    key = repojob_pk(job.provider_id, job.repository_id)
    try:
        if pointer is None:
            RepoJobRecord(key, REPOJOB_SK, job_id=job.job_id).save(condition=RepoJobRecord.pk.does_not_exist())
        else:
            pointer.update(
                actions=[RepoJobRecord.job_id.set(job.job_id), RepoJobRecord.updated_at.set(iso())],
                condition=RepoJobRecord.job_id == pointer.job_id,
            )
    except Exception:
        job.delete()
        raise


def _note_requester(job: JobRecord, user_id: str) -> None:
    if user_id != job.owner_id and user_id not in (job.requested_by or set()):
        job.update(actions=[JobRecord.requested_by.add({user_id})])


def _kickoffs_sent(queued: list[JobRecord]) -> dict[str, float]:
    """kickoff id -> when its messages were sent, for the requests that made these queued jobs."""
    ids = {j.kickoff_id for j in queued if j.kickoff_id and j.enqueued_at is None}
    found = batch_get(KickoffRecord, [(kickoff_pk(i), KICKOFF_SK) for i in ids])
    return {k.kickoff_id: float(k.sent_at) for k in found}


def _needs_message(job: JobRecord, sent: dict[str, float]) -> bool:
    """Queued with no message known sent (`enqueued_at`, or its request's KICKOFF item; `sent`), or one
    sent long ago. Sending another is safe: the worker's lease runs a job once however many messages
    name it, and drops those for finished jobs."""
    if job.state != QUEUED:
        return False
    at = job.enqueued_at if job.enqueued_at is not None else sent.get(job.kickoff_id or "")
    return at is None or time.time() - float(at) > RESEND_AFTER_SECONDS


def enqueue_all(
    to_send: list[JobRecord], *, kickoff_id: str | None = None, pool: ThreadPoolExecutor | None = None
) -> None:
    """Send the jobs' messages, SEND_BATCH per SendMessageBatch, then record that they were sent: one
    KICKOFF item for the jobs `kickoff_id` made, `enqueued_at` on each other job (sent again, or retried).
    If SQS refuses any entry this raises, and the request's jobs stay unrecorded: asking for their
    repositories again sends them again (a duplicate is harmless, a missing message is not)."""
    to_send = list({j.job_id: j for j in to_send}.values())  # two names for one repository: one message
    sent: list[JobRecord] = []
    refused: list[str] = []

    def send(chunk: list[JobRecord]) -> tuple[list[JobRecord], list[str]]:
        answer = client("sqs").send_message_batch(
            QueueUrl=settings().import_queue_url,
            Entries=[{"Id": str(n), "MessageBody": json.dumps({"job_id": j.job_id})} for n, j in enumerate(chunk)],
        )
        failed = [f"{e.get('Code')}: {e.get('Message')}" for e in answer.get("Failed", [])]
        return [chunk[int(e["Id"])] for e in answer.get("Successful", [])], failed

    chunks = [to_send[i : i + SEND_BATCH] for i in range(0, len(to_send), SEND_BATCH)]
    for ok, failed in (pool.map if pool else map)(send, chunks):  # the batches at once: fewer round trips in a row
        sent += ok
        refused += failed
    now = int(time.time())
    if kickoff_id and not refused and any(j.kickoff_id == kickoff_id for j in sent):
        KickoffRecord(kickoff_pk(kickoff_id), KICKOFF_SK, kickoff_id=kickoff_id, sent_at=now).save()
    others = [j for j in sent if j.kickoff_id != kickoff_id or not kickoff_id]
    for _ in (pool.map if pool else map)(lambda job: _mark_sent(job, now), others):
        pass
    if refused:
        raise RuntimeError(f"SQS refused {len(refused)} of {len(to_send)} import messages: {refused[0]}")


def _mark_sent(job: JobRecord, at: int) -> None:
    """`enqueued_at` on a job still queued (one the worker has taken needs no record of its message)."""
    try:
        job.update(actions=[JobRecord.enqueued_at.set(at)], condition=JobRecord.state == QUEUED)
    except Exception as exc:
        if not condition_failed(exc):
            raise


def enqueue(job: JobRecord, delay_seconds: int = 0) -> None:
    """One message naming the job (the worker's deferrals: DelaySeconds up to SQS's 900)."""
    client("sqs").send_message(
        QueueUrl=settings().import_queue_url,
        MessageBody=json.dumps({"job_id": job.job_id}),
        DelaySeconds=max(0, min(900, int(delay_seconds))),
    )
