"""`bitbridge events` - replay stored deliveries onto the bus; watch the local stack's events.

    bitbridge events replay --since 2h [--until ISO|duration] [--provider ID] [--include-published] [--dry-run]
    bitbridge events tail [--detail]

Replay republishes the deliveries received in a time window with the same event ids (re-normalised from
the raw body, so a fixed normaliser fixes old events too). By default only deliveries never published
(status ``received``: the ones that went to the PublishFailureQueue, or were stuck behind them); with
``--include-published`` every publishable delivery in the window. Then it acknowledges (deletes) the
PublishFailureQueue messages whose deliveries are all settled now, so the alarm clears; the others stay.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from bitbridge.cli import CliError
from bitbridge.timestamps import iso_ms

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("events", help="replay deliveries onto the bus; tail local events")
    commands = group.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="republish stored deliveries received in a time window")
    replay.add_argument("--since", required=True, help="ISO 8601 time, or a duration back from now (30m, 2h, 1d)")
    replay.add_argument("--until", help="ISO 8601 time or duration back from now (default: now)")
    replay.add_argument("--provider", help="only this provider id")
    replay.add_argument(
        "--include-published",
        action="store_true",
        help="republish deliveries already published too (consumers deduplicate on the event id)",
    )
    replay.add_argument("--dry-run", action="store_true", help="count what would be republished; change nothing")
    replay.add_argument("--failure-queue-url", help="PublishFailureQueue URL (default: the stack's)")
    replay.set_defaults(run=run_replay)

    tail = commands.add_parser("tail", help="print events published on the local stack's bus as they arrive")
    tail.add_argument("--detail", action="store_true", help="print only each event's detail (schema v1)")
    tail.add_argument("--once", action="store_true", help="print what is there and exit")
    tail.set_defaults(run=run_tail)


# ------------------------------------------------------------------------------------------------ replay


def parse_moment(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when it has no offset), or a duration back from ``now`` like ``90m``."""
    now = now or datetime.now(UTC)
    text = value.strip()
    parts = _DURATION.findall(text)
    if parts and _DURATION.sub("", text).strip() == "":
        return now - sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"not a time or duration: {value!r} (use e.g. 2024-05-01T12:00:00Z or 2h)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    # The receiver's received_at format, so string comparison is time comparison.
    return iso_ms(moment)


def run_replay(args: argparse.Namespace) -> int:
    from bitbridge.store.deliveries import PUBLISHED, RECEIVED, UNPUBLISHABLE, received_between
    from bitbridge.webhooks.publish import publish_deliveries

    if args.provider:
        from bitbridge import providers

        providers.get_provider(args.provider)  # an unknown id is a mistake, not an empty window
    now = datetime.now(UTC)
    since, until = _stamp(parse_moment(args.since, now)), _stamp(parse_moment(args.until or "0s", now))
    if since > until:
        raise CliError("--since is after --until")
    statuses = {RECEIVED, PUBLISHED, UNPUBLISHABLE} if args.include_published else {RECEIVED}
    found = received_between(since, until, args.provider)
    wanted = sorted((d for d in found if d.status in statuses), key=lambda d: d.received_at)
    counts = _count(d.status for d in found)
    print(f"window {since} .. {until}: {len(found)} deliveries ({counts or 'none'})")
    if args.dry_run:
        print(f"would republish {len(wanted)}")
        return 0

    outcome = publish_deliveries(wanted, stop_at_failure=False)
    print(
        f"republished {len(outcome.published)}, malformed {len(outcome.malformed)}, "
        f"unpublishable {len(outcome.unpublishable)}, ignored {len(outcome.ignored)}, "
        f"rejected {len(outcome.rejected)}, failed {len(outcome.failed)}"
    )
    # Settled = in the window and not left unpublished by this run.
    unsettled = {d.pk for d in found if d.status == RECEIVED} - {
        *outcome.published,
        *outcome.malformed,
        *outcome.unpublishable,
        *outcome.ignored,
        *outcome.rejected,
    }
    settled = {d.pk for d in found} - unsettled
    acknowledged, left = _acknowledge_failures(_failure_queue_url(args), settled)
    print(f"failure queue: {acknowledged} acknowledged, {left} left")
    return 1 if outcome.failed else 0


def _count(statuses: Any) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


def _failure_queue_url(args: argparse.Namespace) -> str:
    from bitbridge.config import settings

    return str(args.failure_queue_url or settings().publish_failure_queue_url)


def _acknowledge_failures(queue_url: str, settled: set[str]) -> tuple[int, int]:
    """Delete the failure messages whose stream records are all settled deliveries; release the rest."""
    from bitbridge.aws import client

    sqs = client("sqs")
    acknowledged = left = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            covered = _message_deliveries(message["Body"])
            if covered is not None and covered <= settled:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                acknowledged += 1
            else:
                left += 1
    return acknowledged, left


def _message_deliveries(body: str) -> set[str] | None:
    """The delivery keys a failure message stands for (None when they can no longer be read)."""
    from bitbridge.webhooks.redrive import batch_deliveries

    found = batch_deliveries(body)
    return None if found is None else {d.pk for d in found}


# ------------------------------------------------------------------------------------------------ tail


def run_tail(args: argparse.Namespace) -> int:
    if args.stack:
        raise CliError("tail reads the local stack's event tap; on AWS, add a rule on the bus instead")
    cursor = 0
    while True:
        try:
            with urllib.request.urlopen(f"{args.local}/events?since={cursor}", timeout=10) as response:  # noqa: S310
                page = json.load(response)
        except OSError as exc:
            raise CliError(f"no local stack answers at {args.local}: {exc}") from exc
        for envelope in page["events"]:
            print(json.dumps(envelope.get("detail") if args.detail else envelope), flush=True)
        cursor = page["next"]
        if args.once:
            return 0
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
