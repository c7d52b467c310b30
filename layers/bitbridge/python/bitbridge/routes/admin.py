"""The Admin screen: every provider with its verification state and its callback URL (admins only)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import accounts, edge
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
