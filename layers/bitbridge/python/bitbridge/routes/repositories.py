"""The repository picker: a provider's repositories with their import state, and its workspaces or projects."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import edge
from bitbridge.imports import listing
from bitbridge.routes.request import limit, provider_param, query_value, user

router = APIGatewayHttpRouter()


@router.get("/api/repos")
def repositories() -> Response:
    """The signed-in user's repositories on one provider, each with its import status."""
    event = router.current_event.raw_event
    body = listing.list_repositories(
        user(event),
        provider_param(event),
        search=query_value(event, "q"),
        scope=query_value(event, "workspace") or query_value(event, "project"),
        cursor=query_value(event, "cursor"),
        limit=limit(event, listing.MAX_LIMIT, listing.MAX_LIMIT),
    )
    return edge.api_json(200, body)


@router.get("/api/repos/scopes")
def repository_scopes() -> Response:
    """Workspaces (Cloud) or projects (Data Center) for a picker."""
    event = router.current_event.raw_event
    return edge.api_json(200, listing.scopes(user(event), provider_param(event)))
