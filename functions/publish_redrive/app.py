"""Lambda entry point for the PublishFailureQueue: republish parked deliveries once the bus answers.

A message whose deliveries are all settled is deleted (partial batch response); one the bus still
refuses stays, invisible for a doubling delay (``bitbridge.webhooks.redrive``).
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines
from bitbridge.config import settings
from bitbridge.webhooks.redrive import handle_failure_messages

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    with deadlines.within(context):  # enrichment's token refresh never outlives this invocation
        return handle_failure_messages(event.get("Records") or [])
