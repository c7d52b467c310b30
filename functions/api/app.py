"""Lambda entry point for /health and the session-authenticated /api/* routes."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import accounts, sessions, signin_page, tokens, web
from bitbridge.api_support import json_response, reconnect_url, register_errors, session_token, signed_in_user
from bitbridge.bitbucket.http import Unauthorized
from bitbridge.bitbucket.identity import identify
from bitbridge.health import readiness
from bitbridge.imports import jobs, listing
from bitbridge.providers import get_provider, list_providers

logger = Logger()
app = APIGatewayHttpResolver()
register_errors(app)


@app.get("/health")
def health() -> Response:
    ready, body = readiness()
    return json_response(200 if ready else 503, body)


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
    user_id = signed_in_user(app)
    user = accounts.get_user(user_id)
    if user is None:
        raise UnauthorizedError("Sign in again.")
    conns = [accounts.public_connection(c) for c in accounts.connections(user_id)]
    for conn in conns:
        if conn["status"] == "reauth_required":
            conn["reconnect_url"] = reconnect_url(app, conn["provider"])
    return json_response(
        200,
        {
            "user": {"id": user_id, "display_name": user.display_name, "email": user.email},
            "connections": conns,
        },
    )


@app.get("/api/connections/<provider_id>")
def connection_check(provider_id: str) -> Response:
    """Use the connection now: a fresh token (refreshed if needed) and who Bitbucket says it is."""
    user_id = signed_in_user(app)
    provider = get_provider(provider_id)
    try:
        access = tokens.access_token(user_id, provider_id)
        try:
            identity = identify(provider, access)
        except Unauthorized:
            # Refused before its recorded expiry (revoked, or expired early): refresh once and retry.
            identity = identify(provider, tokens.access_token(user_id, provider_id, stale=access))
    except tokens.NotConnected:
        return json_response(404, {"message": f"You have no connection to {provider_id}."})
    except Unauthorized:
        raise tokens.ReauthRequired(provider_id) from None
    return json_response(200, {"provider": provider_id, "ok": True, "username": identity.username})


@app.post("/api/logout")
def logout() -> Response:
    sessions.end(session_token(app))
    return json_response(200, {"message": "Signed out."}, cookies=[web.clear_cookie(sessions.COOKIE)])


# ------------------------------------------------------------------ repositories and imports (issue 6)


def _query(name: str) -> str | None:
    value = app.current_event.get_query_string_value(name)
    return value.strip() if value and value.strip() else None


def _limit(default: int, maximum: int) -> int:
    raw = _query("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise jobs.ImportRequestError(400, f"`limit` must be between 1 and {maximum}.")
    return int(raw)


def _provider_param() -> str:
    provider_id = _query("provider")
    if provider_id is None:
        raise jobs.ImportRequestError(400, "`provider` (a provider id) is required.")
    return provider_id


@app.get("/api/repos")
def repositories() -> Response:
    """The signed-in user's repositories on one provider, each with its import status."""
    user_id = signed_in_user(app)
    body = listing.list_repositories(
        user_id,
        _provider_param(),
        search=_query("q"),
        scope=_query("workspace") or _query("project"),
        cursor=_query("cursor"),
        limit=_limit(listing.MAX_LIMIT, listing.MAX_LIMIT),
    )
    return json_response(200, body)


@app.get("/api/repos/scopes")
def repository_scopes() -> Response:
    """Workspaces (Cloud) or projects (Data Center) for a picker."""
    return json_response(200, listing.scopes(signed_in_user(app), _provider_param()))


@app.get("/api/imports")
def imports() -> Response:
    return json_response(200, jobs.list_for(signed_in_user(app), _query("cursor"), _limit(50, 100)))


def _visible_job(import_id: str) -> jobs.JobRecord:
    job = jobs.get_for(signed_in_user(app), import_id)
    if job is None:
        raise jobs.ImportRequestError(404, "No such import.")
    return job


@app.get("/api/imports/<import_id>")
def import_status(import_id: str) -> Response:
    return json_response(200, jobs.public(_visible_job(import_id)))


@app.post("/api/imports/<import_id>/cancel")
def import_cancel(import_id: str) -> Response:
    return json_response(200, jobs.public(jobs.cancel(_visible_job(import_id))))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
