"""The Activity screen: the newest normalised events of the repositories the user imported."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import edge
from bitbridge.imports import activity
from bitbridge.routes.request import limit, user

router = APIGatewayHttpRouter()


@router.get("/api/activity")
def recent_activity() -> Response:
    event = router.current_event.raw_event
    return edge.api_json(200, {"events": activity.recent_events(user(event), limit(event, 50, 100))})
