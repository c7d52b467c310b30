"""Lambda entry point for /health and the session-authenticated /api/* routes."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge.health import readiness

logger = Logger()
app = APIGatewayHttpResolver()


@app.get("/health")
def health() -> Response:
    ready, body = readiness()
    return Response(status_code=200 if ready else 503, content_type=content_types.APPLICATION_JSON, body=body)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
