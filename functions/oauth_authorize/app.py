"""GET /auth/{provider}/authorize - one-time browser-bound state (+PKCE) and a 302 to Bitbucket."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import edge, oauth
from bitbridge.config import settings
from bitbridge.errors import Problem

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    provider_id = edge.path_parameter(event, "provider")
    params = edge.query(event)
    purpose = params.get("purpose", "sign_in")
    try:
        started = oauth.begin(
            provider_id,
            purpose=purpose,
            return_to=params.get("return_to"),
            base_url=edge.base_url(event),
            session_user=edge.session_user(event),
            connect_session=params.get("connect_session"),
            verify_ticket=params.get("ticket"),
        )
    except Problem as exc:
        logger.info("authorize refused", extra={"provider": provider_id, "code": exc.code})
        return edge.error_page(exc, event)
    logger.info("authorize", extra={"provider": provider_id, "purpose": purpose})
    return edge.authorization_redirect(started)
