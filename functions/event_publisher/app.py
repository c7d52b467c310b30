"""Lambda entry point for the deliveries table's stream: publish each new delivery as an event.

Partial batch responses (ReportBatchItemFailures) make the stream retry from the first delivery that
could not be published; after the event source's retries the batch goes to the PublishFailureQueue.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines
from bitbridge.config import settings
from bitbridge.webhooks.publish import handle_stream_records

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    with deadlines.within(context):  # enrichment's token refresh never outlives this invocation
        result = handle_stream_records(event.get("Records") or [])
    if result["batchItemFailures"]:
        logger.warning("batch not fully published; the stream retries from the first failure")
    return result
