"""Lambda entry point for /, /login, /health and the session-authenticated /api/* routes."""

import html

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import accounts, edge, signin_page, tokens
from bitbridge.bitbucket.http import Unauthorized
from bitbridge.errors import InvalidRequest, NotFound, NotSignedIn
from bitbridge.health import readiness
from bitbridge.imports import jobs, listing
from bitbridge.providers import get_provider, identify, list_providers

logger = Logger()
app = APIGatewayHttpResolver()
edge.install(app)


def _event() -> dict:
    return app.current_event.raw_event


def _user() -> str:
    return edge.require_user(_event())


@app.get("/health")
def health() -> Response:
    ready, body = readiness()
    return edge.api_json(200 if ready else 503, body)


@app.get("/login")
def login_page() -> Response:
    """The "Sign in with Bitbucket" page: one button per provider with sign-in enabled."""
    params = app.current_event.query_string_parameters or {}
    content = signin_page.buttons(list_providers(), params.get("return_to"))
    return edge.as_response(edge.html_page(200, "Sign in", content))


@app.get("/")
def home() -> Response:
    """Signed out: the sign-in page. Signed in: who you are and where to go (the console comes later)."""
    user_id = edge.session_user(_event())
    user = accounts.get_user(user_id) if user_id else None
    if user is None:
        return edge.as_response(edge.html_page(200, "Sign in", signin_page.buttons(list_providers(), "/")))
    name = html.escape(str(user.display_name or user_id))
    content = (
        f"<p>Signed in as <strong>{name}</strong>.</p>"
        "<p><a href='/api/me'>Your profile and connections (JSON)</a></p>"
        "<form method='post' action='/api/logout'><button type='submit'>Sign out</button></form>"
    )
    return edge.as_response(edge.html_page(200, "bitbridge", content))


@app.get("/api/me")
def me() -> Response:
    user_id = _user()
    user = accounts.get_user(user_id)
    if user is None:
        raise NotSignedIn("Sign in again.")
    conns = [accounts.public_connection(c) for c in accounts.connections(user_id)]
    for conn in conns:
        if conn["status"] == "reauth_required":
            conn["connect_url"] = edge.connect_url(_event(), conn["provider"])
    return edge.api_json(
        200,
        {
            "user": {"id": user_id, "display_name": user.display_name, "email": user.email},
            "connections": conns,
        },
    )


@app.get("/api/connections/<provider_id>")
def connection_check(provider_id: str) -> Response:
    """Use the connection now: a fresh token (refreshed if needed) and who Bitbucket says it is."""
    user_id = _user()
    provider = get_provider(provider_id)
    access = tokens.access_token(user_id, provider_id)
    try:
        try:
            identity = identify(provider, access)
        except Unauthorized:
            # Refused before its recorded expiry (revoked, or expired early): refresh once and retry.
            identity = identify(provider, tokens.access_token(user_id, provider_id, stale=access))
    except Unauthorized:
        raise tokens.ReauthRequired(provider_id) from None
    return edge.api_json(200, {"provider": provider_id, "ok": True, "username": identity.username})


@app.post("/api/logout")
def logout() -> Response:
    _user()  # signing out needs a session, like every /api route
    return edge.api_json(200, {"message": "Signed out."}, [edge.end_session(_event())])


# ------------------------------------------------------------------ repositories and imports


def _query(name: str) -> str | None:
    value = app.current_event.get_query_string_value(name)
    return value.strip() if value and value.strip() else None


def _limit(default: int, maximum: int) -> int:
    raw = _query("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"`limit` must be between 1 and {maximum}.")
    return int(raw)


def _provider_param() -> str:
    provider_id = _query("provider")
    if provider_id is None:
        raise InvalidRequest("`provider` (a provider id) is required.")
    return provider_id


@app.get("/api/repos")
def repositories() -> Response:
    """The signed-in user's repositories on one provider, each with its import status."""
    body = listing.list_repositories(
        _user(),
        _provider_param(),
        search=_query("q"),
        scope=_query("workspace") or _query("project"),
        cursor=_query("cursor"),
        limit=_limit(listing.MAX_LIMIT, listing.MAX_LIMIT),
    )
    return edge.api_json(200, body)


@app.get("/api/repos/scopes")
def repository_scopes() -> Response:
    """Workspaces (Cloud) or projects (Data Center) for a picker."""
    return edge.api_json(200, listing.scopes(_user(), _provider_param()))


@app.get("/api/imports")
def imports() -> Response:
    return edge.api_json(200, jobs.list_for(_user(), _query("cursor"), _limit(50, 100)))


def _visible_job(import_id: str) -> jobs.JobRecord:
    job = jobs.get_for(_user(), import_id)
    if job is None:
        raise NotFound("No such import.")
    return job


@app.get("/api/imports/<import_id>")
def import_status(import_id: str) -> Response:
    return edge.api_json(200, jobs.public(_visible_job(import_id)))


@app.post("/api/imports/<import_id>/cancel")
def import_cancel(import_id: str) -> Response:
    return edge.api_json(200, jobs.public(jobs.cancel(_visible_job(import_id))))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
