"""Lambda entry point for POST /api/imports: idempotent import jobs, enqueued for the worker."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import web
from bitbridge.api_support import json_response, register_errors, signed_in_user
from bitbridge.config import settings
from bitbridge.imports import jobs

logger = Logger()
app = APIGatewayHttpResolver()
register_errors(app)


@app.post("/api/imports")
def kickoff() -> Response:
    user_id = signed_in_user(app)
    try:
        body = app.current_event.json_body
    except ValueError:
        raise jobs.ImportRequestError(400, "The body must be JSON.") from None
    provider_id, names, reimport, comments = jobs.parse_request(body)
    base = web.base_url(app.current_event.raw_event, settings().public_base_url)
    started = jobs.start(user_id, provider_id, names, reimport=reimport, comments=comments, hook_base_url=base)
    return json_response(202, {"imports": started})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
