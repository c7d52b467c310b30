"""One reconciliation run: for each due subscription, check and repair its hook, then backfill what
deliveries missed. Thin callers: the scheduled `reconciler` function and `bitbridge reconcile`.

- **Spread.** The schedule fires every minute; a subscription's slot is a hash of its id modulo the
  interval in minutes (Cloud: of its workspace, whose one listing and probe answer for all its repositories,
  so they share a run), so each is reconciled once per interval and a large installation never bursts.
  A subscription left over (budget, rate limit) is overdue and goes first in the next run.
- **Budget.** Each provider gets `budget` Bitbucket calls per interval (a per-run share of it when
  scheduled). A subscription is started only if its last run's call count still fits.
- **429.** Bitbucket's rate limit stops that provider for this run (the rest stay due), like the
  import worker's deferral; 5xx and token refreshes are retried by the caller as for imports.
- **Rate-limit budget.** Reads spend the owner's budget at the lowest priority (RECONCILE), hook repairs
  at HOOK_REPAIR (bitbridge.budget); a refusal stops that owner's subscriptions for this run (they stay
  due), never the others'.
- **Cost follows what changed.** Refs are read only for a repository whose refs changed since its last
  reconciliation: Cloud asks once per workspace and run (`refs_marks`: the repositories whose `updated_on`
  moved since the oldest `checked_at` of the workspace's due repositories less CHECK_MARGIN, 100 a page),
  Data Center once per repository (`refs_mark`: the newest ref-change activity). Pull requests: Cloud, in a
  workspace of PR_PROBE_FROM due repositories or more, asks once per workspace and run which changed
  (`PullRequestMarks`: the members, then each member's pull requests updated since the same moment); only
  those repositories' pull requests are read, newest update first down to the watermark, as are every
  repository's at its first look and on its hook's cadence (a pull request by someone outside the workspace).
  Elsewhere each repository's page is read: one when none changed. The mark and `checked_at` are recorded
  with the run, so a run that fails asks again. An unchanged repository costs Cloud nothing an interval but
  its share of its workspace's listing and probe (a smaller workspace: one page), Data Center two.
- **Hooks** are checked on their own, slower cadence (`hook_check_due`: every HOOK_CHECK_HOURS on average,
  spread over the day), every run while a subscription needs attention, and always for `hooks="all"`
  (`bitbridge reconcile --repo`). The hook must exist, be active, point at our URL, carry our events and
  (Cloud says so) a secret; otherwise it is repaired with the owner's connection (`install_webhook`:
  update, else recreate). Without admin rights the subscription is marked `needs_attention` with the
  reason and one `subscription.unhealthy` event is emitted per time it becomes unhealthy.
- **Backfill.** The repository's ledger is read before Bitbucket, and each difference goes into the
  deliveries outbox as an observation of the ledger at that point (bitbridge.reconcile.diff); the event
  publisher claims it in stream order, after the deliveries stored before it, so a change a delivery
  told first is not published again (`backfilled` counts observations; the subscription's
  `missed_changes_backfilled`, what the publisher published of them). Without a baseline (no import
  recorded one) the first run records Bitbucket's state and backfills nothing.
- **Crash-safe.** Observations go through the outbox keyed by an id derived from them; counters only
  count what this run wrote. A rerun after a crash emits nothing twice.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from pynamodb.expressions.update import Action

from bitbridge import providers, tokens
from bitbridge.bitbucket.http import BitbucketError, RateLimited, Unauthorized
from bitbridge.bitbucket.repos import HookState
from bitbridge.bitbucket.review import Discussed
from bitbridge.budget import HOOK_REPAIR, RECONCILE, OverBudget
from bitbridge.calls import Caller
from bitbridge.change_ids import Ledger, Observation, stamp
from bitbridge.config import settings
from bitbridge.reconcile import diff, events
from bitbridge.reconcile.emit import emit
from bitbridge.store import observed
from bitbridge.store.providers import ProviderRecord
from bitbridge.store.subscriptions import SubscriptionRecord
from bitbridge.timestamps import iso
from bitbridge.webhooks import baseline, deploy_keys
from bitbridge.webhooks.normalise import comment_state, pull_request_section
from bitbridge.webhooks.subscriptions import (
    HookPermissionDenied,
    Repository,
    hook_url,
    install_webhook,
    list_subscriptions,
)

log = logging.getLogger(__name__)

NEEDS_ATTENTION = "needs_attention"
DEFAULT_COST = 4  # hook + branches + tags + pull requests, before a subscription's first run
DEFAULT_INTERVAL_MINUTES = 15
DEFAULT_BUDGET = 10_000  # Bitbucket calls per provider per interval
HOOK_CHECK_HOURS = 6  # a hook is checked every 4.5-7.5 hours (hook_check_due), not every interval
HOOKS_DUE, HOOKS_ALL = "due", "all"  # which hooks a run checks
# Subscriptions reconciled side by side: a run's time is then its reads' round trips, not one repository's
# bookkeeping after another's (at Bitbucket's rates a run spends a few calls a second; see budget).
RECONCILE_THREADS = 8
# Each reconciliation's record (when it ran, its calls, its mark) is written by these, so a reconciliation's thread
# goes on to the next repository's reads instead of waiting for a write: reads and writes overlap.
RECORD_THREADS = 4


@dataclass
class Result:
    subscription_id: str
    repository: str
    status: str  # baseline | ok | backfilled | needs_attention | deferred | rate_limited | waiting_budget | error
    backfilled: int = 0
    repaired: str | None = None
    calls: int = 0
    reason: str | None = None
    refs_read: bool = False  # its refs changed (or could not be told), so they were read
    hook_checked: bool = False


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name) or 0) if name != "repaired" else int(bool(r.repaired)) for r in self.results)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


def slot_of(key: str, slots: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % max(1, slots)


def due(
    subs: list[SubscriptionRecord],
    *,
    slot: int | None,
    slots: int,
    now: datetime,
    slot_key: Callable[[SubscriptionRecord], str] = lambda s: s.subscription_id,
) -> list[SubscriptionRecord]:
    """The subscriptions to reconcile now, overdue ones first. `slot=None`: all of them. `slot_key`: what is
    hashed to a slot (subscriptions of one key are reconciled in the same run)."""
    overdue_before = iso(now - timedelta(minutes=slots + 1))
    picked = [
        s
        for s in subs
        if slot is None or slot_of(slot_key(s), slots) == slot or (s.last_reconciled_at or "") < overdue_before
    ]
    return sorted(picked, key=lambda s: s.last_reconciled_at or "")


def slot_keys(subs: list[SubscriptionRecord]) -> Callable[[SubscriptionRecord], str]:
    """Each subscription's slot key: its workspace's where the flavor probes whole workspaces (Cloud: one probe
    per workspace and interval answers for all its repositories, so they share a run), else its own id."""
    whole: dict[str, bool] = {}
    for provider_id in {s.provider_id for s in subs}:
        try:
            whole[provider_id] = providers.bitbucket(providers.get_provider(provider_id)).probes_workspaces
        except Exception:  # a provider removed meanwhile: its subscriptions fail on their own, one by one
            whole[provider_id] = False
    return lambda s: "|".join(str(part) for part in _workspace(s)) if whole.get(s.provider_id) else s.subscription_id


def run(
    *,
    repo: str | None = None,
    slot: int | None = None,
    slots: int = DEFAULT_INTERVAL_MINUTES,
    budget: int = DEFAULT_BUDGET,
    now: datetime | None = None,
    crash_after_emits: int | None = None,
    hooks: str = HOOKS_DUE,
) -> Report:
    """Reconcile the due subscriptions (all, with `slot=None`; one repository with `repo`).

    `budget` is the calls each provider may use in this run; `hooks` which hooks are checked (`HOOKS_DUE`:
    those `hook_check_due`, `HOOKS_ALL`: every one). `crash_after_emits` makes the run raise after that
    many events were written (tests of crash recovery; never set in production)."""
    moment = now or datetime.now(UTC)
    subs = [s for s in list_subscriptions() if repo is None or s.repository_full_name.lower() == repo.lower()]
    todo = due(subs, slot=slot, slots=slots, now=moment, slot_key=slot_keys(subs) if slot is not None else lambda s: "")
    report = Report()
    with (
        ThreadPoolExecutor(RECORD_THREADS, thread_name_prefix="reconcile-record") as records,  # shut down last
        ThreadPoolExecutor(RECONCILE_THREADS, thread_name_prefix="reconcile") as pool,
    ):

        def record(write: Callable[[], None]) -> None:
            records.submit(contextvars.copy_context().run, write)

        shared = _Run(budget, RefsMarks(todo), PullRequestMarks(todo), crash_after_emits, hooks, moment, record)
        pages: list[list[Future[Result]]] = []
        for start in range(0, len(todo), observed.BATCH_READ):
            if len(pages) >= 2:  # one page read ahead, no more: a ledger is read shortly before its reads
                wait(pages[-2])
            page = todo[start : start + observed.BATCH_READ]
            ledgers = observed.read_many([(s.provider_id, _repository_id(s)) for s in page])
            pages.append(
                [
                    pool.submit(contextvars.copy_context().run, shared.reconcile, sub, ledgers.get(_ledger_key(sub)))
                    for sub in page
                ]
            )
        report.results = [future.result() for page_futures in pages for future in page_futures]
    return report


def _repository_id(sub: SubscriptionRecord) -> str:
    return sub.repository_key.split("#", 1)[1]


def _ledger_key(sub: SubscriptionRecord) -> tuple[str, str]:
    return sub.provider_id, _repository_id(sub)


class _Run:
    """What one run's reconciliations share, each on a thread of its own: the providers' call budgets for
    the run, the owners refused (a 429, no room in their budget) and one caller per owner (one provider
    read and one token read per owner and run: the first reconciliation of an owner makes it, the others
    fork it)."""

    def __init__(
        self,
        budget: int,
        marks: RefsMarks,
        pr_marks: PullRequestMarks,
        crash_after_emits: int | None,
        hooks: str,
        moment: datetime,
        record: Callable[[Callable[[], None]], None],
    ) -> None:
        self.budget, self.marks, self.hooks, self.moment, self.record = budget, marks, hooks, moment, record
        self.pr_marks = pr_marks
        self.emitted = _Emitted(crash_after_emits)
        self.lock = threading.Lock()
        self.remaining: dict[str, int] = {}
        self.stopped: set[str] = set()  # providers that answered 429
        self.over_budget: set[tuple[str, str | None]] = set()  # (provider, owner): no room in that budget
        self.known: dict[str, ProviderRecord] = {}
        self.callers: dict[tuple[str, str | None], Caller] = {}
        self.firsts: dict[tuple[str, str | None], threading.Lock] = {}

    def reconcile(self, sub: SubscriptionRecord, seen: observed.Observed | None) -> Result:
        owner = (sub.provider_id, sub.owner_user_id)
        # 0: cleared by a probe. Never more than a run's budget: a workspace's listing and probe, charged to the
        # repository that asked them, must not keep it waiting for ever.
        cost = min(self.budget, DEFAULT_COST if sub.last_reconcile_calls is None else int(sub.last_reconcile_calls))
        with self.lock:  # started only if its last run's calls still fit: they are set aside until it ends
            left = self.remaining.setdefault(sub.provider_id, self.budget)
            status = (
                "rate_limited"
                if sub.provider_id in self.stopped
                else "waiting_budget"
                if owner in self.over_budget
                else "deferred"
                if left < cost
                else None
            )
            if status is not None:
                return Result(sub.subscription_id, sub.repository_full_name, status)
            self.remaining[sub.provider_id] = left - cost
            first = self.firsts.setdefault(owner, threading.Lock())
        with first:  # the owner's first reconciliation runs alone; once it made the caller, the rest fork it
            base = self.callers.get(owner)
            if base is None:
                result = self._one(sub, seen, None)
        if base is not None:
            result = self._one(sub, seen, base.fork())
        with self.lock:
            self.remaining[sub.provider_id] += cost - result.calls
            if result.status == "rate_limited":
                self.stopped.add(sub.provider_id)
            elif result.status == "waiting_budget":
                self.over_budget.add(owner)
        return result

    def _one(self, sub: SubscriptionRecord, seen: observed.Observed | None, caller: Caller | None) -> Result:
        with self.lock:
            if sub.provider_id not in self.known:
                self.known[sub.provider_id] = providers.get_provider(sub.provider_id)
            provider = self.known[sub.provider_id]
        check_hook = self.hooks == HOOKS_ALL or hook_check_due(sub, self.moment)
        reconciliation = Reconciliation(
            sub,
            self.emitted,
            self.marks,
            check_hook,
            provider,
            caller,
            seen=seen,
            record=self.record,
            pr_marks=self.pr_marks,
        )
        result = reconciliation.run()
        if caller is None and reconciliation.caller is not None:
            self.callers[(sub.provider_id, sub.owner_user_id)] = reconciliation.caller
        return result


class _Emitted:
    """Events a run wrote, across its threads; `crash_after`: the count at which a test's run dies."""

    def __init__(self, crash_after: int | None) -> None:
        self.crash_after = crash_after
        self.count = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            if self.crash_after is not None and self.count >= self.crash_after:
                raise SimulatedCrash(f"crashed after {self.count} events (test)")

    def add(self) -> None:
        with self._lock:
            self.count += 1


_UNREAD = object()  # a reconciliation's ledger not read by its run: it reads it itself


class Reconciliation:
    """One subscription's reconciliation."""

    def __init__(
        self,
        sub: SubscriptionRecord,
        emitted: _Emitted,
        marks: RefsMarks | None = None,
        check_hook: bool = True,
        provider: ProviderRecord | None = None,
        caller: Caller | None = None,
        *,
        seen: object = _UNREAD,  # observed.Observed | None
        record: Callable[[Callable[[], None]], None] | None = None,
        pr_marks: PullRequestMarks | None = None,
    ) -> None:
        self.sub = sub
        self.provider = provider or providers.get_provider(sub.provider_id)
        self.flavor = str(self.provider.flavor)
        self.bitbucket = providers.bitbucket(self.provider)
        self.repository_id = _repository_id(sub)
        self.result = Result(sub.subscription_id, sub.repository_full_name, "ok")
        owner = sub.owner_user_id
        self.caller: Caller | None = caller or (Caller(owner, self.provider, priority=RECONCILE) if owner else None)
        self._emitted = emitted
        self._seen = seen  # the ledger as the run read it, before Bitbucket (see _backfill)
        self._record = record or (lambda write: write())  # the run's writers, else at once
        self._extra_calls = 0
        self._marks = marks or RefsMarks([sub])
        self._pr_marks = pr_marks or PullRequestMarks([sub])
        self._checked_at: str | None = None  # recorded with the run once compared (SubscriptionRecord.checked_at)
        self._prs_recheck = False
        self._check_hook_now = check_hook
        self._refs_mark: str | None = None  # recorded with the run, once the refs were compared

    # ------------------------------------------------------------------------------------------ flow

    def run(self) -> Result:
        try:
            if self.caller is None:
                raise _Attention("no connected user owns this subscription: reinstall it with --user")
            hook_readable = self.sub.manual or not self._check_hook_now or self._check_hook()
            if self._check_hook_now:  # the deploy key on the hook's cadence: put back when deleted
                self._extra_calls += deploy_keys.reconcile(self.sub, self.caller)[1]
            self._backfill()
            if not hook_readable:  # yet the repository was readable: the user is no admin
                raise _Attention(self._no_admin())
            self._healthy()
        except _Attention as attention:
            self._unhealthy(attention.reason)
        except RateLimited:
            self.result.status = "rate_limited"
        except OverBudget:
            self.result.status = "waiting_budget"
        except (tokens.ReauthRequired, tokens.NotConnected, Unauthorized):
            self._unhealthy("the owner's Bitbucket connection must be re-authorised (sign in again)")
        except BitbucketError as exc:
            log.warning("reconciling %s: %s", self.sub.repository_full_name, exc)
            self.result.status, self.result.reason = "error", str(exc)
        self.result.calls = (self.caller.calls if self.caller else 0) + self._extra_calls
        self._record(self._record_run)  # last: what it records happened (a crash before it reads again)
        return self.result

    @property
    def fetch(self) -> Callable[[str, dict[str, Any] | None], Any]:
        assert self.caller is not None
        return self.caller.fetch

    def admin_fetch(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """A read where a 401 means "not allowed" (Data Center's admin routes), never a stale token."""
        assert self.caller is not None
        return self.caller.call("GET", url, "reading from Bitbucket", params=params, refresh_on_401=False).json()

    # ------------------------------------------------------------------------------------------ hook

    def _expected_url(self) -> str:
        if self.sub.hook_url:
            return str(self.sub.hook_url)
        return hook_url(settings().public_base_url, self.sub.provider_id, self.sub.subscription_id)

    def _check_hook(self) -> bool:
        """Check the hook and repair it; False when Bitbucket refused to show it (Data Center answers 401
        both for a bad token and for a user without admin rights: the reads that follow tell which)."""
        self.result.hook_checked = True
        problem: str | None = "bitbridge's hook id is not known"
        if self.sub.hook_id:
            try:
                hook = self.bitbucket.hook(
                    self.fetch, self.caller.api if self.caller else "", self.sub.repository_full_name, self.sub.hook_id
                )
            except tokens.ReauthRequired:
                return False
            except BitbucketError as exc:
                if exc.status in (401, 403):
                    return False
                raise
            problem = _hook_problem(hook, self._expected_url(), self.bitbucket.webhook_events)
        if problem is None:
            return True
        owner, _, slug = self.sub.repository_full_name.partition("/")
        base_url = self._expected_url().rsplit("/hooks/", 1)[0]
        try:
            # Its own count (the repair counts as one call), at the hook repair's priority.
            repair = self.caller.fork(HOOK_REPAIR) if self.caller else None
            install_webhook(
                self.sub.owner_user_id,
                Repository(self.sub.provider_id, self.repository_id, owner, slug),
                base_url,
                caller=repair,
            )
        except HookPermissionDenied:
            raise _Attention(f"{problem}, and {self._no_admin()}") from None
        self._extra_calls += 1
        self.result.repaired = problem
        self.sub.refresh(consistent_read=True)  # install_webhook saved the record (hook id, URL)
        return True

    def _no_admin(self) -> str:
        return (
            "the connected user has no admin rights on the repository, so bitbridge cannot check or repair "
            "its webhook: reinstall with an admin's --user, or configure it by hand (hooks install --manual)"
        )

    # ------------------------------------------------------------------------------------------ backfill

    def _section(self, raw: dict[str, Any]) -> dict[str, Any]:
        return pull_request_section(self.flavor, raw, "pull_request.updated")

    def _backfill(self) -> None:
        assert self.caller is not None
        api, full_name = self.caller.api, self.sub.repository_full_name
        provider_id, repository_id = self.sub.provider_id, self.repository_id
        # The ledger before Bitbucket (see reconcile.diff): the run reads a page of them at once.
        seen = observed.read(provider_id, repository_id) if self._seen is _UNREAD else self._seen
        assert seen is None or isinstance(seen, observed.Observed)
        changed, mark = self._marks.refs_changed(self)  # before the refs: a change after it moves it again
        read_at = iso(timespec="microseconds")
        first = seen is None or seen.baseline_at is None
        truth_refs = self.bitbucket.ref_heads(self.fetch, api, full_name) if changed or first else None
        self.result.refs_read = truth_refs is not None
        # The review sweep rides on the hook check's cadence: comments and reviews do not move a pull
        # request's update time, so finding them costs a read per open pull request (reconcile.diff).
        opened = self.bitbucket.open_pull_requests(self.fetch, api, full_name) if self._check_hook_now else None
        # Each repository's own page of pull requests: at its first look, on the hook's cadence (what a workspace
        # probe cannot see: a pull request by someone outside the workspace), every run for a hand-configured
        # hook (it has no cadence), when the last comparison asked to compare again (its watermark held back),
        # and where the probe, if the flavor has one, says some changed.
        own_read = seen is None or first or self._check_hook_now or self.sub.manual or self.sub.prs_recheck
        probed = None if own_read or seen is None else self._pr_marks.changed(self, seen.pr_watermark)
        prs: Iterator[dict[str, Any]] = (
            self.bitbucket.pull_requests_newest_first(self.fetch, api, full_name)
            if probed is None or probed
            else iter(())
        )
        checked_at = self._marks.started(self.sub) or read_at  # the earliest of this run's checks: recorded once done
        if seen is None or seen.baseline_at is None:
            assert truth_refs is not None
            _, raw_repo = self.bitbucket.repository(self.fetch, api, full_name)
            baseline.record_first_reconciliation(self.bitbucket, provider_id, repository_id, truth_refs, prs, raw_repo)
            if opened is not None:  # nothing recorded yet: every comment and review seen is the baseline
                empty = observed.Observed(Ledger(""), exists=False)
                self._sweep_reviews(empty, opened, read_at, iso())
            self.result.status = "baseline"
            self._refs_mark, self._checked_at = mark, checked_at
            return
        if seen.legacy:
            observed.migrate_legacy(provider_id, repository_id, seen, iso())
        scan = diff.scan_pull_requests(seen, prs, self.bitbucket.pull_request_updated, self._section)
        repository, epoch, at = seen.repository or {}, seen.ledger.epoch, iso()
        found: list[tuple[dict[str, Any], Observation]] = [
            (events.push_event(provider_id, self.flavor, repository, epoch, change, at), change.observation)
            for change in (diff.ref_changes(seen.ledger, truth_refs, read_at) if truth_refs is not None else [])
        ] + [
            (events.pull_request_event(provider_id, self.flavor, repository, epoch, c, at), c.observation)
            for c in scan.changes
        ]
        if opened is not None:  # every read before the first write: what is emitted gets published (and
            # its changed files read at a higher priority) while the run still reads
            found += self._sweep_reviews(seen, opened, read_at, at)
            found += self._deletions(seen, scan.listed | {int(raw["id"]) for raw in opened}, at)
        for event, observation in found:
            self._emit(event, observation)
        watermark, settled = diff.upkeep(
            scan,
            seen.pr_watermark,
            lambda stamps: observed.confirm_pull_requests(provider_id, repository_id, seen, stamps),
        )
        if watermark and watermark != seen.pr_watermark:  # a write only when it moves
            observed.advance_watermark(provider_id, repository_id, watermark)
        forgettable = seen.ledger.forgettable_refs(at)
        settled += seen.ledger.forgettable_deleted_prs(at)
        if settled or forgettable:
            observed.forget(provider_id, repository_id, seen, forgettable, settled)
        if self.result.backfilled:
            self.result.status = "backfilled"
        # Differences observed, or confirmations that did not hold, keep the watermark back so that the next run
        # compares those pull requests again: their update times do not move, so no probe would name them.
        self._prs_recheck = bool(scan.changes) or watermark != scan.watermark
        self._refs_mark, self._checked_at = mark, checked_at

    def _sweep_reviews(
        self,
        seen: observed.Observed,
        opened: list[dict[str, Any]],
        read_at: str,
        at: str,
    ) -> list[tuple[dict[str, Any], Observation]]:
        """Compare the comments and review statuses of the open pull requests with the ledger: the events of
        what changed; a first look is recorded as the baseline. One read per open pull request: a pull
        request closed since is not read again (its last comments' lost deliveries stay lost)."""
        assert self.caller is not None
        api, full_name, ledger = self.caller.api, self.sub.repository_full_name, seen.ledger
        value_of = partial(_comment_value, self.flavor)
        scan = diff.ReviewScan()
        for raw in opened:
            discussion = self.bitbucket.pull_request_discussion(self.fetch, api, full_name, raw)
            standings = self.bitbucket.review_standings(raw)
            diff.review_changes(ledger, raw, int(raw["id"]), discussion, standings, value_of, read_at, scan)
        found: list[tuple[dict[str, Any], Observation]] = []
        for change in scan.changes:
            event = events.review_event(
                self.sub.provider_id, self.flavor, seen.repository or {}, ledger.epoch, change, at
            )
            if event is not None:
                found.append((event, change.observation))
        if scan.baseline or ledger.reviews_at is None:
            observed.record_reviews_baseline(self.sub.provider_id, self.repository_id, scan.baseline, read_at)
        return found

    def _deletions(
        self, seen: observed.Observed, listed: set[int], at: str
    ) -> list[tuple[dict[str, Any], Observation]]:
        """Open pull requests the ledger holds that neither listing showed: one Bitbucket no longer has
        (a 404) was deleted (Data Center)."""
        if not self.bitbucket.deletes_pull_requests:
            return []
        assert self.caller is not None
        api, full_name, ledger = self.caller.api, self.sub.repository_full_name, seen.ledger
        found: list[tuple[dict[str, Any], Observation]] = []
        for pr_id in diff.deleted_candidates(ledger, listed):
            if self.bitbucket.pull_request_gone(self.fetch, api, full_name, pr_id):
                observation = diff.deletion(ledger, pr_id)
                repository = seen.repository or {}
                event = events.deleted_event(
                    self.sub.provider_id, self.flavor, repository, ledger.epoch, observation, at
                )
                found.append((event, observation))
        return found

    def _emit(self, event: dict[str, Any], observation: Observation | None = None) -> bool:
        self._emitted.check()
        written = emit(self.sub.subscription_id, event, observation)
        if written:
            self._emitted.add()
            if event["type"] != events.UNHEALTHY:
                self.result.backfilled += 1
        return written

    # ------------------------------------------------------------------------------------------ health

    def _healthy(self) -> None:
        if self.sub.state == NEEDS_ATTENTION:
            self.sub.update(actions=[SubscriptionRecord.state.remove(), SubscriptionRecord.attention_reason.remove()])

    def _unhealthy(self, reason: str) -> None:
        self.result.status, self.result.reason = NEEDS_ATTENTION, reason
        if self.sub.state == NEEDS_ATTENTION and self.sub.attention_reason == reason:
            return  # already reported
        occurrence = int(self.sub.attention_count or 0) + 1
        seen = observed.read(self.sub.provider_id, self.repository_id)
        repository = (seen.repository if seen else None) or self._repository_stub()
        # Event first, then the state: a crash in between re-emits the same id (the outbox keeps one).
        self._emit(
            events.unhealthy_event(
                self.sub.provider_id, self.flavor, repository, self.sub.subscription_id, reason, occurrence, iso()
            )
        )
        self.sub.update(
            actions=[
                SubscriptionRecord.state.set(NEEDS_ATTENTION),
                SubscriptionRecord.attention_reason.set(reason),
                SubscriptionRecord.attention_count.set(occurrence),
            ]
        )

    def _repository_stub(self) -> dict[str, Any]:
        owner, _, slug = self.sub.repository_full_name.partition("/")
        return {
            "id": self.repository_id,
            "workspace": owner,
            "slug": slug,
            "full_name": self.sub.repository_full_name,
            "name": slug,
            "links": {"html": None, "clone": []},
        }

    def _record_run(self) -> None:
        if self.result.status in ("rate_limited", "waiting_budget", "error"):
            return  # not reconciled: stays due
        actions: list[Action] = [
            SubscriptionRecord.last_reconciled_at.set(iso()),
            SubscriptionRecord.last_reconcile_calls.set(self.result.calls),
        ]
        if self._refs_mark is not None and self._refs_mark != self.sub.refs_mark:
            actions.append(SubscriptionRecord.refs_mark.set(self._refs_mark))
        if self._checked_at is not None:
            actions.append(SubscriptionRecord.checked_at.set(self._checked_at))
        if self._prs_recheck != bool(self.sub.prs_recheck):
            actions.append(
                SubscriptionRecord.prs_recheck.set(True)
                if self._prs_recheck
                else SubscriptionRecord.prs_recheck.remove()
            )
        if self.result.hook_checked:
            actions.append(SubscriptionRecord.last_hook_check_at.set(iso()))
        if self.result.repaired:
            actions += [
                SubscriptionRecord.hook_repairs.add(1),
                SubscriptionRecord.last_hook_repair_at.set(iso()),
                SubscriptionRecord.last_hook_repair.set(self.result.repaired),
            ]
        try:
            self.sub.update(actions=actions, condition=SubscriptionRecord.pk.exists())
        except Exception as exc:  # removed meanwhile: nothing to record on
            log.warning("subscription %s not updated: %s", self.sub.subscription_id, type(exc).__name__)


def _comment_value(flavor: str, comment: Discussed) -> str:
    return comment_state(flavor, comment.raw, comment.deleted)


class _Attention(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SimulatedCrash(RuntimeError):
    """Raised by `run(crash_after_emits=...)`: a reconciler dying mid-run, for tests."""


class RefsMarks:
    """Which due repositories' refs changed since their last reconciliation, asked as cheaply as the flavor
    allows: one listing per (provider, owner, workspace) and run where it has one (Cloud), else one probe
    per repository (Data Center). A repository's mark is what the listing or probe answered when its refs
    were last compared (`SubscriptionRecord.refs_mark`)."""

    def __init__(self, todo: list[SubscriptionRecord]) -> None:
        self._marks: dict[tuple[str, str | None, str], list[str | None]] = {}
        self._checked: dict[tuple[str, str | None, str], list[str | None]] = {}
        for sub in todo:
            self._marks.setdefault(_workspace(sub), []).append(sub.refs_mark)
            self._checked.setdefault(_workspace(sub), []).append(sub.checked_at)
        self._listed: dict[tuple[str, str | None, str], tuple[dict[str, str] | None, bool]] = {}
        self._started: dict[tuple[str, str | None, str], str] = {}  # when each workspace's listing was asked
        self._lock = threading.Lock()  # the run's threads: one listing per workspace, the first asks

    def started(self, sub: SubscriptionRecord) -> str | None:
        """When this run asked for its workspace's listing (None: the flavor has none)."""
        with self._lock:
            listed = self._listed.get(_workspace(sub))
            return self._started.get(_workspace(sub)) if listed is not None and listed[0] is not None else None

    def refs_changed(self, reconciliation: Reconciliation) -> tuple[bool, str | None]:
        """(whether its refs must be read, the mark to record once they are compared: None for none)."""
        sub, caller, bitbucket = reconciliation.sub, reconciliation.caller, reconciliation.bitbucket
        assert caller is not None
        key = _workspace(sub)
        with self._lock:
            if key not in self._listed:  # the first of the run in this workspace asks for all of them
                # Past the oldest check of the workspace's due repositories (only what changed since), else past
                # the oldest mark; everything while one was never compared.
                marks, checked = self._marks.get(key, [sub.refs_mark]), _since(self._checked.get(key, [None]))
                since = [] if None in marks else [checked] if checked else [m for m in marks if m]
                self._started[key] = iso(timespec="microseconds")
                listing = bitbucket.refs_marks(reconciliation.fetch, caller.api, key[2], since)
                self._listed[key] = (listing, bool(since))
            listed, filtered = self._listed[key]
        if listed is None:
            mark = bitbucket.refs_mark(reconciliation.admin_fetch, caller.api, sub.repository_full_name)
        elif reconciliation.repository_id in listed:
            mark = listed[reconciliation.repository_id]
        else:  # a filtered listing leaves out what did not change; a full one, what it cannot see (read it)
            mark = sub.refs_mark if filtered else None
        return mark is None or mark != sub.refs_mark, mark


def _workspace(sub: SubscriptionRecord) -> tuple[str, str | None, str]:
    return sub.provider_id, sub.owner_user_id, sub.repository_full_name.partition("/")[0].lower()


# A listing or probe asks for what changed since the oldest of its repositories' last checks less this: Bitbucket's
# clock against ours.
CHECK_MARGIN = timedelta(minutes=5)
# A workspace with fewer due repositories than this has each one's pull requests read: a probe (the member
# list and one query per member) would rarely cost less.
PR_PROBE_FROM = 20


def _since(checked: Sequence[str | None]) -> str | None:
    """The moment a workspace's listing or probe asks from: the oldest of its due repositories' `checked_at` less
    CHECK_MARGIN; None when one was never checked (then everything is asked)."""
    if not checked or any(c is None for c in checked):
        return None
    return (min(datetime.fromisoformat(str(c)) for c in checked) - CHECK_MARGIN).isoformat()


class PullRequestMarks:
    """Which due repositories' pull requests changed since they were last checked, asked once per (provider,
    owner, workspace) and run where the flavor can (`Bitbucket.pull_request_marks`; Cloud: each member's pull
    requests across the workspace updated after `_since`), else each repository's pull requests are read."""

    def __init__(self, todo: list[SubscriptionRecord]) -> None:
        self._checked: dict[tuple[str, str | None, str], list[str | None]] = {}
        for sub in todo:
            self._checked.setdefault(_workspace(sub), []).append(sub.checked_at)
        self._asked: dict[tuple[str, str | None, str], dict[str, str] | None] = {}
        self._lock = threading.Lock()  # the run's threads: one probe per workspace, the first asks

    def changed(self, reconciliation: Reconciliation, watermark: str | None) -> bool | None:
        """Whether its pull requests changed past `watermark`; None when no probe answers for it (its pull
        requests are read)."""
        sub, caller = reconciliation.sub, reconciliation.caller
        assert caller is not None
        if not sub.checked_at:
            return None
        key = _workspace(sub)
        with self._lock:
            if key not in self._asked:
                checked = [c for c in self._checked.get(key, [sub.checked_at]) if c]  # the rest are read anyway
                since = _since(checked)
                marks = None
                if since is not None and len(checked) >= PR_PROBE_FROM:
                    try:
                        marks = reconciliation.bitbucket.pull_request_marks(
                            reconciliation.fetch, caller.api, key[2], since, len(checked)
                        )
                    except RateLimited:
                        raise  # the provider stops for this run; the workspace stays due
                    except BitbucketError as exc:  # a probe Bitbucket refuses: each repository's page instead
                        log.warning("probing %s's pull requests: %s; each repository's are read", key[2], exc)
                self._asked[key] = marks
            marks = self._asked[key]
        if marks is None:
            return None
        newest = stamp(marks.get(reconciliation.repository_id))
        return newest is not None and (watermark is None or newest > watermark)


def hook_check_due(sub: SubscriptionRecord, now: datetime) -> bool:
    """Whether a run checks this subscription's hook: one needing attention or whose hook id is not known,
    every run; otherwise after 0.75-1.25 x HOOK_CHECK_HOURS since the last check (since its creation before
    any: the hook was installed then), the fraction a hash of its id and that time, so checks that began
    together spread over the day instead of coming back together. Never for a hook configured by hand."""
    if sub.manual:
        return False
    last = sub.last_hook_check_at or sub.created_at
    if sub.state == NEEDS_ATTENTION or not sub.hook_id or not last:
        return True
    fraction = int(hashlib.sha256(f"{sub.subscription_id}|{last}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return now >= datetime.fromisoformat(last) + timedelta(hours=HOOK_CHECK_HOURS * (0.75 + 0.5 * fraction))


def _hook_problem(hook: HookState | None, url: str, events_wanted: tuple[str, ...]) -> str | None:
    if hook is None:
        return "the hook was deleted in Bitbucket"
    if hook.url != url:
        return "the hook points at another URL"
    if not hook.active:
        return "the hook is disabled"
    missing = sorted(set(events_wanted) - set(hook.events))
    if missing:
        return f"the hook lacks {len(missing)} event(s): {', '.join(missing[:3])}"
    if hook.secret_set is False:
        return "the hook has no secret"
    return None


def per_run_budget(budget_per_interval: int, interval_minutes: int) -> int:
    """A scheduled run's share of the interval's budget (one run per minute)."""
    return max(DEFAULT_COST, math.ceil(budget_per_interval / max(1, interval_minutes)))
