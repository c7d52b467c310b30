"""Publish stored deliveries as bitbridge events (schema v1) on the EventBridge bus.

Two callers, one path: the event_publisher Lambda on the deliveries table's stream
(:func:`handle_stream_records`) and ``bitbridge events replay`` (:func:`publish_deliveries`).

- **At least once, same id.** The event id is the delivery id, so Bitbucket redeliveries (deduplicated
  by the receiver), stream retries and replays all carry the id consumers deduplicate on.
- **A failed entry is a failure.** ``PutEvents`` answers 200 with ``FailedEntryCount`` when some entries
  were not accepted: those are retried here a few times, then reported, never assumed published.
- **Stream order.** Records are handled in order and processing stops at the first one that cannot be
  published; its sequence number is reported as the batch item failure, so Lambda retries from there
  (a later record is never published ahead of an earlier failed one, and none is published twice by the
  same invocation). After the event source's MaximumRetryAttempts the batch goes to the
  PublishFailureQueue, whose alarm says to run ``bitbridge events replay``.
  Powertools' BatchProcessor would keep processing (and publishing) past a failure, one PutEvents per
  record; this module batches up to 10 entries per call instead.
- **Poison deliveries don't block the stream.** A payload the normaliser rejects is marked ``malformed``
  on its delivery item, a delivery for an unknown provider ``unpublishable``, and processing moves on.
- **A delivery is bound to its subscription.** The secret that signed it was derived for one subscription
  id, and that id for one provider + repository (``bitbridge.webhooks.binding``): a delivery whose URL
  provider and payload repository do not give back its subscription id is ``rejected`` - nothing published,
  no project state touched, and the subscription's ``rejected_count`` / ``health`` say so.
- **A change is told once.** Before an event goes out, its changes are applied to the repository's ledger
  (``bitbridge.change_ids``; one conditional write per repository per batch, in stream order): each
  transition is claimed (and gets its change id) or was told already - a delivery of a move the
  reconciler published first is settled ``duplicate``, a reconciler observation a delivery told first
  (or overtook) ``superseded``; neither is published. The ids are recorded on the delivery (and for a
  stream retry in the ledger), so a retry, a redrive or a replay publishes the same ones.
- **Names come from the subscription, never the payload.** A hook's secret vouches for the repository's id
  only: anyone holding it could name another repository, or link anywhere. So the repository's names and
  links - in ``repository``, and in a pull request's source and destination when they are that repository -
  are the subscription record's (as Bitbucket's REST API gave them at install), a pull request's, comment's
  or issue's page is kept only on that repository's web origin, and a pull request whose destination is
  another repository is ``rejected``. A delivery whose subscription is gone (deleted in bitbridge while its
  hook still fires) has nothing to vouch for its names: it is settled ``unpublishable``, never published.

Nothing here logs a payload, a header value or an event body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from bitbridge.aws import client
from bitbridge.bitbucket import FLAVORS
from bitbridge.change_ids import (
    ItemSeen,
    Observation,
    PrSeen,
    RefMove,
    observation_from_dict,
    stamp,
    unrecorded_change_id,
)
from bitbridge.config import settings
from bitbridge.store import deliveries, observed, webhook_state
from bitbridge.store.deliveries import (
    DUPLICATE,
    IGNORED,
    MALFORMED,
    RECEIVED,
    REJECTED,
    SUPERSEDED,
    UNPUBLISHABLE,
    Delivery,
)
from bitbridge.timestamps import iso
from bitbridge.webhooks.binding import belongs_to
from bitbridge.webhooks.normalise import (
    ORIGIN_RECONCILIATION,
    ORIGIN_WEBHOOK,
    MalformedPayload,
    UnhandledEvent,
    ledger_reports,
    normalise,
    set_change_ids,
)
from bitbridge.webhooks.project_state import apply_event

log = logging.getLogger(__name__)

EVENT_SOURCE = "bitbridge"
#: PutEvents limits: 10 entries and 256 KB per request.
MAX_ENTRIES_PER_CALL = 10
MAX_BYTES_PER_CALL = 240 * 1024  # a margin under 256 KB for the envelope fields
#: Quick in-invocation retries of entries PutEvents did not accept (botocore already retries errors).
PUT_ATTEMPTS = 3
RETRY_DELAYS = (0.1, 0.4)
#: Why a delivery is rejected (no value from the payload: the reason is shown to operators as is).
NOT_THE_SUBSCRIPTIONS = "repository or provider does not match the subscription"
NO_SUBSCRIPTION = "its subscription is gone: nothing vouches for the repository's names"


@dataclass(frozen=True, slots=True)
class Prepared:
    delivery: Delivery
    event: dict[str, Any]
    entry: dict[str, Any]
    size: int
    change_ids: list[str | None] | None = None


@dataclass(slots=True)
class Normalised:
    """A delivery's event before its changes are claimed, and what it tells the repository's ledger."""

    delivery: Delivery
    event: dict[str, Any]
    moves: list[RefMove] | None = None  # a delivery's ref changes
    pull_request: PrSeen | None = None  # a delivery's pull request state
    item: ItemSeen | None = None  # a delivery's comment or review state
    observation: Observation | None = None  # a reconciler's observation
    change_ids: list[str | None] | None = None  # set by the claim (or recorded on the delivery)
    told_as: list[str | None] | None = None  # the ids its changes were told with (absorbed: the reconciler's)

    @property
    def claims(self) -> bool:
        return self.change_ids is None and (
            self.moves is not None
            or self.pull_request is not None
            or self.item is not None
            or self.observation is not None
        )


@dataclass
class Outcome:
    """What a publishing run did, by delivery pk."""

    published: list[str]
    malformed: list[str]
    unpublishable: list[str]
    ignored: list[str]
    failed: list[str]
    rejected: list[str]
    told_before: list[str]  # duplicate deliveries and superseded observations: nothing new to tell

    @classmethod
    def empty(cls) -> Outcome:
        return cls([], [], [], [], [], [], [])


# ------------------------------------------------------------------------------------------------ stream


def handle_stream_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """The event_publisher's work for one stream batch; the partial batch response Lambda expects."""
    wanted: list[tuple[str, Delivery]] = []
    for record in records:
        sequence = str(record["dynamodb"]["SequenceNumber"])
        if record.get("eventName") != "INSERT":
            continue  # our own status updates (MODIFY) and TTL deletions (REMOVE)
        delivery = Delivery.from_image(record["dynamodb"].get("NewImage") or {})
        if delivery.status != RECEIVED:
            continue  # ignored deliveries are recorded, not published
        wanted.append((sequence, delivery))
    outcome = publish_deliveries(d for _, d in wanted)
    if outcome.failed:
        failed = set(outcome.failed)
        first = next(seq for seq, d in wanted if d.pk in failed)
        return {"batchItemFailures": [{"itemIdentifier": first}]}
    return {"batchItemFailures": []}


# ------------------------------------------------------------------------------------------------ core


def publish_deliveries(deliveries: Iterable[Delivery], *, stop_at_failure: bool = True) -> Outcome:
    """Normalise and publish deliveries in order; record each outcome on its delivery item.

    With ``stop_at_failure`` (the stream), nothing after the first delivery that cannot be prepared (or
    claimed) is attempted, and no chunk after a failed one is sent: the stream retries from the first
    failure, in order. Without it (replay, redrive), every delivery is attempted once.
    """
    outcome = Outcome.empty()
    normalised: list[Normalised] = []
    for delivery in deliveries:
        try:
            item = _prepare(delivery, outcome)
        except Exception as exc:  # transient (reading the provider): retry it, and in order what follows
            log.warning("cannot prepare delivery %s: %s", delivery.delivery_id, type(exc).__name__)
            outcome.failed.append(delivery.pk)
            if stop_at_failure:
                break
            continue
        if item is not None:
            normalised.append(item)
    failed_claims = _claim(normalised)
    ready: list[Prepared] = []
    for index, item in enumerate(normalised):
        if item.delivery.pk in failed_claims:
            outcome.failed.append(item.delivery.pk)
            if stop_at_failure:
                outcome.failed.extend(later.delivery.pk for later in normalised[index + 1 :])
                break
            continue
        prepared = _ready(item, outcome)
        if prepared is not None:
            ready.append(prepared)
    ready = _with_changed_files(ready)  # issue 25: bitbridge.webhooks.enrich, before entries are sized
    chunks = list(_chunks(ready))
    backfilled: dict[str, int] = {}
    for number, chunk in enumerate(chunks):
        failed = set(put_entries([p.entry for p in chunk]))
        for index, prepared in enumerate(chunk):
            if index in failed:
                outcome.failed.append(prepared.delivery.pk)
                _keep_ids(prepared)
            else:
                _after_publish(prepared)
                outcome.published.append(prepared.delivery.pk)
                if prepared.delivery.origin == ORIGIN_RECONCILIATION and prepared.change_ids:
                    sub = prepared.delivery.subscription_id
                    backfilled[sub] = backfilled.get(sub, 0) + 1
        if failed and stop_at_failure:
            for later in chunks[number + 1 :]:
                for prepared in later:
                    outcome.failed.append(prepared.delivery.pk)
                    _keep_ids(prepared)
            break
    for subscription_id, count in backfilled.items():
        _count_backfilled(subscription_id, count)
    return outcome


def _prepare(delivery: Delivery, outcome: Outcome) -> Normalised | None:
    """The event for a delivery, or None when it is settled as malformed / ignored / unpublishable."""
    recorded = list(delivery.change_ids) if delivery.change_ids is not None else None
    if delivery.origin == ORIGIN_RECONCILIATION:
        body = json.loads(delivery.body)
        if "observation" not in body:
            # A finished event (subscription.unhealthy, or written before observations): published as is.
            return Normalised(delivery, body)
        # The reconciler wrote what it saw through this outbox (bitbridge.reconcile.emit), so it is
        # claimed and published in stream order, with the same retries and failure queue as deliveries.
        observation = observation_from_dict(body["observation"])
        return Normalised(delivery, body["event"], observation=observation, change_ids=recorded)
    flavor = provider_flavor(delivery.provider_id)
    if flavor is None:
        log.warning("delivery %s: provider %s is not registered", delivery.delivery_id, delivery.provider_id)
        _settle(delivery, UNPUBLISHABLE, "provider is not registered")
        outcome.unpublishable.append(delivery.pk)
        return None
    try:
        payload = json.loads(delivery.body)
        event = normalise(
            flavor=flavor,
            provider_id=delivery.provider_id,
            event_key=delivery.event_key,
            payload=payload,
            delivery_id=delivery.delivery_id,
            received_at=delivery.received_at,
        )
        reports = ledger_reports(flavor, payload, event)
    except UnhandledEvent:
        # Handled by the other flavor only (the receiver cannot know the provider's flavor).
        _settle(delivery, IGNORED, f"event key not handled for {flavor}")
        outcome.ignored.append(delivery.pk)
        return None
    except ValueError as exc:  # MalformedPayload names the field; other ValueErrors name the argument
        reason = str(exc) if isinstance(exc, MalformedPayload) else "delivery record is invalid"
        log.warning("delivery %s is malformed: %s", delivery.delivery_id, reason)
        _settle(delivery, MALFORMED, reason)
        _touch_subscription(delivery, health="malformed")
        outcome.malformed.append(delivery.pk)
        return None
    if not belongs_to(delivery.subscription_id, delivery.provider_id, event["repository"]["id"]):
        log.warning("delivery %s rejected: %s", delivery.delivery_id, NOT_THE_SUBSCRIPTIONS)
        _settle(delivery, REJECTED, NOT_THE_SUBSCRIPTIONS)
        _count_rejection(delivery)
        outcome.rejected.append(delivery.pk)
        return None
    names = webhook_state.subscription_names(delivery.subscription_id)
    if names is None:
        log.warning("delivery %s: %s", delivery.delivery_id, NO_SUBSCRIPTION)
        _settle(delivery, UNPUBLISHABLE, NO_SUBSCRIPTION)
        outcome.unpublishable.append(delivery.pk)
        return None
    if not with_subscription_names(event, names):
        log.warning("delivery %s rejected: %s", delivery.delivery_id, NOT_THE_SUBSCRIPTIONS)
        _settle(delivery, REJECTED, NOT_THE_SUBSCRIPTIONS)
        _count_rejection(delivery)
        outcome.rejected.append(delivery.pk)
        return None
    item = Normalised(delivery, event, change_ids=recorded)
    if reports is not None:
        item.moves, item.pull_request, item.item = reports
    return item


def with_subscription_names(event: dict[str, Any], names: dict[str, str | None]) -> bool:
    """Put the subscription's names and links on every section that is its repository (the payload vouches for
    its id only), keep a page link only on that repository's web origin, and refuse (False) a pull request
    into another repository. Sections about other repositories (a fork, a pull request's fork source) keep
    what the payload says: docs/events.md says so."""
    repo_id, full_name = event["repository"]["id"], str(names["full_name"])
    workspace, _, slug = full_name.partition("/")
    html = names.get("html_url")
    origin = urlsplit(html)[:2] if html else None
    pr = event.get("pull_request") or {}
    destination = (pr.get("destination") or {}).get("repository")
    if destination is not None and destination.get("id") != repo_id:
        return False
    ends = [pr.get("source") or {}, pr.get("destination") or {}]
    for section in [event["repository"], *(end.get("repository") or {} for end in ends)]:
        if section.get("id") != repo_id:
            continue
        # A clone link is kept only where the repository's own page is, for its own name (a token goes with it).
        host = urlsplit(html).hostname if html else None
        clone = [c for c in section["links"]["clone"] if host and _clones(c["href"], host, full_name)]
        name = names.get("name") or slug
        links = {"html": html, "clone": clone}
        section.update(workspace=workspace, slug=slug, full_name=full_name, name=name, links=links)
    for part in ("pull_request", "comment", "issue"):
        found = event.get(part)
        if found and found.get("url") and (origin is None or urlsplit(found["url"])[:2] != origin):
            found["url"] = None
    return True


def _clones(href: str, host: str, full_name: str) -> bool:
    """Whether `href` (https://, ssh://git@host:port/... or scp-like git@host:path) clones `full_name` from `host`."""
    lowered, wanted = href.lower(), f"/{full_name.lower()}.git"
    if "://" in lowered:
        parts = urlsplit(lowered)
        found, path = parts.hostname, parts.path
    else:  # scp-like: git@bitbucket.org:workspace/slug.git
        found, _, rest = lowered.partition("@")[2].partition(":")
        path = "/" + rest
    return found == host.lower() and path.endswith(wanted)


def _claim(items: list[Normalised]) -> set[str]:
    """Apply the items' changes to their repositories' ledgers (one read and one conditional write per
    repository, in order) and set their change ids; the delivery keys whose claim failed."""
    by_repository: dict[tuple[str, str], list[Normalised]] = {}
    for item in items:
        if item.claims:
            key = (item.event["provider"]["id"], item.event["repository"]["id"])
            by_repository.setdefault(key, []).append(item)
    failed: set[str] = set()
    for (provider_id, repository_id), group in by_repository.items():
        webhook = next((i.event["repository"] for i in group if i.delivery.origin == ORIGIN_WEBHOOK), None)
        try:
            observed.claim(provider_id, repository_id, partial(apply_to_ledger, group=group), webhook)
        except observed.TooLarge as exc:
            log.error("%s: publishing without recording (reconciliation cannot cover it)", exc)
            for item in group:
                item.change_ids, item.told_as = _unrecorded_ids(item), []
        except Exception as exc:
            log.warning("changes of %s not claimed: %s", repository_id, type(exc).__name__)
            failed.update(i.delivery.pk for i in group)
    return failed


def apply_to_ledger(seen: observed.Observed, group: list[Normalised], now: str | None = None) -> None:
    """Claim one repository's reported changes (in order) in its ledger; set each item's ids. Pure."""
    ledger, now = seen.ledger, now or _now()
    provider_id, repository_id = group[0].event["provider"]["id"], group[0].event["repository"]["id"]
    for item in group:
        source = item.delivery.pk
        if item.observation is not None:
            outcomes = [ledger.apply_observation(source, item.observation, now)]
        else:
            received, retry = stamp(item.delivery.received_at), item.delivery.attempt > 1
            moves, pr = item.moves or [], item.pull_request
            outcomes = ledger.apply_delivery(source, moves, pr, now, received, retry, item.item)
        item.change_ids = [ledger.change_id(provider_id, repository_id, o) if o.published else None for o in outcomes]
        item.told_as = [ledger.change_id(provider_id, repository_id, o) for o in outcomes]


def _unrecorded_ids(item: Normalised) -> list[str | None]:
    """Ids for a delivery whose repository's ledger cannot be written: its own, never another change's."""
    if item.observation is not None:
        return [None]
    return [unrecorded_change_id(item.delivery.pk, n) for n in range(len(item.moves or []) or 1)]


def event_to_publish(item: Normalised) -> dict[str, Any] | None:
    """The event with its change ids, or None when its changes were all told before. Pure."""
    if item.change_ids is None:  # nothing a ledger tracks (mirrors, issues, finished events)
        return item.event
    if item.observation is None:
        return set_change_ids(item.event, item.change_ids)
    return _observed_event(item.event, item.change_ids)


def _ready(item: Normalised, outcome: Outcome) -> Prepared | None:
    """The entry to put on the bus, or None when the delivery's changes were all told before."""
    delivery, ids = item.delivery, item.change_ids
    told = event_to_publish(item)
    if told is None:
        status = SUPERSEDED if item.observation is not None else DUPLICATE
        _record(delivery, deliveries.settle, delivery.pk, status, _told_before_reason(item), ids)
        outcome.told_before.append(delivery.pk)
        return None
    return _entry(delivery, told, ids)


def _observed_event(event: dict[str, Any], ids: list[str | None]) -> dict[str, Any] | None:
    if ids[0] is None:
        return None
    event["change_id"] = ids[0]
    for change in event.get("ref_changes") or []:
        change["change_id"] = ids[0]
    return event


def _told_before_reason(item: Normalised) -> str:
    if item.told_as == []:
        return "the repository's observed state is too large to record this change (docs/events.md)"
    if item.observation is not None:
        return "a delivery told this ref, pull request, comment or review first; the next reconciliation compares again"
    shared = ", ".join(sorted({t for t in item.told_as or [] if t}))
    return f"the reconciler published this change first ({shared})"


def _keep_ids(prepared: Prepared) -> None:
    """A delivery not published: keep its claimed ids on it, for the stream retry, redrive or replay."""
    if prepared.change_ids is not None and prepared.delivery.change_ids is None:
        _record(prepared.delivery, deliveries.record_change_ids, prepared.delivery.pk, prepared.change_ids)


def _now() -> str:
    return iso(timespec="microseconds")


def _entry(delivery: Delivery, event: dict[str, Any], change_ids: list[str | None] | None = None) -> Prepared:
    detail = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": event["type"],
        "Detail": detail,
        "EventBusName": settings().event_bus_name,
    }
    size = len(detail.encode("utf-8")) + len(EVENT_SOURCE) + len(event["type"])
    return Prepared(delivery, event, entry, size, change_ids)


# ------------------------------------------------------------------------------------------------ enrichment

#: The types bitbridge.webhooks.enrich adds changed files to (its ENRICHED_TYPES; a test keeps them equal).
ENRICHED_TYPES = frozenset({"repository.push", "pull_request.opened", "pull_request.updated"})


def _with_changed_files(ready: list[Prepared]) -> list[Prepared]:
    """The batch with changed files (and a push's commits) on the events that carry them, their entries
    rebuilt. Enrichment never fails or holds back an event; it is imported only when a batch needs it, so
    its token and HTTP modules stay off the publisher's cold path."""
    wanted = [p for p in ready if p.event["type"] in ENRICHED_TYPES]
    if not wanted:
        return ready
    from bitbridge.webhooks import enrich

    enrich.enrich([enrich.Source(p.event, _payload(p.delivery), p.delivery.subscription_id) for p in wanted])
    rebuilt = {id(p): _entry(p.delivery, p.event, p.change_ids) for p in wanted}
    return [rebuilt.get(id(p), p) for p in ready]


def _payload(delivery: Delivery) -> dict[str, Any] | None:
    """The delivery's payload (it may list a push's commits); None for the reconciler's finished events."""
    if delivery.origin == ORIGIN_RECONCILIATION:
        return None
    payload = json.loads(delivery.body)
    return payload if isinstance(payload, dict) else None


def _chunks(ready: list[Prepared]) -> Iterator[list[Prepared]]:
    """Consecutive runs of entries within PutEvents' limits (10 entries, 256 KB)."""
    chunk: list[Prepared] = []
    size = 0
    for prepared in ready:
        if chunk and (len(chunk) == MAX_ENTRIES_PER_CALL or size + prepared.size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(prepared)
        size += prepared.size
    if chunk:
        yield chunk


def put_entries(entries: list[dict[str, Any]]) -> list[int]:
    """Put entries on the bus, retrying the ones it did not accept; the indexes still not accepted after
    the retries (empty when all were). Never raises: an error counts as a failure of every entry."""
    pending = list(range(len(entries)))
    for attempt in range(PUT_ATTEMPTS):
        try:
            response = client("events").put_events(Entries=[entries[i] for i in pending])
        except Exception as exc:  # botocore has already retried throttling and 5xx
            log.warning("PutEvents failed: %s", type(exc).__name__)
            return pending
        results = response.get("Entries") or []
        # An entry is published only if it got an EventId; a missing result counts as not accepted.
        pending = [i for i, r in zip(pending, results, strict=False) if "EventId" not in r] + pending[len(results) :]
        if not pending:
            return []
        codes = sorted({str(r["ErrorCode"]) for r in results if "ErrorCode" in r})
        log.warning("PutEvents did not accept %d entries (%s)", len(pending), ", ".join(codes) or "no code")
        if attempt < len(RETRY_DELAYS):
            time.sleep(RETRY_DELAYS[attempt])
    return pending


# ------------------------------------------------------------------------------------------------ state


_FLAVORS: dict[str, str] = {}


def provider_flavor(provider_id: str) -> str | None:
    """The provider's flavor, cached per container; None when not registered (or unusable).

    A flavor never changes for a provider id, so a hit is cached for the container's life (a miss is not).
    """
    cached = _FLAVORS.get(provider_id)
    if cached is not None:
        return cached
    flavor = webhook_state.provider_flavor(provider_id)
    if flavor not in FLAVORS:
        return None
    _FLAVORS[provider_id] = flavor
    return flavor


def forget_providers() -> None:
    """Drop the flavor cache (tests register providers between runs)."""
    _FLAVORS.clear()


def _after_publish(prepared: Prepared) -> None:
    """Best-effort bookkeeping once the event is on the bus: a failure here must not republish it."""
    delivery, event = prepared.delivery, prepared.event
    _record(delivery, deliveries.mark_published, delivery.pk, event["type"], prepared.change_ids)
    if delivery.origin == ORIGIN_WEBHOOK:  # last_delivery_at is about Bitbucket's deliveries
        _touch_subscription(delivery, health="ok")
    try:
        apply_event(event)
    except Exception as exc:
        log.warning("project state not updated for %s: %s", delivery.delivery_id, type(exc).__name__)


def _settle(delivery: Delivery, status: str, reason: str) -> None:
    _record(delivery, deliveries.settle, delivery.pk, status, reason)


def _count_backfilled(subscription_id: str, count: int) -> None:
    try:
        webhook_state.record_backfilled(subscription_id, count)
    except Exception as exc:
        log.warning("subscription %s not updated: %s", subscription_id, type(exc).__name__)


def _record(delivery: Delivery, write: Any, *args: Any) -> None:
    try:
        write(*args)
    except Exception as exc:
        log.warning("delivery %s status not recorded: %s", delivery.delivery_id, type(exc).__name__)


def _count_rejection(delivery: Delivery) -> None:
    try:
        counted = webhook_state.record_subscription_rejection(
            delivery.subscription_id, delivery.delivery_id, delivery.received_at
        )
    except Exception as exc:
        log.warning("subscription %s not updated: %s", delivery.subscription_id, type(exc).__name__)
        return
    if not counted:
        log.warning("subscription %s does not exist; rejected delivery not counted", delivery.subscription_id)


def _touch_subscription(delivery: Delivery, *, health: str) -> None:
    """Record the newest delivery on its subscription (never recreating a deleted one)."""
    try:
        result = webhook_state.record_subscription_delivery(
            delivery.subscription_id, delivery.provider_id, delivery.delivery_id, delivery.received_at, health
        )
    except Exception as exc:
        log.warning("subscription %s not updated: %s", delivery.subscription_id, type(exc).__name__)
        return
    if result == "missing":  # a newer delivery already recorded is normal; a missing subscription is not
        log.warning("subscription %s does not exist; event published anyway", delivery.subscription_id)
