"""HTTP plumbing shared by the front-ends (moto's urls.py role): routes, request context, JSON replies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .models import Backend

Handler = Callable[..., Response]


@dataclass
class Ctx:
    """What a handler needs: the parsed request, the backend and this server's public roots."""

    request: Request
    backend: Backend
    flavor: str
    root: str  # web root, e.g. http://127.0.0.1:8990 or http://127.0.0.1:7990/bitbucket
    emulator: Any = None  # the Emulator (control API only)

    @property
    def api(self) -> str:
        return self.root + "/2.0" if self.flavor == "cloud" else self.root + "/rest/api/latest"

    def json_body(self) -> dict:
        if not self.request.get_data():
            return {}
        try:
            body = json.loads(self.request.get_data())
        except ValueError as exc:
            from .models import BadRequest

            raise BadRequest(f"Invalid JSON body: {exc}") from exc
        if not isinstance(body, dict):
            from .models import BadRequest

            raise BadRequest("The JSON body must be an object.")
        return body


class Routes:
    """A werkzeug Map plus handlers; the rule string doubles as the endpoint template for request counting."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, tuple[str, ...], Handler]] = []

    def route(self, rule: str, methods: tuple[str, ...] = ("GET",)) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.rules.append((rule, methods, fn))
            return fn

        return deco

    def build(self, *others: Routes) -> tuple[Map, dict[str, Handler]]:
        rules, handlers = [], {}
        for i, (rule, methods, fn) in enumerate([r for routes in (self, *others) for r in routes.rules]):
            endpoint = f"{i}:{fn.__name__}"
            handlers[endpoint] = fn
            rules.append(Rule(rule, endpoint=endpoint, methods=list(methods)))
        return Map(rules, strict_slashes=False, merge_slashes=False), handlers


_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def template(rule: str) -> str:
    """'/2.0/repositories/<workspace>' -> '/2.0/repositories/{workspace}'."""
    return _PARAM.sub(r"{\1}", rule)


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    data = "" if body is None else json.dumps(body)
    return Response(data, status=status, headers=headers or {}, content_type=content_type)


def html_response(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None when the request carries no Bearer header."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def natural_key(text: str, *, fold_case: bool = True) -> list:
    """Sort key that orders digit runs numerically, so feature/10 follows feature/9."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower() if fold_case else p) for p in re.split(r"(\d+)", text)]


def int_arg(request: Request, name: str, default: int) -> int:
    from .models import BadRequest

    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise BadRequest(f"Invalid {name}: {raw!r}") from exc
