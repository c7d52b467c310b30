"""Lambda entry point for /health, the console (/ and /assets/*) and the session-authenticated /api/* routes."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ForbiddenError, UnauthorizedError
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import accounts, console, sessions, signin_page, tokens, web
from bitbridge.api_support import json_response, reconnect_url, register_errors, session_token, signed_in_user
from bitbridge.bitbucket.http import Unauthorized
from bitbridge.bitbucket.identity import identify
from bitbridge.config import settings
from bitbridge.console import views
from bitbridge.health import readiness
from bitbridge.imports import activity, jobs, listing
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
    found = views.me(signed_in_user(app))
    if found is None:
        raise UnauthorizedError("Sign in again.")
    for conn in found["connections"]:
        if conn["status"] == "reauth_required":
            conn["reconnect_url"] = reconnect_url(app, conn["provider"])
    return json_response(200, found)


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


@app.delete("/api/connections/<provider_id>")
def connection_delete(provider_id: str) -> Response:
    """Disconnect: the encrypted tokens go, imported data stays; the answer says what becomes of the hooks."""
    answer = views.disconnect(signed_in_user(app), provider_id)
    if answer is None:
        return json_response(404, {"message": f"You have no connection to {provider_id}."})
    return json_response(200, answer)


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


def _with_secret_flag(body: dict, visible: bool) -> dict:
    """Tell the console whether this viewer may ask for a manual hook's secret (the secret itself is
    only ever answered by /webhook-secret)."""
    hook = body.get("webhook")
    if hook and hook.get("status") == jobs.HOOK_MANUAL:
        body["webhook"] = hook | {"secret_visible": visible}
    return body


@app.get("/api/imports")
def imports() -> Response:
    page = jobs.list_for(signed_in_user(app), _query("cursor"), _limit(50, 100))
    # The list holds the user's own jobs (owner = them), whose secrets they may see.
    page["imports"] = [_with_secret_flag(j, visible=True) for j in page["imports"]]
    return json_response(200, page)


def _visible_job(import_id: str) -> jobs.JobRecord:
    job = jobs.get_for(signed_in_user(app), import_id)
    if job is None:
        raise jobs.ImportRequestError(404, "No such import.")
    return job


@app.get("/api/imports/<import_id>")
def import_status(import_id: str) -> Response:
    user_id = signed_in_user(app)
    job = _visible_job(import_id)
    visible = jobs.may_see_hook_secret(job, user_id, accounts.is_admin(user_id))
    return json_response(200, _with_secret_flag(jobs.public(job), visible))


@app.post("/api/imports/<import_id>/cancel")
def import_cancel(import_id: str) -> Response:
    return json_response(200, jobs.public(jobs.cancel(_visible_job(import_id))))


@app.post("/api/imports/<import_id>/retry")
def import_retry(import_id: str) -> Response:
    return json_response(202, jobs.public(jobs.retry(_visible_job(import_id))))


@app.get("/api/imports/<import_id>/webhook-secret")
def import_webhook_secret(import_id: str) -> Response:
    """The secret to paste into Bitbucket for a hook added by hand: asked for explicitly (never in the job
    polled every second), and only by the job's owner or an admin (jobs.may_see_hook_secret)."""
    from bitbridge.webhooks.subscriptions import hook_secret

    user_id = signed_in_user(app)
    admin = accounts.is_admin(user_id)
    job = jobs.load(import_id) if admin and import_id.isalnum() else _visible_job(import_id)
    if job is None:
        raise jobs.ImportRequestError(404, "No such import.")
    if not jobs.may_see_hook_secret(job, user_id, admin):
        raise jobs.ImportRequestError(403, "Only the person who started this import or an admin may see the secret.")
    secret = hook_secret(job.webhook["subscription_id"])
    return json_response(200, {"secret": secret}, headers={"Cache-Control": "no-store"})


@app.get("/api/activity")
def recent_activity() -> Response:
    return json_response(200, {"events": activity.recent_events(signed_in_user(app), _limit(50, 100))})


@app.get("/api/admin/providers")
def admin_providers() -> Response:
    user_id = signed_in_user(app)
    if not accounts.is_admin(user_id):
        raise ForbiddenError("Only admins (the deploy parameter AdminUsers) may see the providers.")
    return json_response(200, {"providers": views.admin_providers(_base_url())})


# ------------------------------------------------------------------ the console (issue 11)


def _base_url() -> str:
    return web.base_url(app.current_event.raw_event, settings().public_base_url)


def _html(body: str) -> Response:
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={"Cache-Control": "no-store", **console.SECURITY_HEADERS},
    )


@app.get("/")
def console_page() -> Response:
    """Signed out: the sign-in buttons. Signed in: the console, with its first screen's data embedded."""
    user_id = sessions.user_for(session_token(app))
    found = views.boot(user_id) if user_id else None
    if found is None:
        return _html(console.render_sign_in([views.public_provider(p) for p in list_providers()]))
    return _html(console.render_console(found))


@app.get("/assets/<name>")
def console_asset(name: str) -> Response:
    asset = console.find_asset(name)
    if asset is None:
        return Response(404, "text/plain; charset=utf-8", "Not found.", {"Cache-Control": "no-store"})
    headers = {"Cache-Control": console.IMMUTABLE, "ETag": asset.etag, **console.SECURITY_HEADERS}
    if app.current_event.headers.get("if-none-match") == asset.etag:
        return Response(304, None, "", headers)
    return Response(200, asset.content_type, asset.body, headers)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
