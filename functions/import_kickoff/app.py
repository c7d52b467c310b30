"""Lambda entry point for POST /api/imports: idempotent import jobs, enqueued for the worker."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import sessions, tokens, web
from bitbridge.bitbucket.http import BitbucketError, RateLimited
from bitbridge.config import settings
from bitbridge.imports import jobs
from bitbridge.providers import UnknownProvider

logger = Logger()
app = APIGatewayHttpResolver()


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@app.exception_handler(jobs.ImportRequestError)
def refused(exc: jobs.ImportRequestError) -> Response:
    return _json(
        exc.status, {"message": str(exc), "repositories": exc.details} if exc.details else {"message": str(exc)}
    )


@app.exception_handler(UnknownProvider)
def unknown_provider(exc: UnknownProvider) -> Response:
    return _json(404, {"message": str(exc)})


@app.exception_handler(tokens.NotConnected)
def not_connected(exc: tokens.NotConnected) -> Response:
    return _json(409, {"message": "Connect this Bitbucket provider first."})


@app.exception_handler(tokens.ReauthRequired)
def reauth_required(exc: tokens.ReauthRequired) -> Response:
    base = web.base_url(app.current_event.raw_event, settings().public_base_url)
    return _json(
        401,
        {
            "message": f"The connection to {exc.provider_id} has expired; connect again.",
            "reauth_required": True,
            "reconnect_url": f"{base}/auth/{exc.provider_id}/authorize?purpose=connect",
        },
    )


@app.exception_handler(RateLimited)
def rate_limited(exc: RateLimited) -> Response:
    retry = str(int(exc.retry_after)) if exc.retry_after else "60"
    return _json(429, {"message": "Bitbucket is rate limiting; try again later."}, {"Retry-After": retry})


@app.exception_handler([tokens.TokenUnavailable, BitbucketError])
def bitbucket_unavailable(exc: Exception) -> Response:
    return _json(503, {"message": "Bitbucket is not answering as expected; try again shortly."})


@app.post("/api/imports")
def kickoff() -> Response:
    user_id = sessions.user_for(web.cookies(app.current_event.raw_event).get(sessions.COOKIE))
    if user_id is None:
        raise UnauthorizedError("Sign in first.")
    try:
        body = app.current_event.json_body
    except ValueError:
        raise jobs.ImportRequestError(400, "The body must be JSON.") from None
    provider_id, names, reimport, comments = jobs.parse_request(body)
    base = web.base_url(app.current_event.raw_event, settings().public_base_url)
    started = jobs.start(user_id, provider_id, names, reimport=reimport, comments=comments, hook_base_url=base)
    return _json(202, {"imports": started})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
