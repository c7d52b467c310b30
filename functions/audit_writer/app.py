"""Lambda entry point for the service API's audit trail: the records ServiceApiFunction wrote as log lines.

Two sources, one job. CloudWatch Logs invokes it (asynchronously) with a batch from the service API's log
group; if the write fails Lambda retries twice and then parks the batch on AuditRetryQueue (the function's
dead-letter queue), from which the SQS event source retries it until it lands (AuditDeadLetterQueue and
its alarm after that). A failure raises, so neither source loses a batch.
"""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge.config import settings
from bitbridge.service import audit

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()


def _log_batches(event: dict) -> list[str]:
    if "awslogs" in event:
        return [event["awslogs"]["data"]]
    # A parked batch: the dead-letter message body is the original invocation's event.
    return [json.loads(record["body"])["awslogs"]["data"] for record in event.get("Records") or []]


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    written = invalid = 0
    for data in _log_batches(event):
        batch = audit.decode_log_batch(data)
        found, bad = audit.entries(batch.get("logEvents") or [])
        audit.store(found)
        written, invalid = written + len(found), invalid + bad
    if invalid:
        # A line matched the filter but is not a record we wrote: nothing to retry, worth a look.
        logger.warning("log lines that are not audit records skipped", extra={"count": invalid})
    logger.info("audit records written", extra={"count": written})
    return {"written": written, "skipped": invalid}
