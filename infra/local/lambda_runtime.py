"""Invoke the project's handlers the way Lambda does: imported once, called with (event, context)."""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local.resources import ACCOUNT_ID, REGION
from infra.local.template import Function


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionRunner:
    """Loads each function's handler on first use (a cold start) and invokes it."""

    def __init__(self, functions: dict[str, Function]) -> None:
        self.functions = functions
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self._lock = threading.Lock()

    def handler(self, logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
        with self._lock:
            if logical_id not in self._handlers:
                fn = self.functions[logical_id]
                self._handlers[logical_id] = getattr(importlib.import_module(fn.module), fn.handler)
            return self._handlers[logical_id]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        fn = self.functions[logical_id]
        context = LambdaContext(fn.logical_id, fn.memory, fn.timeout)
        return self.handler(logical_id)(event, context)
