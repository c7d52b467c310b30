"""Lambda entry point for /health and the session-authenticated /api/* routes."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import accounts, sessions, signin_page, tokens, web
from bitbridge.bitbucket.http import BitbucketError, RateLimited, Unauthorized
from bitbridge.bitbucket.identity import cloud_identity, datacenter_identity
from bitbridge.config import settings
from bitbridge.health import readiness
from bitbridge.imports import jobs, listing
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


# ------------------------------------------------------------------ repositories and imports (issue 6)


@app.exception_handler(jobs.ImportRequestError)
def import_request_refused(exc: jobs.ImportRequestError) -> Response:
    return _json(exc.status, {"message": str(exc), **({"repositories": exc.details} if exc.details else {})})


@app.exception_handler(RateLimited)
def rate_limited(exc: RateLimited) -> Response:
    retry = str(int(exc.retry_after)) if exc.retry_after else "60"
    response = _json(429, {"message": "Bitbucket is rate limiting; try again later."})
    response.headers["Retry-After"] = retry
    return response


@app.exception_handler(BitbucketError)
def bitbucket_error(exc: BitbucketError) -> Response:
    if isinstance(exc, Unauthorized):  # refused even after a refresh
        return reauth_required(tokens.ReauthRequired(app.current_event.get_query_string_value("provider") or ""))
    return _json(502, {"message": f"Bitbucket did not answer as expected: {exc}"})


@app.exception_handler(tokens.NotConnected)
def not_connected(exc: tokens.NotConnected) -> Response:
    return _json(409, {"message": "Connect this Bitbucket provider first."})


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
    user_id = _signed_in_user()
    body = listing.list_repositories(
        user_id,
        _provider_param(),
        search=_query("q"),
        scope=_query("workspace") or _query("project"),
        cursor=_query("cursor"),
        limit=_limit(listing.MAX_LIMIT, listing.MAX_LIMIT),
    )
    return _json(200, body)


@app.get("/api/repos/scopes")
def repository_scopes() -> Response:
    """Workspaces (Cloud) or projects (Data Center) for a picker."""
    return _json(200, listing.scopes(_signed_in_user(), _provider_param()))


@app.get("/api/imports")
def imports() -> Response:
    return _json(200, jobs.list_for(_signed_in_user(), _query("cursor"), _limit(50, 100)))


def _visible_job(import_id: str) -> jobs.JobRecord:
    job = jobs.get_for(_signed_in_user(), import_id)
    if job is None:
        raise jobs.ImportRequestError(404, "No such import.")
    return job


@app.get("/api/imports/<import_id>")
def import_status(import_id: str) -> Response:
    return _json(200, jobs.public(_visible_job(import_id)))


@app.post("/api/imports/<import_id>/cancel")
def import_cancel(import_id: str) -> Response:
    return _json(200, jobs.public(jobs.cancel(_visible_job(import_id))))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
