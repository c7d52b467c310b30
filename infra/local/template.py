"""Read template.yaml: CloudFormation tags, intrinsic functions, routes and event sources.

The local stack and the tests take every table, queue, route and environment variable from
here, so they cannot drift from what `sam deploy` creates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns short-form tags (!Ref, !GetAtt, !Sub, ...) into their long form."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags only


def resources_of_type(template: dict[str, Any], *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in types:
            yield logical_id, resource


class _NoValue:
    """`Ref: AWS::NoValue`: the property (or list item) is left out, as CloudFormation does."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class Resolver:
    """Evaluates CloudFormation intrinsic functions against local physical ids.

    `ref` and `get_att` are callbacks supplied by whoever created the resources, so a
    reference resolves to exactly what was made (a moto queue URL, a table name, ...).
    """

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        ref: Callable[[str], str],
        get_att: Callable[[str, str], str],
        pseudo: dict[str, str],
    ) -> None:
        self.template = template
        self.parameters = parameters
        self._ref = ref
        self._get_att = get_att
        self.pseudo = pseudo

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self._ref(name)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def creates(self, resource: dict[str, Any]) -> bool:
        """Whether CloudFormation creates this resource (its `Condition`, if any, holds)."""
        return "Condition" not in resource or self.condition(resource["Condition"])

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}
        ((key, arg),) = value.items()
        match key:
            case "Ref":
                return self.ref(arg)
            case "Fn::GetAtt":
                return self._get_att(arg[0], arg[1])
            case "Fn::Sub":
                return self._sub(arg)
            case "Fn::Join":
                return str(arg[0]).join(str(self.resolve(v)) for v in arg[1])
            case "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            case "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            case "Fn::Not":
                return not self.resolve(arg[0])
            case "Condition":
                return self.condition(arg)
            case _ if key.startswith("Fn::"):
                raise NotImplementedError(f"intrinsic {key} is not supported by the local stack")
        resolved = self.resolve(arg)
        return {} if resolved is NO_VALUE else {key: resolved}

    def _sub(self, arg: str | list[Any]) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in extra:
                return str(extra[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att(logical_id, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!][^}]*)\}", replace, text)


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ... or ANY
    path: str  # e.g. /auth/{provider}/authorize
    function: str  # logical id

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Function:
    logical_id: str
    module: str  # importable module, e.g. functions.oauth_authorize.app
    handler: str  # attribute in the module
    timeout: int
    memory: int
    routes: tuple[Route, ...] = ()
    sqs_sources: tuple[dict[str, Any], ...] = ()
    stream_sources: tuple[dict[str, Any], ...] = ()
    schedules: tuple[dict[str, Any], ...] = ()  # Schedule / ScheduleV2 event properties
    log_sources: tuple[tuple[str, dict[str, Any]], ...] = ()  # (event name, CloudWatchLogs event properties)
    log_group: Any = None  # LoggingConfig.LogGroup as written (None: Lambda's /aws/lambda/{name})
    dead_letter: Any = None  # DeadLetterQueue.TargetArn as written (where failed async invocations go)
    async_retries: int = 2  # EventInvokeConfig.MaximumRetryAttempts
    environment: dict[str, Any] = field(default_factory=dict)
    reserved_concurrency: Any = None  # ReservedConcurrentExecutions as written (may be an intrinsic)


def functions(template: dict[str, Any]) -> dict[str, Function]:
    """Every AWS::Serverless::Function with its Globals applied."""
    defaults = template.get("Globals", {}).get("Function", {})
    out: dict[str, Function] = {}
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function"):
        props = {**defaults, **resource["Properties"]}
        env = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        code_dir = props["CodeUri"].strip("/").replace("/", ".")
        module_name, handler = props["Handler"].rsplit(".", 1)
        routes, sqs, streams, schedules, log_sources = [], [], [], [], []
        for event_name, event in props.get("Events", {}).items():
            ev_props = event.get("Properties", {})
            if event["Type"] == "HttpApi":
                routes.append(Route(ev_props["Method"].upper(), ev_props["Path"], logical_id))
            elif event["Type"] == "SQS":
                sqs.append(ev_props)
            elif event["Type"] == "DynamoDB":
                streams.append(ev_props)
            elif event["Type"] in ("Schedule", "ScheduleV2"):
                schedules.append(ev_props)
            elif event["Type"] == "CloudWatchLogs":
                log_sources.append((event_name, ev_props))
        out[logical_id] = Function(
            logical_id=logical_id,
            module=f"{code_dir}.{module_name}",
            handler=handler,
            timeout=int(props.get("Timeout", 3)),
            memory=int(props.get("MemorySize", 128)),
            routes=tuple(routes),
            sqs_sources=tuple(sqs),
            stream_sources=tuple(streams),
            schedules=tuple(schedules),
            log_sources=tuple(log_sources),
            log_group=(props.get("LoggingConfig") or {}).get("LogGroup"),
            dead_letter=(props.get("DeadLetterQueue") or {}).get("TargetArn"),
            async_retries=int((props.get("EventInvokeConfig") or {}).get("MaximumRetryAttempts", 2)),
            environment=env,
            reserved_concurrency=props.get("ReservedConcurrentExecutions"),
        )
    return out


def routes(template: dict[str, Any]) -> list[Route]:
    return [route for fn in functions(template).values() for route in fn.routes]
