"""IAM, enforced locally: each function's AWS calls are allowed only by its own policy in template.yaml.

Who is calling: `acting_as(function)` (FunctionRunner.invoke and the event-source pollers use it) sets a
context variable for the invocation. Threads the handler starts (ThreadPoolExecutor...) do not inherit
context variables, so an audit hook (`sys.addaudithook`, the interpreter's documented hook for thread
starts) records which invocation started each thread. Calls made outside any invocation - the stack
creating resources, test setup, the admin CLI - are not enforced.

Where: a handler on botocore's event system, in every session (boto3's default session, PynamoDB's
per-thread sessions), added the way moto's mock_aws adds its own (botocore's BUILTIN_HANDLERS).
`before-parameter-build` sees the API parameters and decides; a denial answers `before-call` with the
error AWS sends, so the SDK raises its own ClientError (AccessDeniedException, or AccessDenied for S3)
without retrying, and the denial is logged with the function, action and resource.

What: the statements of the function's `Policies:` plus what SAM adds for its event sources, resolved
against the resources the local stack created. Statements are matched by moto's IAM evaluator
(`moto.iam.access_control.IAMPolicyStatement`: Action/NotAction, Resource, Effect, explicit deny wins);
moto ignores conditions it does not know and treats a missing context key as a match, so conditions are
evaluated here, for the operators listed in `_OPERATORS` (a template using any other fails at start-up).
"""

from __future__ import annotations

import contextvars
import fnmatch
import logging
import re
import sys
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from infra.local.template import Resolver, resources_of_type

log = logging.getLogger("local.iam")

# ------------------------------------------------------------------------------------------ who


@dataclass
class Invocation:
    """One invocation of a function; `abandoned` once Lambda would have stopped it (timeout)."""

    function: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    abandoned: threading.Event = field(default_factory=threading.Event)


class InvocationAbandoned(RuntimeError):
    """Raised in an abandoned invocation's thread at its next AWS call (Lambda would have killed it)."""


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("local_invocation", default=None)
_thread_owner: weakref.WeakKeyDictionary[threading.Thread, Invocation] = weakref.WeakKeyDictionary()


def current_invocation() -> Invocation | None:
    invocation = _current.get()
    if invocation is None:
        invocation = _thread_owner.get(threading.current_thread())
    return invocation


@contextmanager
def acting_as(function: str | Invocation) -> Iterator[Invocation]:
    """Make the AWS calls in this block (and in threads it starts) as `function`'s execution role."""
    invocation = function if isinstance(function, Invocation) else Invocation(function)
    token = _current.set(invocation)
    try:
        yield invocation
    finally:
        _current.reset(token)


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    # A thread started during an invocation belongs to it (contextvars do not cross into threads).
    if event == "_thread.start_joinable_thread" or event == "_thread.start_new_thread":
        invocation = current_invocation()
        thread = getattr(args[0], "__self__", None) if args else None
        if invocation is not None and isinstance(thread, threading.Thread):
            _thread_owner[thread] = invocation


# ------------------------------------------------------------------------------------------ what


@dataclass(frozen=True)
class Call:
    """One AWS request as IAM sees it: the action, each resource it touches, the condition keys."""

    action: str
    resources: tuple[str, ...]
    context: dict[str, str | list[str]]


# S3 operations whose IAM action has another name.
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "DeleteObjects": "DeleteObject",
    "CopyObject": "PutObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
}
# DynamoDB transactions are authorised item by item, with the item's own action.
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def describe_call(service: str, operation: str, params: dict[str, Any], region: str, account: str) -> list[Call]:
    """The IAM authorisation requests AWS makes for one API call (one per distinct action)."""
    arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            calls: dict[str, list[str]] = {}
            for item in params.get("TransactItems", []):
                ((kind, spec),) = item.items()
                calls.setdefault(_TRANSACT_ACTIONS[kind], []).append(
                    arn.format("dynamodb", f"table/{spec['TableName']}")
                )
            return [Call(f"dynamodb:{a}", tuple(r), {}) for a, r in calls.items()]
        if operation == "TransactGetItems":
            tables = [i["Get"]["TableName"] for i in params.get("TransactItems", [])]
            return [Call("dynamodb:GetItem", tuple(arn.format("dynamodb", f"table/{t}") for t in tables), {})]
        if "RequestItems" in params:  # BatchGetItem, BatchWriteItem
            tables = list(params["RequestItems"])
            return [Call(f"dynamodb:{operation}", tuple(arn.format("dynamodb", f"table/{t}") for t in tables), {})]
        if "StreamArn" in params:
            return [Call(f"dynamodb:{operation}", (params["StreamArn"],), {})]
        if "ShardIterator" in params:  # a shard iterator starts with its stream's ARN
            return [Call(f"dynamodb:{operation}", (params["ShardIterator"].split("|", 1)[0],), {})]
        if "TableName" in params:
            resource = arn.format("dynamodb", f"table/{params['TableName']}")
            if params.get("IndexName"):
                resource += f"/index/{params['IndexName']}"
            return [Call(f"dynamodb:{operation}", (resource,), {})]
        return [Call(f"dynamodb:{operation}", ("*",), {})]
    if service == "sqs":
        url = params.get("QueueUrl")
        name = url.rstrip("/").rsplit("/", 1)[-1] if url else params.get("QueueName")
        # A batch is authorised as its single-message action (SendMessageBatch needs sqs:SendMessage).
        action = f"sqs:{operation.removesuffix('Batch')}"
        return [Call(action, (arn.format("sqs", name) if name else "*",), {})]
    if service == "kms":
        key = str(params.get("KeyId") or params.get("DestinationKeyId") or "")
        if not key.startswith("arn:"):
            key = arn.format("kms", key if key.startswith("alias/") else f"key/{key or 'unknown'}")
        context: dict[str, str | list[str]] = {
            f"kms:EncryptionContext:{k}": v for k, v in (params.get("EncryptionContext") or {}).items()
        }
        if params.get("EncryptionContext"):
            context["kms:EncryptionContextKeys"] = list(params["EncryptionContext"])
        return [Call(f"kms:{operation}", (key,), context)]
    if service == "secretsmanager":
        secret = str(params.get("SecretId") or params.get("Name") or "*")
        if not secret.startswith("arn:") and secret != "*":
            # A secret's ARN is its name plus six random characters.
            secret = arn.format("secretsmanager", f"secret:{secret}-??????")
        return [Call(f"secretsmanager:{operation}", (secret,), {})]
    if service == "events":
        if operation == "PutEvents":
            buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries", [])}
            resources = tuple(b if b.startswith("arn:") else arn.format("events", f"event-bus/{b}") for b in buses)
            return [Call("events:PutEvents", resources or ("*",), {})]
        return [Call(f"events:{operation}", ("*",), {})]
    if service == "s3":
        action = f"s3:{_S3_ACTIONS.get(operation, operation)}"
        if operation in ("DeleteObject", "GetObject") and params.get("VersionId"):
            action += "Version"  # one version of an object is a permission of its own
        bucket, key = params.get("Bucket"), params.get("Key")
        if bucket and key is not None and action != "s3:ListBucket":
            return [Call(action, (f"arn:aws:s3:::{bucket}/{key}",), {})]
        return [Call(action, (f"arn:aws:s3:::{bucket}" if bucket else "*",), {})]
    return [Call(f"{service}:{operation}", ("*",), {})]


# ------------------------------------------------------------------------------------------ policy

# The managed policies SAM attaches for event sources (their documents as AWS publishes them, less the
# CloudWatch Logs actions, which the local stack does not call). Resource "*" is what AWS grants.
_SQS_EVENT_SOURCE = {
    "Effect": "Allow",
    "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
    "Resource": "*",
}  # AWSLambdaSQSQueueExecutionRole
_STREAM_EVENT_SOURCE = {
    "Effect": "Allow",
    "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
    "Resource": "*",
}  # AWSLambdaDynamoDBExecutionRole


def sam_event_source_statements(events: dict[str, Any]) -> list[dict[str, Any]]:
    """What SAM adds to a function's role for its event sources (still unresolved)."""
    statements: list[dict[str, Any]] = []
    for event in events.values():
        props = event.get("Properties", {})
        if event["Type"] == "SQS":
            statements.append(_SQS_EVENT_SOURCE)
        elif event["Type"] in ("DynamoDB", "Kinesis"):
            statements.append(_STREAM_EVENT_SOURCE)
        destination = props.get("DestinationConfig", {}).get("OnFailure", {})
        if destination.get("Type") == "SQS":  # SAM grants sqs:SendMessage on an on-failure queue
            statements.append({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": destination["Destination"]})
        elif destination.get("Type") == "SNS":
            statements.append({"Effect": "Allow", "Action": "sns:Publish", "Resource": destination["Destination"]})
    return statements


def function_policies(template: dict[str, Any], resolver: Resolver) -> dict[str, list[dict[str, Any]]]:
    """Every function's statements, resolved: its `Policies:` and SAM's event-source grants."""
    defaults = template.get("Globals", {}).get("Function", {})
    out: dict[str, list[dict[str, Any]]] = {}
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function"):
        props = {**defaults, **resource["Properties"]}
        policies = props.get("Policies", [])
        statements: list[dict[str, Any]] = []
        for policy in policies if isinstance(policies, list) else [policies]:
            if not (isinstance(policy, dict) and "Statement" in policy):
                raise NotImplementedError(f"{logical_id}: only inline policy documents are enforced locally")
            found = policy["Statement"]
            statements.extend(found if isinstance(found, list) else [found])
        statements.extend(sam_event_source_statements(props.get("Events", {})))
        dead_letter = props.get("DeadLetterQueue") or {}
        if dead_letter.get("Type") == "SQS":  # SAM grants sqs:SendMessage on the async dead-letter queue
            statements.append({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": dead_letter["TargetArn"]})
        out[logical_id] = [_checked(logical_id, s) for s in resolver.resolve(statements)]
    return out


# ------------------------------------------------------------------------------------------ conditions


def _string_like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


_OPERATORS = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringNotEquals": lambda expected, actual: actual != expected,
    "StringEqualsIgnoreCase": lambda expected, actual: actual.lower() == expected.lower(),
    "StringLike": lambda expected, actual: _string_like(expected, actual),
    "StringNotLike": lambda expected, actual: not _string_like(expected, actual),
    "Bool": lambda expected, actual: actual.lower() == str(expected).lower(),
    "ArnEquals": lambda expected, actual: actual == expected,
    "ArnLike": lambda expected, actual: _string_like(expected, actual),
}
_NEGATED = {"StringNotEquals", "StringNotLike"}


def _split_operator(name: str) -> tuple[str, str, bool]:
    """'ForAnyValue:StringLikeIfExists' -> ('ForAnyValue', 'StringLike', True)."""
    qualifier, _, operator = name.rpartition(":")
    if_exists = operator.endswith("IfExists")
    return qualifier, operator.removesuffix("IfExists"), if_exists


def _checked(function: str, statement: dict[str, Any]) -> dict[str, Any]:
    for name in statement.get("Condition", {}):
        qualifier, operator, _ = _split_operator(name)
        if (operator not in _OPERATORS and operator != "Null") or qualifier not in ("", "ForAnyValue", "ForAllValues"):
            raise NotImplementedError(f"{function}: condition operator {name} is not evaluated by the local stack")
    return statement


def conditions_hold(conditions: dict[str, dict[str, Any]], context: dict[str, str | list[str]]) -> bool:
    """IAM condition evaluation: every operator, every key must hold; a key's values are ORed."""
    lowered = {k.lower(): v for k, v in context.items()}
    for name, keys in conditions.items():
        qualifier, operator, if_exists = _split_operator(name)
        for key, expected in keys.items():
            wanted = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
            present = key.lower() in lowered
            if operator == "Null":  # Null: true means "the key is absent"
                if not any((w.lower() == "true") == (not present) for w in wanted):
                    return False
                continue
            if not present:
                if if_exists or (qualifier == "ForAllValues") or (operator in _NEGATED and not qualifier):
                    continue
                return False
            raw = lowered[key.lower()]
            actual = raw if isinstance(raw, list) else [raw]
            test = _OPERATORS[operator]
            if operator in _NEGATED:
                matches = [all(test(w, a) for w in wanted) for a in actual]
            else:
                matches = [any(test(w, a) for w in wanted) for a in actual]
            if not (all(matches) if qualifier == "ForAllValues" else any(matches)):
                return False
    return True


# ------------------------------------------------------------------------------------------ decide


class _Statement(IAMPolicyStatement):
    """moto's statement matcher with IAM's wildcards: `*` and `?` only, every other character literal
    (moto turns the pattern into a regex unescaped, so `.` in an ARN matched any character)."""

    @staticmethod
    def _match(pattern: str, string: str) -> re.Match[str] | None:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.match(f"^{regex}$", string, re.DOTALL)


def _for_matching(statement: dict[str, Any]) -> dict[str, Any]:
    """The statement without its conditions (evaluated by `conditions_hold`), actions lower-cased
    (IAM actions are case-insensitive; resources are not)."""
    out = {k: v for k, v in statement.items() if k != "Condition"}
    for key in ("Action", "NotAction"):
        if key in out:
            out[key] = [a.lower() for a in out[key]] if isinstance(out[key], list) else out[key].lower()
    return out


class Enforcer:
    def __init__(self, policies: dict[str, list[dict[str, Any]]], region: str, account: str) -> None:
        self.region = region
        self.account = account
        self.statements = {
            fn: [(_Statement(_for_matching(s)), s.get("Condition", {})) for s in stmts]
            for fn, stmts in policies.items()
        }

    def allowed(self, function: str, action: str, resource: str, context: dict[str, str | list[str]]) -> bool:
        allowed = False
        for statement, conditions in self.statements.get(function, []):
            result = statement.is_action_permitted(action.lower(), resource)
            if result == PermissionResult.NEUTRAL or not conditions_hold(conditions, context):
                continue
            if result == PermissionResult.DENIED:
                return False  # an explicit deny always wins
            allowed = True
        return allowed

    def denial(self, function: str, service: str, operation: str, params: dict[str, Any]) -> tuple[str, str] | None:
        """(action, resource) of the first authorisation that fails, or None when the call is allowed."""
        for call in describe_call(service, operation, params, self.region, self.account):
            for resource in call.resources:
                if not self.allowed(function, call.action, resource, call.context):
                    return call.action, resource
        return None


_enforcer: Enforcer | None = None
_DENIED_KEY = "bitbridge_local_iam_denied"


def install(enforcer: Enforcer | None) -> None:
    """Enforce `enforcer` from now on (None: stop enforcing). Idempotent."""
    global _enforcer
    _enforcer = enforcer
    _register_hooks()


def _before_parameter_build(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    invocation = current_invocation()
    if invocation is None:
        return
    if invocation.abandoned.is_set():
        raise InvocationAbandoned(f"{invocation.function} timed out; its invocation was abandoned")
    enforcer = _enforcer
    if enforcer is None:
        return
    service = model.service_model.signing_name or model.service_model.endpoint_prefix
    denied = enforcer.denial(invocation.function, service, model.name, params)
    if denied is not None:
        action, resource = denied
        log.warning("IAM denied: function=%s action=%s resource=%s", invocation.function, action, resource)
        context[_DENIED_KEY] = (invocation.function, action, resource, service)


def _before_call(context: dict[str, Any], model: Any, **_: Any) -> tuple[Any, dict[str, Any]] | None:
    denied = context.get(_DENIED_KEY)
    if denied is None:
        return None
    from botocore.awsrequest import AWSResponse

    function, action, resource, service = denied
    principal = f"arn:aws:sts::{_enforcer.account if _enforcer else ''}:assumed-role/{function}Role/{function}"
    message = (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )
    code = "AccessDenied" if service == "s3" else "AccessDeniedException"
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403 if service == "s3" else 400, "HTTPHeaders": {}},
    }
    return AWSResponse("", parsed["ResponseMetadata"]["HTTPStatusCode"], {}, None), parsed


_HANDLERS = (("before-parameter-build", _before_parameter_build), ("before-call", _before_call))
_registered = False
_register_lock = threading.Lock()


def _register_hooks() -> None:
    global _registered
    with _register_lock:
        if _registered:
            return
        import boto3
        import botocore.handlers

        sys.addaudithook(_on_audit)
        # Every botocore session created from now on (PynamoDB makes one per thread)...
        botocore.handlers.BUILTIN_HANDLERS.extend(_HANDLERS)
        # ...and boto3's default session if it already exists.
        if boto3.DEFAULT_SESSION is not None:
            for event, handler in _HANDLERS:
                boto3.DEFAULT_SESSION.events.register(event, handler)
        _registered = True


def enforcer_for(template: dict[str, Any], resources: Any) -> Enforcer:
    """The enforcer for `template`'s functions, with ARNs resolved against `resources` (LocalResources)."""
    from infra.local.resources import ACCOUNT_ID, REGION

    return Enforcer(function_policies(template, resources.resolver), REGION, ACCOUNT_ID)
