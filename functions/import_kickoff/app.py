"""Lambda entry point for POST /api/imports: idempotent import jobs, enqueued for the worker."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines, edge
from bitbridge.config import settings
from bitbridge.errors import InvalidRequest
from bitbridge.imports import kickoff as imports

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()
app = APIGatewayHttpResolver()
edge.install(app)


@app.post("/api/imports")
def kickoff() -> Response:
    event = app.current_event.raw_event
    user_id = edge.require_user(event)
    try:
        body = app.current_event.json_body
    except ValueError:
        raise InvalidRequest("The body must be JSON.") from None
    provider_id, names, reimport = imports.parse_request(body)
    started = imports.start(
        user_id,
        provider_id,
        names,
        reimport=reimport,
        hook_base_url=edge.base_url(event),
        wanted_parts=imports.parts(body),
    )
    return edge.api_json(202, {"imports": started})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    with deadlines.within(context):  # a token refresh never outlives this invocation
        return app.resolve(event, context)
