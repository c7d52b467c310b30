"""The Imports screen: the user's imports, one import, cancel, retry, and a manual hook's secret.
(Starting imports, `POST /api/imports`, is the import_kickoff function's route.)"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import accounts, edge
from bitbridge.errors import AccessDenied, NotFound
from bitbridge.imports import changes, jobs, queries
from bitbridge.routes.request import limit, query_value, user
from bitbridge.webhooks.subscriptions import hook_secret

router = APIGatewayHttpRouter()


@router.get("/api/imports")
def imports() -> Response:
    event = router.current_event.raw_event
    page = queries.list_for(user(event), query_value(event, "cursor"), limit(event, 50, 100))
    # The list holds the user's own jobs (owner = them), whose secrets they may see.
    page["imports"] = [queries.with_secret_flag(j, visible=True) for j in page["imports"]]
    return edge.api_json(200, page)


@router.get("/api/imports/<import_id>")
def import_status(import_id: str) -> Response:
    user_id = user(router.current_event.raw_event)
    job = queries.visible(user_id, import_id)
    visible = queries.may_see_hook_secret(job, user_id, accounts.is_admin(user_id))
    return edge.api_json(200, queries.with_secret_flag(queries.view_for(job, user_id), visible))


@router.post("/api/imports/<import_id>/cancel")
def import_cancel(import_id: str) -> Response:
    user_id = user(router.current_event.raw_event)
    job = changes.cancel(queries.for_change(user_id, import_id, "cancel"))
    return edge.api_json(200, queries.view_for(job, user_id))


@router.post("/api/imports/<import_id>/retry")
def import_retry(import_id: str) -> Response:
    user_id = user(router.current_event.raw_event)
    job = changes.retry(queries.for_change(user_id, import_id, "retry"))
    return edge.api_json(200, queries.view_for(job, user_id))


@router.get("/api/imports/<import_id>/webhook-secret")
def import_webhook_secret(import_id: str) -> Response:
    """The secret to paste into Bitbucket for a hook added by hand: asked for explicitly (never in the job
    polled every second), and only by the job's owner or an admin (queries.may_see_hook_secret)."""
    user_id = user(router.current_event.raw_event)
    admin = accounts.is_admin(user_id)
    job = jobs.load(import_id) if admin and import_id.isalnum() else queries.visible(user_id, import_id)
    if job is None:
        raise NotFound("No such import.")
    if not queries.may_see_hook_secret(job, user_id, admin):
        raise AccessDenied("Only the person who started this import or an admin may see the secret.")
    return edge.api_json(200, {"secret": hook_secret(job.webhook["subscription_id"])})
