"""The import worker: one SQS message names one job; the job runs its steps from its checkpoint.

Steps: repository -> branches -> tags -> pull_requests -> pull_request_details (review depth asked for) ->
issues (Cloud, tracker on) -> issue_details (Cloud issue comments asked for) -> webhook -> deploy_key (new jobs) ->
git (unless the request left it out) -> manifest. The git step (bitbridge.imports.gitdata) is one unit: it fetches,
checks and publishes the repository's bundle, and starts in a fresh invocation when less than GIT_RESERVE_MS is left.
A unit of work is one page: fetch it, write it to S3 (one object per page, canonical bytes), then record the
part (key, size, sha256) with the cursor and counts in one conditional write on the job. A crash anywhere
redoes at most the page in hand and rewrites the same object, so the output equals a clean run's.

Review depth (`bitbridge.bitbucket.review`): the details steps read each pull request's (issue's) comments,
activity and commits, page by page, the parents read back from the pages the import wrote (one GetObject per
parent page per invocation); a page of theirs is a unit like any other, written as `{entity}/page-NNNNN.jsonl`
numbered in the order written. Review states come off the pull request pages themselves. Every page's people
are kept on the job (moved off it past PEOPLE_ON_JOB) and written once, as people.jsonl, with the manifest.

Economy (each call is latency and money, per repository): the lease write answers the job (no read first);
the provider record and the decrypted token serve every step of an invocation, the webhook step's too;
steps that read no page (repository, webhook) are saved with the next write; the manifest is built from
the part entries the job holds; import.progress goes out at most every PROGRESS_EVERY_SECONDS. Every AWS
call (by service and operation) and every Bitbucket call is counted (bitbridge.metering) into the job and
the manifest.

Waiting never holds a Lambda or burns the message's receive count: to wait (a 429, a Bitbucket outage,
the time limit) the job saves its place and sends itself a new message with DelaySeconds (SQS caps it at
900 s; a longer Retry-After is waited in hops, `not_before` remembering the end), and the current message
is acknowledged. Only poison - an unreadable message, or an unexpected exception - is reported as a batch
item failure, so it is retried after the visibility timeout and, after the redrive policy's
maxReceiveCount, lands in the dead-letter queue (whose alarm fires); the job is marked failed on the last
receive. Writes are fenced on a lease (`lease_owner`) and on the state, so a duplicate message cannot run
a job twice at once and a cancel stops the worker at its next checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from bitbridge import deadlines, metering, providers, tokens
from bitbridge.aws import client
from bitbridge.bitbucket import repos, review
from bitbridge.bitbucket.http import BitbucketError, RateLimited
from bitbridge.budget import IMPORT, OverBudget
from bitbridge.calls import Caller, backoff
from bitbridge.config import settings
from bitbridge.imports import bundles, changes, gitdata, jobs, kickoff, notify, output
from bitbridge.store import subscriptions as _metered  # noqa: F401 - the webhook step's model, metered from the first run
from bitbridge.store.base import condition_failed, watch_models
from bitbridge.store.imports import (
    ACTIVE_STATES,
    COMPLETED,
    HOOK_FAILED,
    HOOK_INSTALLED,
    HOOK_MANUAL,
    JOB_SK,
    MAX_TRANSIENT_DEFERRALS,
    PARTS_ON_JOB,
    PEOPLE_ON_JOB,
    PROJECT_SK,
    RUNNING,
    TERMINAL_STATES,
    WAITING,
    WAITING_BUDGET,
    JobRecord,
    PartsChunkRecord,
    PeopleChunkRecord,
    ProjectRecord,
    job_pk,
    parts_chunk_sk,
    parts_chunks_of,
    people_chunk_sk,
    people_chunks_of,
    project_pk,
)
from bitbridge.timestamps import iso
from bitbridge.webhooks import baseline, deploy_keys, subscriptions

logger = Logger(child=True)

MAX_RECEIVES = 5  # template.yaml ImportQueue RedrivePolicy.maxReceiveCount (a unit test keeps them equal)
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit
SAFETY_MS = 25_000  # stop taking pages when less than this is left (a page may take a read timeout)
LEASE_GRACE_SECONDS = 60
RATE_LIMIT_BASE_SECONDS = 30  # Cloud's 429 has no Retry-After: 30 s, 60 s, ... capped at 15 min
PROGRESS_EVERY_SECONDS = 30  # import.progress at most this often while a job runs (and when it waits)
GIT_RESERVE_MS = 150_000  # the git step starts with at least this left (else in a fresh invocation)
GIT_BUSY_SECONDS = 20  # the git slot stayed taken for as long as this job could wait: come back after this
LISTED_REFS = "listed_refs"  # facts: the digest of the branches and tags listed (bundles.fold_listed)
GIT_TIME_ATTEMPTS = 2  # fresh invocations whose whole time a fetch may take before the repository is too large
BUDGET_LEAD_SECONDS = 1.0  # back this much before its slot in the budget (waited in the Lambda)


class Busy(Exception):
    """Another invocation holds the job's lease (a duplicate message): look again later."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"job busy for {seconds} s")
        self.seconds = seconds


class Stopped(Exception):
    """The job was cancelled, or its lease lost, under our feet: stop without writing."""


class StorageFailed(Exception):
    """AWS failed while the git step stored its bundle (an outage, throttling): the step is retried like a
    Bitbucket outage, from the start (what was published is adopted, what was half-written replaced)."""


class Later(Exception):
    """The step cannot run in this invocation: save and continue in a new one after `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"continue in {seconds} s")
        self.seconds = seconds


# ------------------------------------------------------------------------------------------------ SQS batch


def handle_batch(records: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """Run the batch's jobs side by side; report only poison and busy messages as failures."""
    if not records:
        return {"batchItemFailures": []}
    with ThreadPoolExecutor(max_workers=len(records)) as pool:
        outcomes = list(pool.map(lambda r: _handle_record(r, context), records))
    failed = [r["messageId"] for r, ok in zip(records, outcomes, strict=True) if not ok]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def _handle_record(record: dict[str, Any], context: Any) -> bool:
    try:
        job_id = str(json.loads(record["body"])["job_id"])
    except (ValueError, KeyError, TypeError):
        logger.error("unreadable import message", extra={"message_id": record.get("messageId")})
        return False
    try:
        with deadlines.within(context):  # each job's thread: a token refresh never outlives the invocation
            run(job_id, context)
        return True
    except Busy as busy:
        client("sqs").change_message_visibility(
            QueueUrl=settings().import_queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=busy.seconds
        )
        return False
    except Exception:
        logger.exception("import worker failed", extra={"import_id": job_id})
        receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
        if receives >= MAX_RECEIVES:
            _fail_after_poison(job_id)
        return False


def _fail_after_poison(job_id: str) -> None:
    job = jobs.load(job_id)
    if job is None or job.state in TERMINAL_STATES:
        return
    changes.fail(job, "internal", "The import worker failed repeatedly; the message went to the dead-letter queue.")


# ------------------------------------------------------------------------------------------------ one job


def _remaining_ms(context: Any) -> int:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return int(getter()) if getter else 15 * 60 * 1000


def run(job_id: str, context: Any) -> None:
    with metering.metered() as meter:
        watch_models(metering.watch)
        taken = _take_lease(job_id, uuid.uuid4().hex, context)
        if taken is None:
            return
        job, run_id, first = taken
        if first:
            notify.publish(job, "import.started")
        try:
            runner = Run(job, run_id, context, meter)
        except providers.UnknownProvider:
            changes.fail(job, "not_found", f"The provider {job.provider_id} is no longer registered.")
            return
        runner.execute()


def _take_lease(job_id: str, run_id: str, context: Any) -> tuple[JobRecord, str, bool] | None:
    """Take the job's lease with one conditional write that also reads the job (UpdateItem answers the
    item). Only when its condition fails is the job read, to say why: unknown, finished (a duplicate
    message, or cancelled), waiting longer than one SQS delay (`not_before`: hop again), or busy."""
    now = int(time.time())
    started = iso()
    job = JobRecord(job_pk(job_id), JOB_SK)
    try:
        job.update(
            actions=[
                JobRecord.state.set(RUNNING),
                JobRecord.lease_owner.set(run_id),
                JobRecord.lease_until.set(now + _remaining_ms(context) // 1000 + LEASE_GRACE_SECONDS),
                JobRecord.not_before.remove(),
                JobRecord.updated_at.set(started),
                JobRecord.started_at.set(JobRecord.started_at | started),
            ],
            condition=JobRecord.state.is_in(*ACTIVE_STATES)
            & (JobRecord.lease_until.does_not_exist() | (JobRecord.lease_until < now))
            & (JobRecord.not_before.does_not_exist() | (JobRecord.not_before <= now + 1)),
        )
        # started_at is set once: equal to ours, this is the job's first run (a lease is held >= 60 s,
        # so no earlier run can have started within the same second).
        return job, run_id, job.started_at == started
    except Exception as exc:
        if not condition_failed(exc):
            raise
    current = jobs.load(job_id)
    if current is None:
        logger.warning("import message for an unknown job", extra={"import_id": job_id})
        return None
    if current.state in TERMINAL_STATES:
        return None  # cancelled, or a duplicate message for a finished job
    if current.not_before and current.not_before > now + 1:
        kickoff.enqueue(current, math.ceil(min(MAX_DELAY_SECONDS, current.not_before - now)))  # a longer wait, in hops
        return None
    raise Busy(max(1, min(MAX_DELAY_SECONDS, int((current.lease_until or now) - now) + 1)))


def _advance(read: int, reads: int, item: int, items: int, page: int) -> tuple[int, int, int]:
    """The place after a finished read: the next read of the same parent, else the first read of the next
    parent, else the first parent of the next page. Returns (read, item, page)."""
    if read + 1 < reads:
        return read + 1, item, page
    if item + 1 < items:
        return 0, item + 1, page
    return 0, 0, page + 1


def _file_entry(part: list[Any]) -> dict[str, Any]:
    key, entity, page, count, size, sha256 = part
    return {"key": key, "entity": entity, "page": int(page), "count": int(count), "bytes": int(size), "sha256": sha256}


class Run:
    """One invocation's work on one job, under its lease.

    The run holds the job's progress (step, cursor, counts, facts, parts written) in `self.job` and writes
    it with each page's checkpoint, in one conditional write. Steps that call Bitbucket for no page - the
    repository (read at kickoff) and the webhook - are saved with the next write: a crash before it redoes
    them, rewriting identical bytes (repository.json) or finding the hook it installed (idempotent).
    """

    def __init__(self, job: JobRecord, run_id: str, context: Any, meter: metering.Meter) -> None:
        self.job = job
        self.run_id = run_id
        self.context = context
        self.meter = meter
        # What earlier invocations counted (this one's lease write is already in the meter).
        self.aws_base, self.api_base = dict(job.aws_calls or {}), int(job.api_calls or 0)
        self.provider = providers.get_provider(job.provider_id)  # UnknownProvider: see run()
        # Back from a wait for budget: its first grant takes it out of the budget's queue of waiters.
        self.caller = Caller(job.owner_id, self.provider, priority=IMPORT, resuming=bool(job.budget_resume))
        self.base = output.prefix(job.provider_id, job.repository_id, job.job_id)
        self.bitbucket = providers.bitbucket(self.provider)
        self.repo = self.bitbucket.to_repo(job.repository) if job.repository else None
        self.progress_at = time.monotonic()
        self.wanted = review.wanted_entities(dict(job.options or {}))  # nested entities the request asked for
        self._parent_keys: dict[str, list[str]] = {}  # parent entity -> its pages' keys, in order
        self._parents: tuple[str, list[dict[str, Any]]] | None = None  # the parent page in hand (key, values)
        self._people_elsewhere: set[str] | None = None  # ids of the people moved off the job item

    # -- plumbing ---------------------------------------------------------------------------------
    def _fenced(self) -> Any:
        return (JobRecord.lease_owner == self.run_id) & JobRecord.state.is_in(RUNNING)

    def _aws_calls(self, planned: dict[str, int]) -> dict[str, int]:
        """This job's AWS calls: earlier invocations', this one's so far, and `planned` (about to be made)."""
        return metering.added(self.aws_base, self.meter.aws, planned)

    def _save(self, actions: list[Any], planned: dict[str, int] | None = None) -> None:
        """Write the progress held in memory plus `actions`, under the lease, with the calls counted so
        far (`planned`: calls that follow this write and belong to it, e.g. the event it announces)."""
        job = self.job
        # Out of the budget's queue (its first grant is made): no longer coming back from a wait.
        resumed = [JobRecord.budget_resume.remove()] if job.budget_resume and not self.caller.resuming else []
        try:
            job.update(
                actions=[
                    *resumed,
                    JobRecord.step.set(job.step),
                    JobRecord.checkpoint.set(job.checkpoint or {}),
                    JobRecord.counts.set(job.counts or {}),
                    JobRecord.facts.set(job.facts or {}),
                    JobRecord.parts.set(job.parts or []),
                    JobRecord.parts_chunks.set(int(job.parts_chunks or 0)),
                    JobRecord.people.set(job.people or {}),
                    JobRecord.people_chunks.set(int(job.people_chunks or 0)),
                    *([JobRecord.repository.set(job.repository)] if job.repository is not None else []),
                    *([JobRecord.webhook.set(job.webhook)] if job.webhook is not None else []),
                    *([JobRecord.deploy_key.set(job.deploy_key)] if job.deploy_key is not None else []),
                    *([JobRecord.git.set(job.git)] if job.git is not None else []),
                    *actions,
                    JobRecord.api_calls.set(self.api_base + self.meter.bitbucket),
                    JobRecord.aws_calls.set(self._aws_calls(metering.added({"dynamodb:UpdateItem": 1}, planned or {}))),
                    JobRecord.updated_at.set(iso()),
                ],
                condition=self._fenced(),
            )
        except Exception as exc:
            if condition_failed(exc):
                raise Stopped() from None  # cancelled, or another run took over after our lease expired
            raise

    def _release(self) -> list[Any]:
        return [JobRecord.lease_owner.remove(), JobRecord.lease_until.remove()]

    def _steps(self) -> list[str]:
        assert self.repo is not None
        with_reads = {read.parent for read in self._reads()}
        steps = ["repository"]
        for entity in self.bitbucket.entities(self.repo):
            steps.append(entity)
            if entity in with_reads:  # its details right after it: pull_request_details, issue_details
                steps += [step for step, parent in review.NESTED_STEPS.items() if parent == entity]
        options = self.job.options or {}
        optional = [step for step in ("deploy_key", "git") if options.get(step)]  # jobs made before them: neither
        return [*steps, "webhook", *optional, "manifest"]

    def _reads(self) -> list[review.Read]:
        """The nested reads the request asked for (none: the import is as it was without review depth)."""
        assert self.repo is not None
        return self.bitbucket.review_reads(self.repo, self.wanted) if self.wanted else []

    def _nested_entities(self) -> list[str]:
        """The nested entities this import writes (counted in the manifest even when empty)."""
        assert self.repo is not None
        entities = self.bitbucket.entities(self.repo)
        found = {e for read in self._reads() for e in read.entities}
        if "pull_requests" in entities:
            found |= set(self.bitbucket.derived("pull_requests", [], self.wanted))
        return [e for e in review.OPTION_OF if e in found]

    def _next_step(self, step: str) -> str:
        steps = self._steps()
        return steps[steps.index(step) + 1] if step in steps[:-1] else "done"

    def _progress_due(self) -> bool:
        """import.progress at most every PROGRESS_EVERY_SECONDS of work (started and completed always)."""
        if time.monotonic() - self.progress_at < PROGRESS_EVERY_SECONDS:
            return False
        self.progress_at = time.monotonic()
        return True

    # -- the loop ---------------------------------------------------------------------------------
    def execute(self) -> None:
        try:
            self._work()
        except Stopped:
            logger.info("import stopped (cancelled or taken over)", extra=self._log())

    def _work(self) -> None:
        did_work = False
        try:
            while self.job.step != "done":
                reserve = GIT_RESERVE_MS if self.job.step == "git" else SAFETY_MS
                if did_work and _remaining_ms(self.context) < reserve:
                    self._continue_later()
                    return
                self._unit()
                did_work = True
        except Later as later:
            self._continue_later(later.seconds)
        except StorageFailed as exc:
            self._transient(str(exc), who="AWS", reason="internal")
        except OverBudget as exc:
            self._wait_budget(exc.retry_at)
        except RateLimited as exc:
            self._wait_rate_limit(exc.retry_after)
        except tokens.ReauthRequired:
            self._fail("reauth_required", "The user's Bitbucket connection must be re-authorised.")
        except tokens.NotConnected:
            self._fail("reauth_required", "The user is no longer connected to this provider.")
        except tokens.TokenUnavailable as exc:
            self._transient(str(exc))
        except BitbucketError as exc:
            if exc.permanent:
                reason = {404: "not_found", 403: "forbidden"}.get(exc.status or 0, "bitbucket_error")
                self._fail(reason, str(exc))
            else:
                self._transient(str(exc))

    def _unit(self) -> None:
        step = self.job.step
        if step == "repository":
            self._repository()
        elif step in repos.ENTITIES:
            self._entity_page(step)
        elif step in review.NESTED_STEPS:
            self._nested_page(step)
        elif step == "webhook":
            self._webhook()
        elif step == "deploy_key":
            self._deploy_key()
        elif step == "git":
            self._git()
        elif step == "manifest":
            self._manifest()
        else:
            raise RuntimeError(f"unknown import step {step!r}")

    # -- steps ------------------------------------------------------------------------------------
    def _repository(self) -> None:
        """repository.json; saved with the first page's write (no Bitbucket call when read at kickoff)."""
        raw = self.job.repository
        if raw is None:
            self.repo, raw = self.bitbucket.repository(
                self.caller.fetch, self.caller.api, self.job.repository_full_name
            )
            self.job.repository = raw
        assert self.repo is not None
        self._record_part("repository", 0, output.write_json(self.base, "repository.json", raw))
        self.job.facts = dict(self.job.facts or {}) | {"default_branch": self.repo.default_branch}
        self.job.step, self.job.checkpoint = self._next_step("repository"), {}

    def _entity_page(self, entity: str) -> None:
        checkpoint = dict(self.job.checkpoint or {})
        page_no = int(checkpoint.get("page", 1))
        page = self.bitbucket.page(
            self.caller.fetch, self.caller.api, self.job.repository_full_name, entity, checkpoint.get("cursor")
        )
        if page.values:
            self._record_part(entity, page_no, output.write_page(self.base, entity, page_no, page.values))
        # What the import saw is the repository's observed state: the first reconciliation compares with it.
        job = self.job
        job.facts = baseline.record_import_page(
            self.bitbucket, job.provider_id, job.repository_id, entity, page.values, dict(job.facts or {})
        )
        counts = dict(self.job.counts or {})
        counts[entity] = int(counts.get(entity, 0)) + len(page.values)
        # Nested entities a page holds itself (review states): written under the same page number.
        for derived, lines in self.bitbucket.derived(entity, page.values, self.wanted).items():
            if lines:
                self._record_part(derived, page_no, output.write_page(self.base, derived, page_no, lines))
            counts[derived] = int(counts.get(derived, 0)) + len(lines)
        self._meet(self.bitbucket.people_in(page.values))
        self._move_parts_off_if_long()
        self.job.counts, self.job.facts = counts, self._facts(entity, page.values)
        if page.next:
            self.job.checkpoint = {"cursor": page.next, "page": page_no + 1}
        else:
            self.job.step, self.job.checkpoint = self._next_step(entity), {}
        progress = self._progress_due()
        self._save([JobRecord.transient_failures.set(0)], {"events:PutEvents": 1} if progress else None)
        if progress:
            notify.publish(self.job, "import.progress")

    def _nested_page(self, step: str) -> None:
        """One page of one nested read of one parent (a pull request or an issue), then the checkpoint: which
        parent page, which parent on it, which read, the cursor, and how many pages each entity has written."""
        parent_entity = review.NESTED_STEPS[step]
        reads = [read for read in self._reads() if read.parent == parent_entity]
        keys = self._pages_of(parent_entity)
        checkpoint = dict(self.job.checkpoint or {})
        at_page, at_item, at_read = (int(checkpoint.get(k, 0)) for k in ("parent_page", "item", "read"))
        if not reads or at_page >= len(keys):  # nothing to read: saved with the next step's write
            self.job.step, self.job.checkpoint = self._next_step(step), {}
            return
        parents = self._parent_page(keys[at_page])
        read, parent = reads[at_read], parents[at_item]
        try:
            page = self.bitbucket.review_page(
                self.caller.fetch,
                self.caller.api,
                self.job.repository_full_name,
                read,
                parent,
                checkpoint.get("cursor"),
            )
        except BitbucketError as exc:
            if exc.status != 404:
                raise
            page = review.NestedPage({}, [], None)  # the pull request (issue) is gone since its page was read
        written, counts = dict(checkpoint.get("pages") or {}), dict(self.job.counts or {})
        for entity in read.entities:
            lines = page.lines.get(entity, [])
            if lines:
                number = int(written.get(entity, 0)) + 1
                self._record_part(entity, number, output.write_page(self.base, entity, number, lines))
                written[entity] = number
            counts[entity] = int(counts.get(entity, 0)) + len(lines)
        self._meet(page.people)
        self._move_parts_off_if_long()
        self.job.counts = counts
        cursor = page.next
        if cursor is None:  # this read of this parent is done: the next read, parent, parent page
            at_read, at_item, at_page = _advance(at_read, len(reads), at_item, len(parents), at_page)
        if at_page >= len(keys):
            self.job.step, self.job.checkpoint = self._next_step(step), {}
        else:
            place = {"parent_page": at_page, "item": at_item, "read": at_read, "cursor": cursor}
            self.job.checkpoint = {**place, "pages": written}
        progress = self._progress_due()
        self._save([JobRecord.transient_failures.set(0)], {"events:PutEvents": 1} if progress else None)
        if progress:
            notify.publish(self.job, "import.progress")

    def _pages_of(self, entity: str) -> list[str]:
        """The keys of `entity`'s pages this import wrote, in page order (read once per invocation)."""
        if entity not in self._parent_keys:
            found = sorted((int(p[2]), str(p[0])) for p in self._all_parts() if p[1] == entity)
            self._parent_keys[entity] = [key for _, key in found]
        return self._parent_keys[entity]

    def _parent_page(self, key: str) -> list[dict[str, Any]]:
        if self._parents is None or self._parents[0] != key:
            self._parents = (key, output.read_lines(self.base, key))
        return self._parents[1]

    # -- people -----------------------------------------------------------------------------------
    def _meet(self, found: list[dict[str, Any]]) -> None:
        """Keep the people a page names (saved with its checkpoint); past PEOPLE_ON_JOB the job's move to a
        chunk item first (a crash in between rewrites the same chunk: its number is the saved count)."""
        if self._people_elsewhere is None:
            self._people_elsewhere = {pid for chunk in self._people_chunks() for pid in chunk}
        held = dict(self.job.people or {})
        if review.merge_people(held, [p for p in found if p["id"] not in self._people_elsewhere]):
            self.job.people = held
        if len(held) >= PEOPLE_ON_JOB:
            chunk = int(self.job.people_chunks or 0)
            PeopleChunkRecord(self.job.pk, people_chunk_sk(chunk), people=held).save()
            self._people_elsewhere |= set(held)
            self.job.people, self.job.people_chunks = {}, chunk + 1

    def _people_chunks(self) -> list[dict[str, dict[str, Any]]]:
        """The chunks the saved count says were moved off (a crash may have left the next one written, unsaved)."""
        count = int(self.job.people_chunks or 0)
        if not count:  # only repositories naming more than PEOPLE_ON_JOB people
            return []
        found = PeopleChunkRecord.query(self.job.pk, people_chunks_of(), consistent_read=True)
        return [c.people for c in found if c.sk < people_chunk_sk(count)]

    def _all_people(self) -> list[dict[str, Any]]:
        everyone: dict[str, dict[str, Any]] = {}
        for chunk in self._people_chunks():
            everyone.update(chunk)
        everyone.update(self.job.people or {})
        return [everyone[pid] for pid in sorted(everyone)]

    def _facts(self, entity: str, values: list[dict[str, Any]]) -> dict[str, Any]:
        facts = dict(self.job.facts or {})
        if entity == "branches":
            facts["default_branch"], head = self.bitbucket.default_branch(values, facts.get("default_branch"))
            if head:
                facts["default_branch_head"] = head
        if entity in ("branches", "tags"):  # folded as listed: what the git step's fetch must equal
            kind = "b" if entity == "branches" else "t"
            heads = bundles.heads_of({f"{kind}:{n}": (i, c) for n, i, c in map(self.bitbucket.ref_head, values)})
            facts[LISTED_REFS] = bundles.fold_listed(facts.get(LISTED_REFS), heads)
        elif entity == "pull_requests":
            opened = [int(pr["id"]) for pr in values if repos.pull_request_open(pr)]
            facts["open_pull_request_ids"] = sorted({*facts.get("open_pull_request_ids", []), *opened})
        return facts

    def _webhook(self) -> None:
        """Install bitbridge's hook through the webhooks core (idempotent: a retry finds the same hook),
        with this run's provider record and token; saved with the manifest step's write.
        A user who may not manage hooks does not fail the import: the outcome is `manual_required`, with
        a manual subscription made so that a hook an admin adds by hand is verified (its secret is not
        stored here: the console shows it on request, to whom may see it).
        429 and outages propagate like any page's (wait / retry, then this step runs again)."""
        baseline.finish_import(
            self.job.flavor, self.job.provider_id, self.job.repository_id, self.job.repository, self.job.facts or {}
        )
        base_url = settings().public_base_url or str((self.job.options or {}).get("hook_base_url") or "")
        facts = dict(self.job.facts or {})
        outcome: dict[str, Any]
        if not base_url:
            outcome = {
                "status": HOOK_FAILED,
                "reason": "No public base URL is known: set the stack's PublicBaseUrl parameter and retry.",
            }
        else:
            assert self.repo is not None
            target = subscriptions.Repository(
                self.job.provider_id,
                self.job.repository_id,
                self.repo.owner,
                self.repo.slug,
                self.repo.name,
                self.repo.html_url,
            )
            try:
                installed = subscriptions.install_webhook(self.job.owner_id, target, base_url, caller=self.caller)
                outcome = {"status": HOOK_INSTALLED}
            except subscriptions.HookPermissionDenied:
                installed = subscriptions.install_webhook(
                    self.job.owner_id, target, base_url, manual=True, caller=self.caller
                )
                outcome = {
                    "status": HOOK_MANUAL,
                    "reason": "The connected account may not manage this repository's webhooks (it needs admin "
                    "rights): an admin of the repository adds the hook by hand.",
                    "events": list(installed.events),
                }
            facts["subscription_id"] = installed.subscription.subscription_id
            outcome |= {"subscription_id": installed.subscription.subscription_id, "url": installed.url}
        self.job.webhook, self.job.facts, self.job.step = outcome, facts, self._next_step("webhook")

    def _deploy_key(self) -> None:
        """Add the provider's deploy key to the repository, read-only (bitbridge.webhooks.deploy_keys); saved
        with the next write like the webhook step (a redo finds the key it added)."""
        assert self.repo is not None
        where = deploy_keys.Where(self.repo.owner, self.repo.slug)
        subscription = (self.job.facts or {}).get("subscription_id")
        self.job.deploy_key = deploy_keys.install(self.caller, where, subscription)
        self.job.step = self._next_step("deploy_key")

    def _git(self) -> None:
        """The repository's branches and tags as a verified bundle in the snapshot (bitbridge.imports.gitdata).
        Never fails the import for its size: too large for the function, or too slow to fetch in two fresh
        invocations, the outcome says so and the import completes without it."""
        assert self.repo is not None
        # Another job of this invocation fetching: wait for it while this one would still start with the step's
        # reserve (most git steps take seconds); else continue in a new invocation.
        if not gitdata.SLOT.acquire(timeout=max(0.0, (_remaining_ms(self.context) - GIT_RESERVE_MS) / 1000)):
            raise Later(GIT_BUSY_SECONDS)
        checkpoint = dict(self.job.checkpoint or {})
        target = gitdata.Target(
            self.job.provider_id, self.job.repository_id, self.job.repository_full_name, self.repo.owner, self.repo.slug
        )
        try:
            outcome, written = gitdata.snapshot(
                self.caller,
                self.bitbucket,
                self.provider.web_url,
                target,
                self.base,
                import_id=self.job.job_id,
                owner_id=self.job.owner_id,
                known_size=self.repo.size,
                deadline=gitdata.deadline_for(lambda: _remaining_ms(self.context), SAFETY_MS),
                listed=gitdata.Listing((self.job.facts or {}).get(LISTED_REFS), self._listed_refs),
            )
        except gitdata.OutOfTime:
            attempts = int(checkpoint.get("attempts", 0)) + 1
            if attempts < GIT_TIME_ATTEMPTS:
                self.job.checkpoint = {"attempts": attempts}
                raise Later(0) from None
            outcome, written = gitdata.too_large(None, gitdata.limit_bytes(), timed_out=True), []
        except bundles.Incomplete as exc:  # what arrived was damaged: fetched again, like any failed call
            raise BitbucketError(f"fetching the repository over git: {exc}") from None
        except (ClientError, BotoCoreError) as exc:
            raise StorageFailed(f"storing the git data: {type(exc).__name__}: {str(exc)[:200]}") from None
        except BitbucketError as exc:
            if not exc.permanent or isinstance(exc, RateLimited):
                raise
            outcome, written = {"status": "failed", "reason": f"Bitbucket refused the fetch: {exc}"}, []
        finally:
            gitdata.SLOT.release()
        for page, item in enumerate(written):
            self._record_part("git", page, item)
        self.job.git, self.job.step, self.job.checkpoint = outcome, self._next_step("git"), {}
        self._save([JobRecord.transient_failures.set(0)])

    def _listed_refs(self) -> bundles.Refs:
        """The branches and tags as this import's pages list them, under their git names (read back)."""
        listed: dict[str, tuple[str, str]] = {}
        for kind, entity in (("b", "branches"), ("t", "tags")):
            for key in self._pages_of(entity):
                for value in output.read_lines(self.base, key):
                    name, ident, commit = self.bitbucket.ref_head(value)
                    listed[f"{kind}:{name}"] = (ident, commit)
        return bundles.heads_of(listed)

    def _manifest(self) -> None:
        people = self._all_people()
        self._record_part("people", 0, output.write_lines(self.base, "people.jsonl", people))
        parts = sorted(self._all_parts(), key=lambda p: (p[1] != "repository", p[0]))
        finished = iso()
        assert self.repo is not None
        nested = self._nested_entities()
        self._update_project(finished)
        manifest = {
            "schema_version": "1",
            "import_id": self.job.job_id,
            "provider": {"id": self.job.provider_id, "flavor": self.job.flavor},
            "repository": {"id": self.job.repository_id, "full_name": self.job.repository_full_name},
            "options": dict(self.job.options or {}),
            "entities": ["repository", *self.bitbucket.entities(self.repo), *nested, "people"],
            "counts": {
                **{e: int((self.job.counts or {}).get(e, 0)) for e in [*self.bitbucket.entities(self.repo), *nested]},
                "people": len(people),
            },
            "files": [_file_entry(p) for p in parts],
            "webhook": self.job.webhook,
            "deploy_key": self.job.deploy_key,
            "git": self.job.git,
            "started_at": self.job.started_at,
            "finished_at": finished,
            "api_calls": self.api_base + self.meter.bitbucket,  # Bitbucket REST calls, the webhook's included
            # Through completion: this object, the job's last write, and import.completed.
            "aws_calls": self._aws_calls({"s3:PutObject": 1, "dynamodb:UpdateItem": 1, "events:PutEvents": 1}),
        }
        output.write_json(self.base, "manifest.json", manifest)
        self.job.step = "done"
        self._save(
            [JobRecord.state.set(COMPLETED), JobRecord.finished_at.set(finished), *self._release()],
            {"events:PutEvents": 1},
        )
        notify.publish(self.job, "import.completed")

    def _update_project(self, finished: str) -> None:
        """Link the repository to this import (an UpdateItem: the event publisher's fields stay)."""
        facts = dict(self.job.facts or {})
        project = ProjectRecord(project_pk(self.job.provider_id, self.job.repository_id), PROJECT_SK)
        actions: list[Any] = [
            ProjectRecord.provider_id.set(self.job.provider_id),
            ProjectRecord.repository_id.set(self.job.repository_id),
            ProjectRecord.repository_full_name.set(self.job.repository_full_name),
            ProjectRecord.latest_import_id.set(self.job.job_id),
            ProjectRecord.latest_import_at.set(finished),
            ProjectRecord.snapshot_prefix.set(self.base),
            ProjectRecord.webhook.set((self.job.webhook or {}).get("status", "")),
        ]
        if facts.get("subscription_id"):
            actions.append(ProjectRecord.subscription_id.set(facts["subscription_id"]))
        if facts.get("default_branch"):
            actions.append(ProjectRecord.default_branch.set(facts["default_branch"]))
        if facts.get("default_branch_head"):
            actions += [
                ProjectRecord.default_branch_head.set(facts["default_branch_head"]),
                ProjectRecord.default_branch_head_at.set(self.job.started_at or finished),
            ]
        opened = facts.get("open_pull_request_ids") or []
        actions.append(
            ProjectRecord.open_pull_request_ids.set(set(opened))
            if opened
            else ProjectRecord.open_pull_request_ids.remove()
        )
        project.update(actions=actions)

    # -- parts: what was written, for the manifest ------------------------------------------------
    def _record_part(self, entity: str, page: int, written: output.Written) -> None:
        """Held on the job, saved with the page's checkpoint (a redone page replaces its own entry)."""
        entry = [written.key, entity, page, written.count, written.bytes, written.sha256]
        self.job.parts = [p for p in (self.job.parts or []) if p[0] != written.key] + [entry]

    def _move_parts_off_if_long(self) -> None:
        """Past PARTS_ON_JOB entries, move them to a chunk item before the write that empties the list:
        a crash in between rewrites the same chunk (its number is the job's saved chunk count)."""
        if len(self.job.parts or []) < PARTS_ON_JOB:
            return
        chunk = int(self.job.parts_chunks or 0)
        PartsChunkRecord(self.job.pk, parts_chunk_sk(chunk), parts=list(self.job.parts)).save()
        self.job.parts, self.job.parts_chunks = [], chunk + 1

    def _all_parts(self) -> list[list[Any]]:
        earlier: list[list[Any]] = []
        if self.job.parts_chunks:  # only imports of more than PARTS_ON_JOB pages
            for chunk in PartsChunkRecord.query(self.job.pk, parts_chunks_of(), consistent_read=True):
                earlier += chunk.parts
        held = {p[0] for p in self.job.parts or []}
        return [p for p in earlier if p[0] not in held] + list(self.job.parts or [])

    # -- leaving ----------------------------------------------------------------------------------
    def _defer(self, delay: float, actions: list[Any], planned: dict[str, int] | None = None) -> None:
        """Save, release the lease, and come back in `delay` seconds through a new message."""
        delay = max(0.0, delay)
        self._save([*actions, *self._release()], metering.added({"sqs:SendMessage": 1}, planned or {}))
        kickoff.enqueue(
            self.job, math.ceil(min(MAX_DELAY_SECONDS, delay))
        )  # after the save: a lost send is redelivered

    def _continue_later(self, delay: float = 0) -> None:
        logger.info("import nearing the time limit; continuing in a new invocation", extra=self._log())
        self._defer(delay, [JobRecord.continuations.add(1)])

    def _wait_rate_limit(self, retry_after: float | None) -> None:
        waits = int(self.job.rate_limit_waits or 0) + 1
        if retry_after is not None:
            delay = retry_after + random.uniform(0, min(5.0, 0.2 * retry_after + 1))  # noqa: S311 - jitter
        else:
            delay = backoff(waits, RATE_LIMIT_BASE_SECONDS, MAX_DELAY_SECONDS) + RATE_LIMIT_BASE_SECONDS / 2
        logger.info("rate limited by Bitbucket; waiting", extra=self._log() | {"seconds": round(delay, 1)})
        self._defer(
            delay,
            [
                JobRecord.state.set(WAITING),
                JobRecord.not_before.set(int(time.time() + delay)),
                JobRecord.rate_limit_waits.add(1),
            ],
            {"events:PutEvents": 1},
        )
        notify.publish(self.job, "import.progress")

    def _wait_budget(self, retry_at: float) -> None:
        """The person's budget has no room now: come back at the slot it gave (bitbridge.budget), in hops of
        at most 15 minutes, holding no Lambda and no receive count meanwhile. The message is due a moment
        before the slot (SQS delays are whole seconds, and a poll takes time): the last moment is waited in
        the Lambda (budget.BACKGROUND_WAIT_SECONDS), so room that frees is used as it frees."""
        delay = max(0.0, retry_at - time.time() - BUDGET_LEAD_SECONDS)
        logger.info("waiting for room in the rate-limit budget", extra=self._log() | {"seconds": round(delay, 1)})
        self.job.budget_resume = None  # set again below, in the same write
        self._defer(
            delay,
            [
                JobRecord.state.set(WAITING_BUDGET),
                JobRecord.not_before.set(math.floor(time.time() + delay)),
                JobRecord.budget_waits.add(1),
                JobRecord.budget_resume.set(1),
            ],
            {"events:PutEvents": 1},
        )
        notify.publish(self.job, "import.progress")

    def _transient(self, message: str, *, who: str = "Bitbucket", reason: str = "bitbucket_unavailable") -> None:
        failures = int(self.job.transient_failures or 0) + 1
        if failures > MAX_TRANSIENT_DEFERRALS:
            self._fail(reason, f"{who} kept failing: {message}")
            return
        delay = 2.0**failures
        logger.warning(f"{who} failed; retrying later", extra=self._log() | {"seconds": delay, "error": message})
        self._defer(
            delay,
            [
                JobRecord.transient_failures.set(failures),
                JobRecord.retry_at.set(math.ceil(time.time() + delay)),
                JobRecord.retry_error.set(message[:500]),
            ],
        )

    def _fail(self, reason: str, message: str) -> None:
        self._save(changes.failure(reason, message), {"events:PutEvents": 1})  # fenced: this run's lease
        notify.publish(self.job, "import.failed")

    def _log(self) -> dict[str, Any]:
        return {"import_id": self.job.job_id, "step": self.job.step}
