"""What changed, on the events that say something changed (event schema 1.3): changed files (and, for a
push, its commits) on each ref change of `repository.push`, and on the pull request of
`pull_request.opened` / `pull_request.updated` when its source (or target) moved.

The publisher calls :func:`enrich` with a batch's events before it puts them on the bus. Bitbucket is asked
as the subscription's owner (the person whose connection installed the hook), through `calls.Caller` at
background priority, so enrichment spends that person's allowance like any other call (Cloud: diffstat and
commits are `repositories` calls). The batch's reads run side by side, within `DEADLINE_SECONDS`, each in a
copy of the publisher's context, so a token refresh they start never outlives its invocation (`deadlines`).

- **Never held back, never lost.** Whatever goes wrong (no owner, a refused token, a 429, a 5xx, the
  deadline), the event still goes out, once, with ``changed_files: null`` and ``changed_files_reason``
  saying why (REASONS); nothing here raises.
- **Bounded.** A list names at most FILES_PER_LIST files and an event at most FILES_PER_EVENT (and
  PATH_BYTES_PER_EVENT of paths), so an event stays far below EventBridge's 256 KB;
  ``changed_files_truncated`` says when a list was cut, ``changed_files_count`` how many files changed
  (counted up to COUNT_PAGES pages of `code.PAGE`; null past that).
- **The fewest calls.** One read of changes per ref change or pull request (more only past 1,000 files), the
  push's commits from the delivery where Bitbucket lists them all (Cloud, up to 5), else one read; a new
  branch also needs the default branch's name, cached per container.

docs/events.md ("Changed files") is the consumer's description; these names are its vocabulary.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from bitbridge import providers, tokens
from bitbridge.aws import forgotten_on_reset
from bitbridge.bitbucket.api import code_for
from bitbridge.bitbucket.code import Code, Commit, Diff, Read, read_changes
from bitbridge.bitbucket.http import BitbucketError, RateLimited
from bitbridge.budget import DELIVERY, OverBudget
from bitbridge.calls import Caller, Patience
from bitbridge.store import webhook_state

log = logging.getLogger(__name__)

PUSH, PR_OPENED, PR_UPDATED = "repository.push", "pull_request.opened", "pull_request.updated"
ENRICHED_TYPES = frozenset({PUSH, PR_OPENED, PR_UPDATED})

FILES_PER_LIST = 500
FILES_PER_EVENT = 1_000
PATH_BYTES_PER_EVENT = 96 * 1024
ENTRY_OVERHEAD = 40  # bytes of JSON around each listed path
COUNT_PAGES = 5  # changes counted up to 5 pages of 1,000
COMMITS_PER_REF = 10  # newest first
REF_CHANGES_ENRICHED = 10  # a push moving more branches (git push --all) lists files for the first 10
DEADLINE_SECONDS = 8.0
WORKERS = 8
#: Background work waits for nothing: a 429 is a reason, not a wait; one quick retry of a 5xx.
PATIENCE = Patience(transient_retries=1, retry_base=0.2, retry_cap=1.0, rate_limit_seconds=0.0)
CACHE_SECONDS = 300.0  # subscription owners, provider records and default branches, per container

# Why `changed_files` is null (docs/events.md lists them).
REF_DELETED = "ref_deleted"  # a deleted branch or tag changes no file
TAG = "tag"  # a tag names an existing commit: no file changed
SOURCE_UNCHANGED = "source_unchanged"  # pull_request.updated that moved neither source nor target
FORK = "fork"  # a pull request from a fork (its commits are in another repository)
TOO_MANY_REFS = "too_many_ref_changes"
NO_CONNECTION = "no_connection"  # no one to ask as: no owner, or their connection is gone or must be renewed
NO_ACCESS = "no_access"  # Bitbucket refused the owner (403)
NOT_FOUND = "not_found"  # Bitbucket no longer has the commits (a force-push moved past them, a deleted repository)
RATE_LIMITED = "rate_limited"
BITBUCKET_ERROR = "bitbucket_error"  # a 5xx or no answer, after a retry
TIMEOUT = "timeout"  # not done within DEADLINE_SECONDS
ERROR = "error"  # anything else (logged)
REASONS = (
    REF_DELETED,
    TAG,
    SOURCE_UNCHANGED,
    FORK,
    TOO_MANY_REFS,
    NO_CONNECTION,
    NO_ACCESS,
    NOT_FOUND,
    RATE_LIMITED,
    BITBUCKET_ERROR,
    TIMEOUT,
    ERROR,
)


def needs_enrichment(event: dict[str, Any]) -> bool:
    return event.get("type") in ENRICHED_TYPES


@dataclass(frozen=True)
class Source:
    """One event to enrich and where it came from: the delivery's payload (None for the reconciler's
    events) and the subscription it was posted to."""

    event: dict[str, Any]
    payload: dict[str, Any] | None
    subscription_id: str


@dataclass
class _Job:
    """One list to fill: a ref change of a push, or a pull request."""

    source: Source
    target: dict[str, Any]  # the ref change or the pull_request section: the fields go here
    diff: Diff | None = None
    new_branch: str | None = None  # a branch's first push: compared with the default branch, found at run time
    exclude: str | None = None  # commits already known (the ref's old head)
    with_commits: bool = False
    reason: str | None = None  # settled without asking Bitbucket
    files: list[Any] = field(default_factory=list)
    complete: bool = True
    commits: tuple[list[Commit], bool] | None = None


def enrich(sources: list[Source], *, deadline_seconds: float = DEADLINE_SECONDS) -> None:
    """Add changed files (and commits) to each event in place. Never raises."""
    jobs: list[_Job] = []
    for source in sources:
        try:
            jobs.extend(_plan(source))
        except Exception as exc:  # a shape the plan did not expect: the event still goes out
            log.warning("enrichment not planned for %s: %s", source.event.get("id"), type(exc).__name__)
    asking = [j for j in jobs if j.reason is None]
    if asking:
        callers = _Callers()
        # Not a `with` block: leaving one waits for every thread, and the deadline is the point. Each read
        # runs in a copy of this context, so its caller knows when the invocation ends (`deadlines`): a
        # token refresh it starts never outlives the publisher's invocation.
        pool = ThreadPoolExecutor(min(WORKERS, len(asking)), thread_name_prefix="enrich")
        futures = {pool.submit(contextvars.copy_context().run, _run, job, callers): job for job in asking}
        done, late = wait(futures, timeout=deadline_seconds)
        pool.shutdown(wait=False, cancel_futures=True)
        for future in late:
            futures[future].reason = TIMEOUT  # a read still running finishes unseen
        for future in done:
            futures[future].reason = future.result()
    for source in sources:
        _write(source, [j for j in jobs if j.source is source])


# ------------------------------------------------------------------------------------------ planning


def _plan(source: Source) -> list[_Job]:
    event = source.event
    if event["type"] == PUSH:
        jobs: list[_Job] = []
        for change in event["ref_changes"]:
            asking = sum(1 for j in jobs if j.reason is None)
            jobs.append(_plan_ref(source, change, enough=asking >= REF_CHANGES_ENRICHED))
        return jobs
    pr = event.get("pull_request")
    if not isinstance(pr, dict):
        return []
    job = _Job(source, pr)
    source_end, target_end = pr["source"], pr["destination"]
    changes = event.get("changes")
    src_repo, dst_repo = source_end.get("repository"), target_end.get("repository")
    if event["type"] == PR_UPDATED and isinstance(changes, dict) and not {"source_commit", "target"} & set(changes):
        job.reason = SOURCE_UNCHANGED  # Data Center says what changed; Cloud does not (changes: null)
    elif src_repo is not None and dst_repo is not None and src_repo.get("id") != dst_repo.get("id"):
        job.reason = FORK
    else:
        head = source_end.get("commit") or source_end.get("ref")
        base = target_end.get("commit") or target_end.get("ref")
        if head and base:
            job.diff = Diff(head, base, three_dot=True)  # the pull request's changes, from the merge base
        else:
            job.reason = NOT_FOUND
    return [job]


def _plan_ref(source: Source, change: dict[str, Any], *, enough: bool) -> _Job:
    job = _Job(source, change, with_commits=True)
    old, new = change.get("old"), change.get("new")
    if new is None:
        job.reason = REF_DELETED
    elif change.get("kind") == "tag":
        job.reason = TAG
    elif enough:  # REF_CHANGES_ENRICHED ref changes already ask Bitbucket
        job.reason = TOO_MANY_REFS
    elif old is None:
        job.new_branch = str(change["name"])
    else:
        job.diff, job.exclude = Diff(new, old), old  # the ref's old and new heads as they stand (a rollback too)
    return job


# ------------------------------------------------------------------------------------------ asking


def _run(job: _Job, callers: _Callers) -> str | None:
    """Fill the job from Bitbucket; the reason when it could not be."""
    event = job.source.event
    try:
        caller = callers.get(job.source.subscription_id, event["provider"]["id"])
        if caller is None:
            return NO_CONNECTION
        code = code_for(str(caller.provider.flavor))
        read = reader(caller, "reading what changed")
        api, full_name = caller.api, event["repository"]["full_name"]
        diff, exclude = job.diff, job.exclude
        if job.new_branch is not None:
            new = str(job.target["new"])
            default = _default_branch(code, read, api, full_name, (event["provider"]["id"], event["repository"]["id"]))
            if default is None or default == job.new_branch:  # the first push of the default branch itself
                diff, exclude = Diff(new), None
            else:  # what the new branch brings since it left the default branch
                diff, exclude = Diff(new, default, three_dot=True), default
        assert diff is not None
        commits: Future[tuple[list[Commit], bool]] | None = None
        if job.with_commits:  # read side by side with the changes (an event waits for the slower, not the sum)
            caller.prime()  # one token read for both
            run = contextvars.copy_context().run
            commits = _commit_reads.submit(run, _commits, code, read, api, full_name, job, diff.head, exclude)
        changes = read_changes(code, read, api, full_name, diff, max_pages=COUNT_PAGES)
        job.files, job.complete = changes.files, changes.complete
        if commits is not None:
            job.commits = commits.result()
        return None
    except (tokens.NotConnected, tokens.ReauthRequired):
        return NO_CONNECTION
    except (RateLimited, OverBudget):  # Bitbucket's 429, or the owner's budget has no room now
        return RATE_LIMITED
    except BitbucketError as exc:
        return {403: NO_ACCESS, 404: NOT_FOUND, 429: RATE_LIMITED}.get(exc.status or 0, BITBUCKET_ERROR)
    except Exception as exc:
        log.warning("enrichment failed for %s: %s", event.get("id"), type(exc).__name__)
        return ERROR


#: A push's commits are read here, beside its changes (a thread of the batch's pool cannot wait on that pool).
_commit_reads = ThreadPoolExecutor(WORKERS, thread_name_prefix="enrich-commits")


def _commits(
    code: Code, read: Read, api: str, full_name: str, job: _Job, head: str, exclude: str | None
) -> tuple[list[Commit], bool]:
    payload, name = job.source.payload, str(job.target["name"])
    given = code.payload_commits(payload, name, head) if payload else None
    if given is not None and not given[1]:  # the delivery lists them all
        commits = given[0]
        return commits[:COMMITS_PER_REF], len(commits) > COMMITS_PER_REF
    page = code.commits_page(read, api, full_name, head, exclude, COMMITS_PER_REF)
    return list(page.items), page.next is not None


def reader(caller: Caller, what: str) -> Read:
    """A `code.Read` over the caller: Bitbucket's errors raised, a refused token refreshed once."""

    def read(url: str, params: dict[str, Any] | None, resource: str | None) -> Any:
        return caller.call("GET", url, what, params=params, resource=resource)

    return read


# ------------------------------------------------------------------------------------------ per container


class _Cache:
    """A small time-limited map, safe across the batch's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._items.get(key)
        if found is not None and time.monotonic() - found[0] < CACHE_SECONDS:
            return found[1]
        value = make()
        with self._lock:
            self._items[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_owners = _Cache()
_providers = _Cache()
_default_branches = _Cache()


@forgotten_on_reset
def forget() -> None:
    """Drop what the container remembers (tests change owners, providers and branches between runs)."""
    for cache in (_owners, _providers, _default_branches):
        cache.clear()


class _Callers:
    """One batch's callers, one per owner and provider (one token read for the batch's reads as them).
    Never kept past the batch: a `Caller` belongs to the invocation that made it (`deadlines`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[str, str], Caller] = {}

    def get(self, subscription_id: str, provider_id: str) -> Caller | None:
        owner = _owners.get(subscription_id, lambda: webhook_state.subscription_owner(subscription_id))
        if owner is None:
            return None
        with self._lock:
            caller = self._made.get((owner, provider_id))
        if caller is None:
            provider = _providers.get(provider_id, lambda: providers.get_provider(provider_id))
            # Refused, an event is published without its changed files (`rate_limited`): it never comes back
            # for its slot, so it joins no queue that would hold imports and the reconciler off for nothing.
            made = Caller(owner, provider, priority=DELIVERY, patience=PATIENCE, queues=False)
            with self._lock:
                caller = self._made.setdefault((owner, provider_id), made)
        return caller


def _default_branch(code: Code, read: Read, api: str, full_name: str, key: tuple[str, str]) -> str | None:
    name: str | None = _default_branches.get(key, lambda: code.default_branch(read, api, full_name))
    return name


# ------------------------------------------------------------------------------------------ writing


def _write(source: Source, jobs: list[_Job]) -> None:
    """The fields, on every job's target; lists cut to the per-list and per-event bounds, in order."""
    entries_left, bytes_left = FILES_PER_EVENT, PATH_BYTES_PER_EVENT
    for job in jobs:
        target = job.target
        if job.reason is not None:
            target.update(changed_files=None, changed_files_count=None, changed_files_truncated=None)
            target["changed_files_reason"] = job.reason
            if job.with_commits:
                target.update(commits=None, commits_truncated=None)
            continue
        listed: list[dict[str, Any]] = []
        for changed in job.files[:FILES_PER_LIST]:
            size = len(changed.path.encode()) + len((changed.old_path or "").encode()) + ENTRY_OVERHEAD
            if entries_left == 0 or size > bytes_left:
                break
            listed.append(changed.public())
            entries_left, bytes_left = entries_left - 1, bytes_left - size
        target.update(
            changed_files=listed,
            changed_files_count=len(job.files) if job.complete else None,
            changed_files_truncated=len(listed) < len(job.files) or not job.complete,
            changed_files_reason=None,
        )
        if job.with_commits:
            commits, cut = job.commits or ([], False)
            target.update(commits=[c.public() for c in commits], commits_truncated=cut)
