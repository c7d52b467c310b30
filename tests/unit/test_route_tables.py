"""Every function's route table is template.yaml's, both ways: a route a function serves that API Gateway
never sends it, or a template route no handler answers, fails here.

- a function on a Powertools resolver (api, import_kickoff): its resolver's routes;
- the service API: `ROUTES` (dispatch by `routeKey`) plus its browser route;
- a function with no table of its own (one route, no dispatch): exactly one route in the template.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from infra.local.gateway import Router
from infra.local.template import functions, load_template, routes

TEMPLATE = load_template()
GATEWAY = Router(routes(TEMPLATE))
HTTP_FUNCTIONS = {lid: fn for lid, fn in functions(TEMPLATE).items() if fn.routes}


def _module(logical_id: str) -> Any:
    return importlib.import_module(HTTP_FUNCTIONS[logical_id].module)


def _table(logical_id: str) -> set[str] | None:
    """The route keys the function's code dispatches on, in the template's spelling; None: no table."""
    module = _module(logical_id)
    resolver = getattr(module, "app", None)
    if resolver is not None:
        served = resolver._static_routes + resolver._dynamic_routes  # Powertools' registered routes
        return {f"{r.method} {re.sub(r'<(\w+)>', r'{\1}', r.path)}" for r in served}
    if hasattr(module, "ROUTES"):
        return set(module.ROUTES) | set(getattr(module, "BROWSER_ROUTES", ()))
    return None


def _sample_path(path: str) -> str:
    """A concrete path for a route's pattern (`{x}` -> a value, `{x+}` -> two segments)."""
    return re.sub(r"\{\w+\}", "sample", re.sub(r"\{\w+\+\}", "a/b", path))


def test_every_function_with_routes_is_checked():
    assert set(HTTP_FUNCTIONS) == {
        "ApiFunction",
        "ImportKickoffFunction",
        "OAuthAuthorizeFunction",
        "OAuthCallbackFunction",
        "ServiceApiFunction",
        "WebhookReceiverFunction",
    }


@pytest.mark.parametrize("logical_id", sorted(HTTP_FUNCTIONS))
def test_each_route_the_code_serves_is_sent_to_it_by_the_gateway(logical_id):
    table = _table(logical_id)
    if table is None:
        assert len(HTTP_FUNCTIONS[logical_id].routes) == 1, "a function without a route table serves one route"
        return
    for key in table:
        method, path = key.split(" ", 1)
        matched = GATEWAY.match(method, _sample_path(path))
        assert matched is not None, f"{logical_id} serves {key}, which template.yaml does not route"
        assert matched[0].function == logical_id, f"{key} is routed to {matched[0].function}, not {logical_id}"


@pytest.mark.parametrize("logical_id", sorted(HTTP_FUNCTIONS))
def test_each_template_route_is_served_by_its_function(logical_id):
    table = _table(logical_id)
    if table is None:
        return
    for route in HTTP_FUNCTIONS[logical_id].routes:
        if route.route_key in table:
            continue
        # A greedy route ({proxy+}) is served when at least one of the function's routes falls under it.
        pattern = re.compile("^" + re.sub(r"\\\{\w+\\\+\\\}", ".+", re.escape(route.path)) + "$")
        under = [
            k for k in table if k.split(" ", 1)[0] == route.method and pattern.match(_sample_path(k.split(" ")[1]))
        ]
        assert "+}" in route.path and under, (
            f"template.yaml routes {route.route_key} to {logical_id}; nothing serves it"
        )


def test_the_check_would_catch_a_route_the_template_sends_elsewhere_or_nowhere():
    assert GATEWAY.match("POST", "/api/imports")[0].function == "ImportKickoffFunction"  # not the api function's
    assert GATEWAY.match("PATCH", _sample_path("/service/v1/imports/{import_id}")) is None
