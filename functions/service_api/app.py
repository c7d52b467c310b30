"""Lambda entry point for /service/v1/... (products' backends, service keys) and GET /connect/{session}
(the end user's browser): authenticate, check the route's scope, call the core, audit, shape the answer.

API Gateway has already matched the route, so dispatch is by `routeKey`: the template's route list is the
only routing table.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines, edge, providers, signin_page
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.config import settings
from bitbridge.errors import Problem
from bitbridge.service import actions, api, audit, credentials, files, idempotency, links
from bitbridge.service.credentials import Caller
from bitbridge.service.errors import bad_request, refuse

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()

PROXY_PREFIX_SEGMENTS = 5  # /service/v1/proxy/{provider}/{end_user_id}/...


@dataclass(frozen=True)
class Route:
    scope: str
    action: str
    run: Callable[[Caller, dict[str, Any], str], tuple[int, Any]]
    detailed: bool = False  # a typed action: its audit record says what it did (service.actions.audit_detail)


def _params(event: dict[str, Any]) -> dict[str, str]:
    return dict(event.get("pathParameters") or {})


def _raw_body(event: dict[str, Any]) -> bytes | None:
    if "body" not in event or event["body"] is None:
        return None
    raw = event["body"]
    return base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw).encode()


def _json_body(event: dict[str, Any]) -> Any:
    raw = _raw_body(event)
    try:
        return json.loads(raw or b"")
    except ValueError:
        raise bad_request("The body must be JSON.") from None


def _connect_session(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    return 201, api.create_connect_session(caller, _json_body(event), base)


def _connection(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    p = _params(event)
    return 200, api.connection(caller, p["provider"], p["end_user_id"], base)


def _confirm_connection(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    return 200, api.confirm_connection(caller, _json_body(event))


def _connection_budget(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    p = _params(event)
    return 200, api.connection_budget(caller, p["provider"], p["end_user_id"], base)


def _delete_connection(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    p = _params(event)
    return 200, api.delete_connection(caller, p["provider"], p["end_user_id"], base)


def _token(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    p = _params(event)
    return 200, api.token(caller, p["provider"], p["end_user_id"], base)


def _imports(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    return 202, {"imports": api.start_imports(caller, _json_body(event), base)}


def _import(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    end_user_id = (event.get("queryStringParameters") or {}).get("end_user_id")
    return 200, api.get_import(caller, _params(event)["import_id"], end_user_id)


def _proxy(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
    p = _params(event)
    segments = str(event.get("rawPath", "")).split("/", PROXY_PREFIX_SEGMENTS + 1)
    raw_path = segments[-1] if len(segments) > PROXY_PREFIX_SEGMENTS + 1 else ""
    headers = event.get("headers") or {}
    answer = api.proxy_call(
        caller,
        p["provider"],
        p["end_user_id"],
        method=event["requestContext"]["http"]["method"],
        raw_path=raw_path,
        query=str(event.get("rawQueryString") or ""),
        body=_raw_body(event),
        content_type=headers.get("content-type"),
        base_url=base,
    )
    return answer.status, answer


def _files_route(read: Callable[..., Any], *query: str) -> Callable[[Caller, dict[str, Any], str], tuple[int, Any]]:
    """A files route's runner: `read` for the path's provider and end user, with the named query parameters."""

    def runner(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
        p, q = _params(event), event.get("queryStringParameters") or {}
        asked = {name: q.get(name) for name in query}
        return 200, read(caller, p["provider"], p["end_user_id"], base_url=base, **asked)

    return runner


_file = _files_route(files.get_file, "repository", "path", "ref")
_files = _files_route(files.list_files, "repository", "path", "ref", "recursive")
_changes = _files_route(files.changes, "repository", "base", "head")


# ------------------------------------------------------------------------------------------- typed actions


def _key(event: dict[str, Any]) -> str | None:
    return idempotency.check_key((event.get("headers") or {}).get(idempotency.HEADER))


def _action(run: Callable[..., idempotency.Answer]) -> Callable[[Caller, dict[str, Any], str], tuple[int, Any]]:
    """A typed action's runner: where (repository, end user), the path's ids, the body, the Idempotency-Key."""

    def runner(caller: Caller, event: dict[str, Any], base: str) -> tuple[int, Any]:
        p = _params(event)
        at = actions.where(p, base)
        method = event["requestContext"]["http"]["method"]
        body = _json_body(event) if method in ("POST", "PUT") else None
        answer = run(caller, at, p, body, _key(event) if method != "GET" else None)
        return answer.status, answer

    return runner


REPO = "/service/v1/repos/{provider}/{end_user_id}/{workspace}/{repo_slug}"
PR = REPO + "/pull-requests/{pull_request}"


def _review(name: str) -> Route:
    def run(caller: Caller, at: actions.Where, p: dict[str, str], body: Any, key: str | None) -> Any:
        return actions.review(caller, at, p["pull_request"], name, body, key)

    return Route("pullrequests:write", f"pull_request_{name}", _action(run), detailed=True)


ACTION_ROUTES: dict[str, Route] = {
    f"POST {REPO}/commits/{{commit}}/statuses": Route(
        "statuses:write",
        "status_set",
        _action(lambda c, at, p, body, key: actions.set_status(c, at, p["commit"], body, key)),
        detailed=True,
    ),
    f"GET {REPO}/commits/{{commit}}/statuses": Route(
        "statuses:read",
        "status_list",
        _action(lambda c, at, p, body, key: actions.list_statuses(c, at, p["commit"])),
        detailed=True,
    ),
    f"POST {PR}/comments": Route(
        "comments:write",
        "comment_create",
        _action(lambda c, at, p, body, key: actions.create_comment(c, at, p["pull_request"], body, key)),
        detailed=True,
    ),
    f"PUT {PR}/comments": Route(
        "comments:write",
        "comment_upsert",
        _action(lambda c, at, p, body, key: actions.upsert_comment_by_marker(c, at, p["pull_request"], body, key)),
        detailed=True,
    ),
    f"PUT {PR}/comments/{{comment_id}}": Route(
        "comments:write",
        "comment_update",
        _action(
            lambda c, at, p, body, key: actions.update_comment(c, at, p["pull_request"], p["comment_id"], body, key)
        ),
        detailed=True,
    ),
    f"DELETE {PR}/comments/{{comment_id}}": Route(
        "comments:write",
        "comment_delete",
        _action(lambda c, at, p, body, key: actions.delete_comment(c, at, p["pull_request"], p["comment_id"], key)),
        detailed=True,
    ),
    f"POST {PR}/approve": _review("approve"),
    f"POST {PR}/unapprove": _review("unapprove"),
    f"POST {PR}/request-changes": _review("request_changes"),
    f"POST {PR}/merge": _review("merge"),
    f"POST {PR}/decline": _review("decline"),
}

CONNECT_PAGE = "GET /connect/{session}"
BROWSER_ROUTES = (CONNECT_PAGE,)  # the end user's browser, no service key
PROXY = Route("proxy", "proxy", _proxy)
ROUTES: dict[str, Route] = {
    "POST /service/v1/connect-sessions": Route("connections:write", "connect_session", _connect_session),
    "POST /service/v1/connect-sessions/confirm": Route("connections:write", "connect_confirm", _confirm_connection),
    "GET /service/v1/connections/{provider}/{end_user_id}": Route("connections:read", "connection", _connection),
    "DELETE /service/v1/connections/{provider}/{end_user_id}": Route(
        "connections:write", "connection_delete", _delete_connection
    ),
    "POST /service/v1/connections/{provider}/{end_user_id}/token": Route("tokens:read", "token", _token),
    "GET /service/v1/connections/{provider}/{end_user_id}/budget": Route(
        "connections:read", "connection_budget", _connection_budget
    ),
    "POST /service/v1/imports": Route("imports:write", "import", _imports),
    "GET /service/v1/imports/{import_id}": Route("imports:read", "import_status", _import),
    "GET /service/v1/files/{provider}/{end_user_id}/content": Route("files:read", "file_read", _file),
    "GET /service/v1/files/{provider}/{end_user_id}/list": Route("files:read", "file_list", _files),
    "GET /service/v1/files/{provider}/{end_user_id}/changes": Route("files:read", "file_changes", _changes),
    **{
        f"{m} /service/v1/proxy/{{provider}}/{{end_user_id}}/{{path+}}": PROXY for m in ("GET", "POST", "PUT", "DELETE")
    },
    **ACTION_ROUTES,
}


def _serve(event: dict[str, Any], route: Route, started: float) -> dict[str, Any]:
    caller: Caller | None = None
    status = 500
    try:
        caller = credentials.authenticate((event.get("headers") or {}).get("authorization"))
        credentials.require(caller, route.scope)
        status, result = route.run(caller, event, edge.base_url(event))
        if route is PROXY:
            return edge.passthrough(result.status, result.headers, result.body)
        if isinstance(result, files.FileAnswer):  # the file's bytes, as they are
            return edge.passthrough(status, {"Content-Type": result.type}, result.content)
        if isinstance(result, idempotency.Answer):
            replayed = {"Idempotent-Replayed": "true"} if result.replayed else None
            return edge.json_response(result.status, result.body, headers=replayed)
        return edge.json_response(status, result)
    except (Problem, BitbucketError) as exc:
        answer = edge.service_error(exc, event)
        status = edge.status_of(answer)
        return answer
    finally:
        # Unexpected exceptions go on up (the function's Errors alarm), recorded as a 500.
        if caller is not None:
            _audit(event, caller, route, status, started)


def _audit(event: dict[str, Any], caller: Caller, route: Route, status: int, started: float) -> None:
    p = _params(event)
    http = event["requestContext"]["http"]
    try:
        audit.record(
            client_id=caller.client_id,
            key_id=caller.key_id,
            action=route.action,
            method=http["method"],
            path=str(event.get("rawPath", "")),
            query=str(event.get("rawQueryString") or ""),
            status=status,
            duration_ms=(time.perf_counter() - started) * 1000,
            request_id=event["requestContext"].get("requestId", ""),
            end_user_id=p.get("end_user_id"),
            provider_id=p.get("provider"),
            detail=actions.audit_detail(p, _audit_body(event)) if route.detailed else None,
        )
    except Exception:
        # The answer stands; a record that could not even be written to stdout is logged for the operator.
        logger.exception("audit record not written", extra={"client_id": caller.client_id, "status": status})


def _audit_body(event: dict[str, Any]) -> Any:
    try:
        return json.loads(_raw_body(event) or b"null")
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------- browser


def connect_page(event: dict[str, Any]) -> dict[str, Any]:
    """The end user's landing page for a connect URL: which product asks to connect Bitbucket for which of
    its users, and a Continue button per provider (a form: pressing it is the confirmation). The session is
    used up by the authorize step the form posts to."""
    token = edge.path_parameter(event, "session")
    try:
        session = links.peek_session(token)
        product = links.product_label(session.client_id)
    except links.ConnectSessionInvalid as exc:
        return edge.error_page(exc, event, back=None)
    offered = [p for p in providers.list_providers() if not session.provider_id or p.provider_id == session.provider_id]
    # Not connecting is a choice too: back to the product, which finds no connection.
    back, label = edge.way_back(session.return_to)
    cancel = f"<p class='back'><a href='{html.escape(back)}'>Cancel and go {html.escape(label.lower())}</a></p>"
    body = signin_page.connect_confirmation(product, session.end_user_id, offered, token) + cancel
    # The form's answer redirects on to the provider's authorize page: the page's policy allows that origin.
    targets = tuple(sorted({edge.origin_of(providers.endpoints(p).authorize_url) for p in offered if p.imports}))
    return edge.html_page(200, "Connect Bitbucket", body, form_targets=targets)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    started = time.perf_counter()
    route_key = event.get("routeKey", "")
    if route_key == CONNECT_PAGE:
        return connect_page(event)
    route = ROUTES.get(route_key)
    if route is None:
        return edge.service_error(refuse("no_such_route", f"No service route {route_key!r}."), event)
    with deadlines.within(context):  # a token refresh never outlives this invocation
        response = _serve(event, route, started)
    logger.info("service call", extra={"route": route_key, "status": edge.status_of(response)})
    return response
