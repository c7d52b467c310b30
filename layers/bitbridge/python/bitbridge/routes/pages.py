"""The pages a browser opens: the console (or, signed out, the sign-in buttons), `/login`, the console's
assets, and `/health`."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import console, edge, signin_page
from bitbridge.console import views
from bitbridge.health import readiness
from bitbridge.providers import list_providers

router = APIGatewayHttpRouter()


@router.get("/health")
def health() -> Response:
    ready, body = readiness()
    return edge.api_json(edge.STATUS["ready" if ready else "not_ready"], body)


@router.get("/login")
def login_page() -> Response:
    """The "Sign in with Bitbucket" page: one button per provider with sign-in enabled."""
    params = edge.query(router.current_event.raw_event)
    content = signin_page.sign_in_buttons(list_providers(), params.get("return_to"))
    return edge.as_response(edge.html_page(200, "Sign in", content))


@router.get("/")
def console_page() -> Response:
    """Signed out: the sign-in buttons. Signed in: the console, with its first screen's data embedded."""
    user_id = edge.session_user(router.current_event.raw_event)
    found = views.boot(user_id) if user_id else None
    if found is None:
        page = console.render_sign_in(signin_page.sign_in_buttons(list_providers(), "/"))
    else:
        page = console.render_console(found)
    return edge.as_response(edge.console_page(page))


@router.get("/assets/<name>")
def console_asset(name: str) -> Response:
    return edge.as_response(edge.console_asset(console.find_asset(name), router.current_event.headers))
