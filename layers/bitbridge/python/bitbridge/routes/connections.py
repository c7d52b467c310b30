"""Who is signed in and their connections: `/api/me`, checking and deleting a connection, signing out."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from bitbridge import edge
from bitbridge.calls import INTERACTIVE, Caller, Patience
from bitbridge.console import views
from bitbridge.errors import NotSignedIn
from bitbridge.providers import get_provider, identify
from bitbridge.routes.request import user

router = APIGatewayHttpRouter()


@router.get("/api/me")
def me() -> Response:
    event = router.current_event.raw_event
    found = views.me(user(event))
    if found is None:
        raise NotSignedIn("Sign in again.")
    for conn in found["connections"]:
        if conn["status"] == "reauth_required":
            conn["connect_url"] = edge.connect_url(event, conn["provider"])
    return edge.api_json(200, found)


@router.get("/api/connections/<provider_id>")
def connection_check(provider_id: str) -> Response:
    """Use the connection now: a fresh token (refreshed if needed) and who Bitbucket says it is."""
    as_user = user(router.current_event.raw_event)
    caller = Caller(as_user, get_provider(provider_id), priority=INTERACTIVE, patience=Patience(transient_retries=0))
    caller.prime()  # NotConnected / ReauthRequired before any Bitbucket call
    identity = identify(caller.provider, caller.get)  # a token refused early is refreshed once (calls.Caller)
    return edge.api_json(200, {"provider": provider_id, "ok": True, "username": identity.username})


@router.delete("/api/connections/<provider_id>")
def connection_delete(provider_id: str) -> Response:
    """Disconnect: the encrypted tokens go, imported data stays; the answer says what becomes of the hooks."""
    return edge.api_json(200, views.disconnect(user(router.current_event.raw_event), provider_id))


@router.post("/api/logout")
def logout() -> Response:
    event = router.current_event.raw_event
    user(event)  # signing out needs a session, like every /api route
    return edge.api_json(200, {"message": "Signed out."}, [edge.end_session(event)])
