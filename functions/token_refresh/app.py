"""Lambda entry point for TokenRefreshQueue: token refreshes handed over by invocations with too little time
left to wait for the token endpoint as long as a refresh's lease allows (the API, kickoff and service
functions; `bitbridge.tokens`). One refresh per message (BatchSize 1), so each gets the whole invocation.

A refresh that fails is not retried from here: it leaves the connection due, and the next caller asks again.
"""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines, tokens
from bitbridge.config import settings

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    with deadlines.within(context):
        for record in event.get("Records") or []:
            try:
                asked = json.loads(record["body"])
                user_id, provider_id, version = str(asked["user_id"]), str(asked["provider_id"]), int(asked["version"])
            except (ValueError, KeyError, TypeError):
                logger.error("unreadable token refresh message", extra={"message_id": record.get("messageId")})
                continue
            outcome = tokens.refresh_handed_over(user_id, provider_id, version)
            logger.info("token refresh", extra={"provider": provider_id, "outcome": outcome})
    return {"batchItemFailures": []}
