"""GET /auth/{provider}/callback - exchange the code now, identify, store encrypted tokens, sign in (or, for a
service connect, back to the product with a code it confirms)."""

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
    try:
        result = oauth.complete(provider_id, edge.query(event), edge.cookies(event))
    except Problem as exc:
        logger.info("callback refused", extra={"provider": provider_id, "code": exc.code})
        return edge.error_page(exc, event)
    if isinstance(result, oauth.ProviderVerified):
        logger.info("provider verified", extra={"provider": provider_id})
    elif isinstance(result, oauth.ServiceConnected):
        logger.info("service connect awaiting its client's confirmation", extra={"provider": provider_id})
    else:
        logger.info("signed in", extra={"provider": provider_id, "user_id": result.user_id})
    return edge.callback_answer(result)
