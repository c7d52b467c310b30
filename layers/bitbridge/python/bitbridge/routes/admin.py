"""The Admin screen: every provider with its verification state and its callback URL, and every person's
rate-limit budgets (admins only)."""

from __future__ import annotations

import time

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import accounts, budget, edge
from bitbridge.console import views
from bitbridge.errors import AccessDenied
from bitbridge.routes.request import user

router = APIGatewayHttpRouter()


@router.get("/api/admin/providers")
def admin_providers() -> Response:
    event = router.current_event.raw_event
    if not accounts.is_admin(user(event)):
        raise AccessDenied("Only admins (the deploy parameter AdminUsers) may see the providers.")
    return edge.api_json(200, {"providers": views.admin_providers(edge.base_url(event))})


@router.get("/api/admin/budgets")
def admin_budgets() -> Response:
    """Per person (or OAuth consumer) and resource class: used and limit now, 429s met, work waiting."""
    if not accounts.is_admin(user(router.current_event.raw_event)):
        raise AccessDenied("Only admins (the deploy parameter AdminUsers) may see everyone's budgets.")
    return edge.api_json(200, {"budgets": budget.report(), "now": time.time()})
