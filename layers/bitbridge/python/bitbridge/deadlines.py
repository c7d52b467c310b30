"""When the current Lambda invocation ends, for work that must not outlive it (a token refresh).

A handler whose work may refresh a token opens `within(context)` around it; the core reads `ends()`: the
monotonic time at which Lambda stops the invocation (its `get_remaining_time_in_millis` when the handler
began), or None outside Lambda (the command line, tests), where nothing stops the work. A context variable,
not a global: the local stack runs many invocations in one process, each in its own context; a thread
pool's threads start without it, so a `calls.Caller` keeps the deadline of the invocation that made it.
Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ends: ContextVar[float | None] = ContextVar("bitbridge_invocation_ends", default=None)


@contextmanager
def within(context: Any) -> Iterator[None]:
    """Run the block as the invocation `context` (Lambda's context object) describes."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    ends = time.monotonic() + remaining() / 1000 if callable(remaining) else None
    token = _ends.set(ends)
    try:
        yield
    finally:
        _ends.reset(token)


def ends() -> float | None:
    """The current invocation's end (`time.monotonic()` scale), or None when no invocation bounds the work."""
    return _ends.get()


def left(ends: float | None) -> float | None:
    """Seconds until `ends` (None: unbounded)."""
    return None if ends is None else ends - time.monotonic()
