"""/auth/{provider}/authorize - one-time browser-bound state (+PKCE) and a 302 to Bitbucket.

GET starts a sign-in, a console connect or a verification; POST is a service connect link's page confirming
its connect session (a form on that page: edge.confirmed_connect_session)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import edge, oauth
from bitbridge.config import settings
from bitbridge.errors import Problem

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()

ROUTES = ("GET /auth/{provider}/authorize", "POST /auth/{provider}/authorize")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    provider_id = edge.path_parameter(event, "provider")
    params = edge.query(event)
    purpose = params.get("purpose", "sign_in")
    try:
        connect_session = edge.confirmed_connect_session(event)
        started = oauth.begin(
            provider_id,
            purpose=purpose,
            return_to=params.get("return_to"),
            base_url=edge.base_url(event),
            # A service connect acts for a product's end user, never for whoever is signed in here.
            session_user=None if connect_session else edge.session_user(event),
            connect_session=connect_session,
            verify_ticket=params.get("ticket"),
        )
    except Problem as exc:
        logger.info("authorize refused", extra={"provider": provider_id, "code": exc.code})
        return edge.error_page(exc, event)
    logger.info(
        "authorize", extra={"provider": provider_id, "purpose": "service_connect" if connect_session else purpose}
    )
    return edge.authorization_redirect(started)
