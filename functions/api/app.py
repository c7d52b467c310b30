"""Lambda entry point for the console (/ and /assets/*), /login, /health and the session-authenticated
/api/* routes."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import accounts, console, edge, signin_page
from bitbridge.calls import INTERACTIVE, Caller, Patience
from bitbridge.console import views
from bitbridge.errors import AccessDenied, InvalidRequest, NotFound, NotSignedIn
from bitbridge.health import readiness
from bitbridge.imports import activity, jobs, listing
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
def console_page() -> Response:
    """Signed out: the sign-in buttons. Signed in: the console, with its first screen's data embedded."""
    user_id = edge.session_user(_event())
    found = views.boot(user_id) if user_id else None
    if found is None:
        page = console.render_sign_in([views.public_provider(p) for p in list_providers()])
    else:
        page = console.render_console(found)
    return edge.as_response(edge.console_page(page))


@app.get("/assets/<name>")
def console_asset(name: str) -> Response:
    return edge.as_response(edge.console_asset(console.find_asset(name), app.current_event.headers))


@app.get("/api/me")
def me() -> Response:
    found = views.me(_user())
    if found is None:
        raise NotSignedIn("Sign in again.")
    for conn in found["connections"]:
        if conn["status"] == "reauth_required":
            conn["connect_url"] = edge.connect_url(_event(), conn["provider"])
    return edge.api_json(200, found)


@app.get("/api/connections/<provider_id>")
def connection_check(provider_id: str) -> Response:
    """Use the connection now: a fresh token (refreshed if needed) and who Bitbucket says it is."""
    caller = Caller(_user(), get_provider(provider_id), priority=INTERACTIVE, patience=Patience(transient_retries=0))
    caller.prime()  # NotConnected / ReauthRequired before any Bitbucket call
    identity = identify(caller.provider, caller.get)  # a token refused early is refreshed once (calls.Caller)
    return edge.api_json(200, {"provider": provider_id, "ok": True, "username": identity.username})


@app.delete("/api/connections/<provider_id>")
def connection_delete(provider_id: str) -> Response:
    """Disconnect: the encrypted tokens go, imported data stays; the answer says what becomes of the hooks."""
    return edge.api_json(200, views.disconnect(_user(), provider_id))


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


def _with_secret_flag(body: dict, visible: bool) -> dict:
    """Tell the console whether this viewer may ask for a manual hook's secret (the secret itself is
    only ever answered by /webhook-secret)."""
    hook = body.get("webhook")
    if hook and hook.get("status") == jobs.HOOK_MANUAL:
        body["webhook"] = hook | {"secret_visible": visible}
    return body


@app.get("/api/imports")
def imports() -> Response:
    page = jobs.list_for(_user(), _query("cursor"), _limit(50, 100))
    # The list holds the user's own jobs (owner = them), whose secrets they may see.
    page["imports"] = [_with_secret_flag(j, visible=True) for j in page["imports"]]
    return edge.api_json(200, page)


def _visible_job(import_id: str) -> jobs.JobRecord:
    job = jobs.get_for(_user(), import_id)
    if job is None:
        raise NotFound("No such import.")
    return job


@app.get("/api/imports/<import_id>")
def import_status(import_id: str) -> Response:
    user_id = _user()
    job = _visible_job(import_id)
    visible = jobs.may_see_hook_secret(job, user_id, accounts.is_admin(user_id))
    return edge.api_json(200, _with_secret_flag(jobs.view_for(job, user_id), visible))


@app.post("/api/imports/<import_id>/cancel")
def import_cancel(import_id: str) -> Response:
    user = _user()
    return edge.api_json(200, jobs.view_for(jobs.cancel(jobs.for_change(user, import_id, "cancel")), user))


@app.post("/api/imports/<import_id>/retry")
def import_retry(import_id: str) -> Response:
    user = _user()
    return edge.api_json(200, jobs.view_for(jobs.retry(jobs.for_change(user, import_id, "retry")), user))


@app.get("/api/imports/<import_id>/webhook-secret")
def import_webhook_secret(import_id: str) -> Response:
    """The secret to paste into Bitbucket for a hook added by hand: asked for explicitly (never in the job
    polled every second), and only by the job's owner or an admin (jobs.may_see_hook_secret)."""
    from bitbridge.webhooks.subscriptions import hook_secret

    user_id = _user()
    admin = accounts.is_admin(user_id)
    job = jobs.load(import_id) if admin and import_id.isalnum() else _visible_job(import_id)
    if job is None:
        raise NotFound("No such import.")
    if not jobs.may_see_hook_secret(job, user_id, admin):
        raise AccessDenied("Only the person who started this import or an admin may see the secret.")
    return edge.api_json(200, {"secret": hook_secret(job.webhook["subscription_id"])})


@app.get("/api/activity")
def recent_activity() -> Response:
    return edge.api_json(200, {"events": activity.recent_events(_user(), _limit(50, 100))})


@app.get("/api/admin/providers")
def admin_providers() -> Response:
    if not accounts.is_admin(_user()):
        raise AccessDenied("Only admins (the deploy parameter AdminUsers) may see the providers.")
    return edge.api_json(200, {"providers": views.admin_providers(edge.base_url(_event()))})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
