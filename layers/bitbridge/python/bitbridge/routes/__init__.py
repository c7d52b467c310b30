"""The api function's routes (`functions/api`): one Powertools Router per area of the console, each a
screen or two. The function's resolver includes them all (`ROUTERS`); template.yaml routes the requests
(tests/unit/test_route_tables.py keeps the two the same).

pages          `/` (the console, or the sign-in buttons), `/login`, `/assets/*`, `/health`
connections    who is signed in and their connections: `/api/me`, `/api/connections/*`, `/api/logout`
repositories   the repository picker: `/api/repos`, `/api/repos/scopes`
imports        the Imports screen: `/api/imports` (list), one import, cancel, retry, a manual hook's secret
activity       the Activity screen: `/api/activity`
admin          the Admin screen: `/api/admin/providers`, `/api/admin/budgets`
request        what every route reads from its request (the session's user, query values)

Each route parses its request, calls one core function and answers through `bitbridge.edge`.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge.routes import activity, admin, connections, imports, pages, repositories

ROUTERS: tuple[APIGatewayHttpRouter, ...] = tuple(
    area.router for area in (pages, connections, repositories, imports, activity, admin)
)
