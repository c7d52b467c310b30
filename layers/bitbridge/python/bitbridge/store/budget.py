"""Rate-limit budgets (BudgetsTable): one item per (provider, whose allowance, resource class).

  BUDGET#{provider}#{who}   / {class}     who: `user#{bitbridge user id}` (per_user) or `consumer` (per_consumer)

Every write is a whole-item PutItem conditioned on the version read (`ver`), so the arithmetic is done in
Python on a consistent state and two containers never both spend the same room (the loser gets the item
as it is now with ReturnValuesOnConditionCheckFailure, and plans again: no extra read). Plain boto3: this
is on the path of every Bitbucket call, and PynamoDB's PutItem cannot return the item a condition saw.

Attributes:
  ver            the version every write is conditioned on
  model          "window" | "bucket" (bitbridge.bitbucket.limits), limit, window_seconds | refill_per_second:
                 the limits last applied (for display; the provider's settings are the truth)
  grants         window: {bucket end in epoch ms: calls granted in that bucket}
  tokens, at     bucket: the level after the last grant and when (epoch seconds; `at` in the future after a 429)
  ceiling, ceiling_until   a 429 from Bitbucket anyway: at most `ceiling` calls in the window until then
  held_until     a 429 with Retry-After: nothing granted before then
  rejected, rejected_at    429s Bitbucket served on this budget, and the last one's time
  waiting        {priority: {"until": epoch, "n": waiters}}: refused work and when its last waiter resumes
  granted        calls granted since the item was made (a counter for reports)
  updated_at, expires_at   last write; TTL (an idle budget disappears after a week)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from bitbridge.aws import client
from bitbridge.config import settings

IDLE_TTL_SECONDS = 7 * 24 * 3600
USER = "user"
CONSUMER = "consumer"


@dataclass(frozen=True)
class BudgetKey:
    provider_id: str
    who: str  # user#{user id} | consumer
    klass: str

    @property
    def user_id(self) -> str | None:
        kind, _, user = self.who.partition("#")
        return user if kind == USER else None

    def describe(self) -> str:
        return f"{self.provider_id}/{self.who}/{self.klass}"


def for_user(provider_id: str, user_id: str, klass: str) -> BudgetKey:
    return BudgetKey(provider_id, f"{USER}#{user_id}", klass)


def for_consumer(provider_id: str, klass: str) -> BudgetKey:
    return BudgetKey(provider_id, CONSUMER, klass)


def _pk(provider_id: str, who: str) -> str:
    return f"BUDGET#{provider_id}#{who}"


def _key(key: BudgetKey) -> dict[str, Any]:
    return {"pk": {"S": _pk(key.provider_id, key.who)}, "sk": {"S": key.klass}}


@dataclass
class BudgetState:
    ver: int = 0
    model: str = ""
    limit: int = 0
    window_seconds: float | None = None
    refill_per_second: float | None = None
    grants: dict[int, int] = field(default_factory=dict)
    tokens: float | None = None  # None: never spent (a full bucket)
    at: float = 0.0
    ceiling: int | None = None
    ceiling_until: float = 0.0
    held_until: float = 0.0
    rejected: int = 0
    rejected_at: float | None = None
    waiting: dict[str, dict[str, float]] = field(default_factory=dict)
    granted: int = 0
    updated_at: float = 0.0

    def copy(self) -> BudgetState:
        return BudgetState(
            **{
                **self.__dict__,
                "grants": dict(self.grants),
                "waiting": {p: dict(w) for p, w in self.waiting.items()},
            }
        )


def _n(value: float | int) -> dict[str, str]:
    return {"N": format(Decimal(repr(float(value))).normalize(), "f") if isinstance(value, float) else str(value)}


def _item(key: BudgetKey, state: BudgetState) -> dict[str, Any]:
    item: dict[str, Any] = {
        **_key(key),
        "provider_id": {"S": key.provider_id},
        "who": {"S": key.who},
        "ver": _n(state.ver),
        "model": {"S": state.model},
        "limit": _n(state.limit),
        "grants": {"M": {str(end): _n(count) for end, count in state.grants.items()}},
        "at": _n(round(state.at, 3)),
        "ceiling_until": _n(round(state.ceiling_until, 3)),
        "held_until": _n(round(state.held_until, 3)),
        "rejected": _n(state.rejected),
        "waiting": {
            "M": {
                p: {"M": {"until": _n(round(w["until"], 3)), "n": _n(int(w.get("n", 1)))}}
                for p, w in state.waiting.items()
            }
        },
        "granted": _n(state.granted),
        "updated_at": _n(round(state.updated_at, 3)),
        "expires_at": _n(int(state.updated_at) + IDLE_TTL_SECONDS),
    }
    optional = {
        "window_seconds": state.window_seconds,
        "refill_per_second": state.refill_per_second,
        "tokens": None if state.tokens is None else round(state.tokens, 4),
        "ceiling": state.ceiling,
        "rejected_at": None if state.rejected_at is None else round(state.rejected_at, 3),
    }
    item.update({name: _n(value) for name, value in optional.items() if value is not None})
    return item


def _number(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name, {}).get("N")
    return float(value) if value is not None else None


def _state(item: dict[str, Any]) -> BudgetState:
    waiting = {
        p: {"until": float(w["M"]["until"]["N"]), "n": float(w["M"].get("n", {"N": "1"})["N"])}
        for p, w in item.get("waiting", {}).get("M", {}).items()
    }
    tokens = _number(item, "tokens")
    ceiling = _number(item, "ceiling")
    return BudgetState(
        ver=int(_number(item, "ver") or 0),
        model=item.get("model", {}).get("S", ""),
        limit=int(_number(item, "limit") or 0),
        window_seconds=_number(item, "window_seconds"),
        refill_per_second=_number(item, "refill_per_second"),
        grants={int(end): int(v["N"]) for end, v in item.get("grants", {}).get("M", {}).items()},
        tokens=tokens,
        at=_number(item, "at") or 0.0,
        ceiling=None if ceiling is None else int(ceiling),
        ceiling_until=_number(item, "ceiling_until") or 0.0,
        held_until=_number(item, "held_until") or 0.0,
        rejected=int(_number(item, "rejected") or 0),
        rejected_at=_number(item, "rejected_at"),
        waiting=waiting,
        granted=int(_number(item, "granted") or 0),
        updated_at=_number(item, "updated_at") or 0.0,
    )


def load(key: BudgetKey) -> BudgetState | None:
    """The budget as stored now (strongly consistent), or None when it was never used."""
    item = (
        client("dynamodb").get_item(TableName=settings().budgets_table, Key=_key(key), ConsistentRead=True).get("Item")
    )
    return _state(item) if item else None


def save(key: BudgetKey, state: BudgetState, read_ver: int | None) -> BudgetState | None:
    """Write `state` (its `ver` already advanced) if the item is still at `read_ver` (None: absent).
    None when written; otherwise the item as it is now (another writer came first: plan again)."""
    condition = "attribute_not_exists(pk)" if read_ver is None else "ver = :read"
    values = {} if read_ver is None else {"ExpressionAttributeValues": {":read": _n(read_ver)}}
    try:
        client("dynamodb").put_item(
            TableName=settings().budgets_table,
            Item=_item(key, state),
            ConditionExpression=condition,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **values,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        current: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
        return _state(current) if current else BudgetState(ver=-1)  # deleted meanwhile: plan from nothing
    return None


def listed(provider_id: str | None = None, user_id: str | None = None) -> list[tuple[BudgetKey, BudgetState]]:
    """Budgets, for reports: one person's on one provider (a Query), else every one (a Scan: the table
    holds a few items per person and consumer), filtered by provider and person."""
    ddb = client("dynamodb")
    table = settings().budgets_table
    items: list[dict[str, Any]] = []
    if provider_id is not None and user_id is not None:
        pages = ddb.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": _pk(provider_id, f"{USER}#{user_id}")}},
            ConsistentRead=True,
        )
    else:
        pages = ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    for page in pages:
        items += page.get("Items", [])
    found = []
    for item in items:
        key = BudgetKey(item["provider_id"]["S"], item["who"]["S"], item["sk"]["S"])
        if provider_id is not None and key.provider_id != provider_id:
            continue
        if user_id is not None and key.user_id != user_id:
            continue
        found.append((key, _state(item)))
    return sorted(found, key=lambda kv: (kv[0].provider_id, kv[0].who, kv[0].klass))
