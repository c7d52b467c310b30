"""GET /auth/{provider}/callback - exchange the code now, identify, store encrypted tokens, sign in."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import oauth, sessions, web

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    provider_id = (event.get("pathParameters") or {}).get("provider", "")
    try:
        outcome = oauth.complete(provider_id, web.query(event), web.cookies(event))
    except oauth.SignInError as exc:
        logger.info("callback refused", extra={"provider": provider_id, "status": exc.status})
        return web.page(exc.status, exc.title, exc.message)
    if outcome.kind == "page":
        logger.info("provider verified", extra={"provider": provider_id})
        return web.page(200, outcome.title, outcome.message, outcome.cookies)
    assert outcome.user_id is not None
    token, lifetime = sessions.issue(outcome.user_id)
    logger.info("signed in", extra={"provider": provider_id, "user_id": outcome.user_id})
    session_cookie = web.set_cookie(sessions.COOKIE, token, max_age=lifetime)
    return web.redirect(outcome.location, [*outcome.cookies, session_cookie])
