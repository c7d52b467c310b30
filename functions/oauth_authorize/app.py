"""GET /auth/{provider}/authorize - one-time browser-bound state (+PKCE) and a 302 to Bitbucket."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import oauth, sessions, web
from bitbridge.config import settings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    provider_id = (event.get("pathParameters") or {}).get("provider", "")
    params = web.query(event)
    session_user = sessions.user_for(web.cookies(event).get(sessions.COOKIE))
    try:
        url, cookie = oauth.begin(
            provider_id,
            purpose=params.get("purpose", "sign_in"),
            return_to=params.get("return_to"),
            base_url=web.base_url(event, settings().public_base_url),
            session_user=session_user,
            connect_session=params.get("connect_session"),
        )
    except oauth.SignInError as exc:
        logger.info("authorize refused", extra={"provider": provider_id, "status": exc.status})
        return web.error(exc.status, exc.message)
    logger.info("authorize", extra={"provider": provider_id, "purpose": params.get("purpose", "sign_in")})
    return web.redirect(url, [cookie])
