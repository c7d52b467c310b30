"""Lambda entry point for GitSyncQueue (SQS, partial batch responses): bitbridge's `repository.push` events keep
each imported repository's git data current."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge.config import settings
from bitbridge.imports.gitsync import handle_batch

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return handle_batch(event.get("Records") or [], context)
