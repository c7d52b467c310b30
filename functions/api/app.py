"""Lambda entry point for /health and the session-authenticated /api/* routes."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import accounts, sessions, signin_page, tokens, web
from bitbridge.bitbucket.http import BitbucketError, Unauthorized
from bitbridge.bitbucket.identity import cloud_identity, datacenter_identity
from bitbridge.config import settings
from bitbridge.health import readiness
from bitbridge.providers import UnknownProvider, get_provider, list_providers

logger = Logger()
app = APIGatewayHttpResolver()


def _json(status: int, body: object, cookies: list[str] | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, cookies=cookies)


def _session_token() -> str | None:
    return web.cookies(app.current_event.raw_event).get(sessions.COOKIE)


def _signed_in_user() -> str:
    user_id = sessions.user_for(_session_token())
    if user_id is None:
        raise UnauthorizedError("Sign in first.")
    return user_id


def _reconnect_url(provider_id: str) -> str:
    base = web.base_url(app.current_event.raw_event, settings().public_base_url)
    return f"{base}/auth/{provider_id}/authorize?purpose=connect"


@app.exception_handler(tokens.ReauthRequired)
def reauth_required(exc: tokens.ReauthRequired) -> Response:
    return _json(
        401,
        {
            "message": f"The connection to {exc.provider_id} has expired; connect again.",
            "reauth_required": True,
            "reconnect_url": _reconnect_url(exc.provider_id),
        },
    )


@app.exception_handler(tokens.TokenUnavailable)
def token_unavailable(exc: tokens.TokenUnavailable) -> Response:
    return _json(503, {"message": "Bitbucket is not answering right now; try again shortly."})


@app.exception_handler(UnknownProvider)
def unknown_provider(exc: UnknownProvider) -> Response:
    return _json(404, {"message": str(exc)})


@app.get("/health")
def health() -> Response:
    ready, body = readiness()
    return _json(200 if ready else 503, body)


@app.get("/login")
def login_page() -> Response:
    """The "Sign in with Bitbucket" page: one button per provider with sign-in enabled."""
    params = app.current_event.query_string_parameters or {}
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=signin_page.render(list_providers(), params.get("return_to")),
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


@app.get("/api/me")
def me() -> Response:
    user_id = _signed_in_user()
    user = accounts.get_user(user_id)
    if user is None:
        raise UnauthorizedError("Sign in again.")
    conns = [accounts.public_connection(c) for c in accounts.connections(user_id)]
    for conn in conns:
        if conn["status"] == "reauth_required":
            conn["reconnect_url"] = _reconnect_url(conn["provider"])
    return _json(
        200,
        {
            "user": {"id": user_id, "display_name": user.display_name, "email": user.email},
            "connections": conns,
        },
    )


@app.get("/api/connections/<provider_id>")
def connection_check(provider_id: str) -> Response:
    """Use the connection now: a fresh token (refreshed if needed) and who Bitbucket says it is."""
    user_id = _signed_in_user()
    provider = get_provider(provider_id)
    lookup = cloud_identity if provider.flavor == "cloud" else datacenter_identity
    base = provider.api_url if provider.flavor == "cloud" else provider.web_url
    try:
        access = tokens.access_token(user_id, provider_id)
        try:
            identity = lookup(base, access)
        except Unauthorized:
            # Refused before its recorded expiry (revoked, or expired early): refresh once and retry.
            identity = lookup(base, tokens.access_token(user_id, provider_id, stale=access))
    except tokens.NotConnected:
        return _json(404, {"message": f"You have no connection to {provider_id}."})
    except Unauthorized:
        raise tokens.ReauthRequired(provider_id) from None
    except BitbucketError as exc:
        return _json(502, {"message": f"Bitbucket did not answer as expected: {exc}"})
    return _json(200, {"provider": provider_id, "ok": True, "username": identity.username})


@app.post("/api/logout")
def logout() -> Response:
    sessions.end(_session_token())
    return _json(200, {"message": "Signed out."}, cookies=[web.clear_cookie(sessions.COOKIE)])


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
