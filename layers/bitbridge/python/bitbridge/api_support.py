"""What every session-authenticated JSON API handler shares: JSON responses, the signed-in
user, and the one mapping from domain exceptions to HTTP statuses (`register_errors`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError

from bitbridge import sessions, tokens, web
from bitbridge.bitbucket.http import BitbucketError, RateLimited, Unauthorized
from bitbridge.config import settings
from bitbridge.imports.jobs import ImportRequestError
from bitbridge.providers import UnknownProvider


def json_response(
    status: int, body: object, cookies: list[str] | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        cookies=cookies,  # type: ignore[arg-type]  # Powertools serialises plain Set-Cookie strings too
        headers=headers,
    )


class CrossSiteRequest(Exception):
    """A state-changing request with the session cookie that did not come from the console's origin."""


def session_token(app: APIGatewayHttpResolver) -> str | None:
    """The session cookie's value; every state-changing request that carries one passes the
    cross-site check first (the CSRF defence for every API function, in this one place)."""
    event = app.current_event.raw_event
    token = web.cookies(event).get(sessions.COOKIE)
    if token:
        own = web.origin_of(web.base_url(event, settings().public_base_url))
        refusal = web.cross_site_refusal(event, own, settings().allowed_return_to_origins)
        if refusal:
            raise CrossSiteRequest(f"Refused: {refusal}.")
    return token


def signed_in_user(app: APIGatewayHttpResolver) -> str:
    user_id = sessions.user_for(session_token(app))
    if user_id is None:
        raise UnauthorizedError("Sign in first.")
    return user_id


def reconnect_url(app: APIGatewayHttpResolver, provider_id: str) -> str:
    base = web.base_url(app.current_event.raw_event, settings().public_base_url)
    return f"{base}/auth/{provider_id}/authorize?purpose=connect"


def register_errors(app: APIGatewayHttpResolver) -> None:
    """Map bitbridge's exceptions to answers, the same for every API function."""

    def reauth(provider_id: str) -> Response:
        return json_response(
            401,
            {
                "message": f"The connection to {provider_id} has expired; connect again.",
                "reauth_required": True,
                "reconnect_url": reconnect_url(app, provider_id),
            },
        )

    @app.exception_handler(CrossSiteRequest)
    def cross_site(exc: CrossSiteRequest) -> Response:
        return json_response(403, {"message": str(exc), "code": "cross_site_request"})

    @app.exception_handler(tokens.ReauthRequired)
    def reauth_required(exc: tokens.ReauthRequired) -> Response:
        return reauth(exc.provider_id)

    @app.exception_handler(tokens.NotConnected)
    def not_connected(exc: tokens.NotConnected) -> Response:
        return json_response(409, {"message": "Connect this Bitbucket provider first."})

    @app.exception_handler(UnknownProvider)
    def unknown_provider(exc: UnknownProvider) -> Response:
        return json_response(404, {"message": str(exc)})

    @app.exception_handler(ImportRequestError)
    def import_request_refused(exc: ImportRequestError) -> Response:
        extra: dict[str, Any] = {"repositories": exc.details} if exc.details else {}
        return json_response(exc.status, {"message": str(exc), **extra})

    @app.exception_handler(RateLimited)
    def rate_limited(exc: RateLimited) -> Response:
        retry = str(int(exc.retry_after)) if exc.retry_after else "60"
        return json_response(
            429, {"message": "Bitbucket is rate limiting; try again later."}, headers={"Retry-After": retry}
        )

    @app.exception_handler(tokens.TokenUnavailable)
    def token_unavailable(exc: tokens.TokenUnavailable) -> Response:
        return json_response(503, {"message": "Bitbucket is not answering right now; try again shortly."})

    @app.exception_handler(BitbucketError)
    def bitbucket_error(exc: BitbucketError) -> Response:
        if isinstance(exc, Unauthorized):  # refused even after a refresh
            return reauth(app.current_event.get_query_string_value("provider") or "")
        if not exc.permanent:
            return json_response(503, {"message": "Bitbucket is not answering right now; try again shortly."})
        return json_response(502, {"message": f"Bitbucket did not answer as expected: {exc}"})
