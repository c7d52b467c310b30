"""Invoke the project's handlers the way Lambda does: imported once, called with (event, context),
under the function's IAM policy, within its Timeout, its reserved concurrency and the 6 MB response limit.

Python threads cannot be killed: an invocation that outlives its Timeout is abandoned (the caller gets
Lambda's timeout error at once, the concurrency slot is freed) and its thread is stopped at its next AWS
call (`iam.InvocationAbandoned`), where Lambda would have killed the sandbox.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from infra.local import iam
from infra.local.resources import ACCOUNT_ID, REGION
from infra.local.template import NO_VALUE, Function, Resolver, functions

log = logging.getLogger("local.lambda")

# Lambda's synchronous invocation response limit ("Response payload size exceeded maximum allowed
# payload size (6291556 bytes)").
MAX_RESPONSE_BYTES = 6_291_556


class FunctionError(RuntimeError):
    """The invocation failed as Lambda reports it (the function never returned a usable result)."""

    error_type = "Unhandled"


class FunctionTimedOut(FunctionError):
    error_type = "Sandbox.Timedout"


class ResponseTooLarge(FunctionError):
    error_type = "Function.ResponseSizeTooLarge"


class Throttled(FunctionError):
    """TooManyRequestsException: the function's reserved concurrency is in use."""

    error_type = "TooManyRequestsException"


def resolved_functions(template: dict[str, Any], resolver: Resolver) -> dict[str, Function]:
    """The template's functions with the settings the runtime enforces resolved (a reserved
    concurrency may be a parameter, `!If` ... `!Ref AWS::NoValue` when off)."""
    out = {}
    for name, fn in functions(template).items():
        reserved = resolver.resolve(fn.reserved_concurrency)
        out[name] = replace(fn, reserved_concurrency=None if reserved in (None, "", NO_VALUE) else int(reserved))
    return out


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


def _one_event_per_invocation() -> None:
    """Powertools' HTTP resolvers keep the request being handled on a class attribute
    (`BaseRouter.current_event = ...` in `resolve`, read back by every `app.current_event`). Right on Lambda,
    where a sandbox runs one invocation at a time; wrong here, where every function's invocations share one
    process: a request handled while another function resolves its own would read that one's event (an
    import kickoff saw the console's concurrent GET, with no body). Each invocation runs in its own context
    (`invoke`), so the two attributes are kept in context variables: one event per invocation, as on Lambda."""
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    if getattr(type(BaseRouter), "per_invocation", False):
        return
    variables = {name: contextvars.ContextVar(f"powertools.{name}") for name in ("current_event", "lambda_context")}

    def attribute(var: contextvars.ContextVar) -> property:
        return property(lambda _owner: var.get(None), lambda _owner, value: var.set(value))

    for name, var in variables.items():  # `resolver.current_event`, read and set on instances
        setattr(BaseRouter, name, attribute(var))
    # `BaseRouter.current_event`, read and set on the class itself: a property of its metaclass.
    per_invocation = {name: attribute(var) for name, var in variables.items()} | {"per_invocation": True}
    BaseRouter.__class__ = type("PerInvocationRouterState", (type(BaseRouter),), per_invocation)


class FunctionRunner:
    """Loads each function's handler on first use (a cold start) and invokes it."""

    def __init__(self, functions: dict[str, Function]) -> None:
        _one_event_per_invocation()
        self.functions = functions
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self._lock = threading.Lock()
        # ReservedConcurrentExecutions: at most that many invocations of the function at once.
        self._slots = {
            name: threading.BoundedSemaphore(fn.reserved_concurrency)
            for name, fn in functions.items()
            if fn.reserved_concurrency is not None
        }

    def handler(self, logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
        with self._lock:
            if logical_id not in self._handlers:
                fn = self.functions[logical_id]
                self._handlers[logical_id] = getattr(importlib.import_module(fn.module), fn.handler)
            return self._handlers[logical_id]

    def invoke(self, logical_id: str, event: dict[str, Any], *, wait_at_most: float | None = None) -> Any:
        """Run one invocation; FunctionError subclasses for what Lambda reports as errors.

        `wait_at_most` is the caller's own limit (API Gateway's integration timeout): past it the
        invocation is abandoned too, as the caller gave up on it.
        """
        fn = self.functions[logical_id]
        slot = self._slots.get(logical_id)
        if slot is not None and not slot.acquire(blocking=False):
            log.warning("%s throttled: reserved concurrency %s in use", logical_id, fn.reserved_concurrency)
            raise Throttled(f"Rate Exceeded: {logical_id} is at its reserved concurrency")
        released = threading.Lock()

        def release() -> None:
            if slot is not None and released.acquire(blocking=False):
                slot.release()

        try:
            handler = self.handler(logical_id)
            context = LambdaContext(fn.logical_id, fn.memory, fn.timeout)
            invocation = iam.Invocation(logical_id, context.aws_request_id)
            outcome: dict[str, Any] = {}

            def run() -> None:
                try:
                    with iam.acting_as(invocation):
                        outcome["result"] = handler(event, context)
                except BaseException as exc:
                    outcome["error"] = exc
                finally:
                    release()

            thread = threading.Thread(
                target=contextvars.copy_context().run, args=(run,), name=f"lambda:{logical_id}", daemon=True
            )
            thread.start()
            limit = fn.timeout if wait_at_most is None else min(fn.timeout, wait_at_most)
            thread.join(limit)
            if thread.is_alive():
                invocation.abandoned.set()
                log.error("%s Task timed out after %.2f seconds (request %s)", logical_id, limit, invocation.request_id)
                raise FunctionTimedOut(f"{logical_id}: Task timed out after {limit:.2f} seconds")
        finally:
            release()
        if "error" in outcome:
            raise outcome["error"]
        result = outcome.get("result")
        size = len(json.dumps(result, default=str).encode())
        if size > MAX_RESPONSE_BYTES:
            log.error("%s: response of %d bytes exceeds Lambda's %d-byte limit", logical_id, size, MAX_RESPONSE_BYTES)
            raise ResponseTooLarge(
                f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            )
        return result
