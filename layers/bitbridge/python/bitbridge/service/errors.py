"""The service API's refusals: `Problem`s with a stable `code`; `bitbridge.edge.STATUS` maps each to HTTP."""

from __future__ import annotations

from typing import Any

from bitbridge.errors import Problem


class ServiceRefused(Problem):
    """A refusal of a service call; `code` says which (e.g. `path_not_allowed`, `insufficient_scope`)."""

    code = "invalid_request"


def refuse(code: str, message: str, **details: Any) -> ServiceRefused:
    return ServiceRefused(message, code=code, **details)


def bad_request(message: str, code: str = "invalid_request") -> ServiceRefused:
    return refuse(code, message)
