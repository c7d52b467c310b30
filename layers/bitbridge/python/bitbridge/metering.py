"""Counting what one unit of work costs: AWS calls by service and operation, and Bitbucket REST calls.

`metered()` opens a meter for the current thread of work (a context variable, so the worker's parallel
jobs each count their own). AWS calls are counted by a botocore `before-call` hook (once per API call,
not per HTTP retry) on every client `bitbridge.aws.client` makes and on PynamoDB's clients
(`bitbridge.store.base.watch_models`); Bitbucket calls by `bitbridge.bitbucket.http.send`. Outside a
meter the hook does nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

HOOK_ID = "bitbridge-metering"


@dataclass
class Meter:
    aws: Counter[str] = field(default_factory=Counter)  # "dynamodb:UpdateItem" -> calls (IAM action names)
    bitbucket: int = 0  # REST calls (OAuth token calls excluded: they go through Authlib)


_current: ContextVar[Meter | None] = ContextVar("bitbridge_meter", default=None)


@contextmanager
def metered() -> Iterator[Meter]:
    meter = Meter()
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)


def _count_aws_call(model: Any, **_: Any) -> None:
    meter = _current.get()
    if meter is not None:
        meter.aws[f"{model.service_model.endpoint_prefix}:{model.name}"] += 1


def watch(sdk_client: Any) -> None:
    """Count this botocore client's calls (idempotent: registered once per client)."""
    sdk_client.meta.events.register("before-call", _count_aws_call, unique_id=HOOK_ID)


def count_bitbucket_call() -> None:
    meter = _current.get()
    if meter is not None:
        meter.bitbucket += 1


def added(*counts: dict[str, int]) -> dict[str, int]:
    """Counters summed, as a plain dict sorted by key (what the job and the manifest store)."""
    total: Counter[str] = Counter()
    for c in counts:
        total.update({k: int(v) for k, v in c.items()})
    return dict(sorted((k, v) for k, v in total.items() if v))
