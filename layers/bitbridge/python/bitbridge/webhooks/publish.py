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
from typing import Any
from urllib.parse import urlsplit

from bitbridge.aws import client
from bitbridge.bitbucket import FLAVORS
from bitbridge.config import settings
from bitbridge.store import deliveries, webhook_state
from bitbridge.store.deliveries import IGNORED, MALFORMED, RECEIVED, REJECTED, UNPUBLISHABLE, Delivery
from bitbridge.webhooks.binding import belongs_to
from bitbridge.webhooks.normalise import (
    ORIGIN_RECONCILIATION,
    ORIGIN_WEBHOOK,
    MalformedPayload,
    UnhandledEvent,
    normalise,
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


@dataclass
class Outcome:
    """What a publishing run did, by delivery pk."""

    published: list[str]
    malformed: list[str]
    unpublishable: list[str]
    ignored: list[str]
    failed: list[str]
    rejected: list[str]

    @classmethod
    def empty(cls) -> Outcome:
        return cls([], [], [], [], [], [])


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

    With ``stop_at_failure`` (the stream), nothing after the first delivery that cannot be prepared is
    attempted, and no chunk after a failed one is sent: the stream retries from the first failure, in
    order. Without it (replay), every delivery is attempted once.
    """
    outcome = Outcome.empty()
    ready: list[Prepared] = []
    for delivery in deliveries:
        try:
            prepared = _prepare(delivery, outcome)
        except Exception as exc:  # transient (reading the provider): retry it, and in order what follows
            log.warning("cannot prepare delivery %s: %s", delivery.delivery_id, type(exc).__name__)
            outcome.failed.append(delivery.pk)
            if stop_at_failure:
                break
            continue
        if prepared is not None:
            ready.append(prepared)
    chunks = list(_chunks(ready))
    for number, chunk in enumerate(chunks):
        failed = set(put_entries([p.entry for p in chunk]))
        for index, prepared in enumerate(chunk):
            if index in failed:
                outcome.failed.append(prepared.delivery.pk)
            else:
                _after_publish(prepared)
                outcome.published.append(prepared.delivery.pk)
        if failed and stop_at_failure:
            outcome.failed.extend(p.delivery.pk for later in chunks[number + 1 :] for p in later)
            break
    return outcome


def _prepare(delivery: Delivery, outcome: Outcome) -> Prepared | None:
    """The event for a delivery, or None when it is settled as malformed / ignored / unpublishable."""
    if delivery.origin == ORIGIN_RECONCILIATION:
        # The reconciler wrote the finished event through this outbox (bitbridge.reconcile.emit), so it
        # is published once, in order, with the same retries and failure queue as deliveries.
        return _entry(delivery, json.loads(delivery.body))
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
    return _entry(delivery, event)


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


def _entry(delivery: Delivery, event: dict[str, Any]) -> Prepared:
    detail = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": event["type"],
        "Detail": detail,
        "EventBusName": settings().event_bus_name,
    }
    size = len(detail.encode("utf-8")) + len(EVENT_SOURCE) + len(event["type"])
    return Prepared(delivery, event, entry, size)


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
    _record(delivery, deliveries.mark_published, delivery.pk, event["type"])
    if delivery.origin == ORIGIN_WEBHOOK:  # last_delivery_at is about Bitbucket's deliveries
        _touch_subscription(delivery, health="ok")
    try:
        apply_event(event)
    except Exception as exc:
        log.warning("project state not updated for %s: %s", delivery.delivery_id, type(exc).__name__)


def _settle(delivery: Delivery, status: str, reason: str) -> None:
    _record(delivery, deliveries.settle, delivery.pk, status, reason)


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
