"""The push consumer runs each push under its invocation's deadline, so a token refresh it needs never outlives
the invocation (`bitbridge.tokens` hands it to TokenRefreshFunction when too little time is left)."""

from __future__ import annotations

from typing import Any

from bitbridge import deadlines
from bitbridge.imports import gitsync


class _Context:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_each_push_is_synced_knowing_when_the_invocation_ends(monkeypatch):
    seen: list[float | None] = []

    def sync_record(record: dict[str, Any], context: Any) -> None:
        seen.append(deadlines.left(deadlines.ends()))

    monkeypatch.setattr(gitsync, "sync_record", sync_record)
    records = [{"messageId": "m1", "body": "{}"}, {"messageId": "m2", "body": "{}"}]
    assert gitsync.handle_batch(records, _Context(12_000)) == {"batchItemFailures": []}
    assert len(seen) == 2 and all(left is not None and 0 < left <= 12 for left in seen)
    assert deadlines.ends() is None  # nothing leaks past the batch
