"""Lambda entry point for POST /hooks/{provider}/{subscription}: verify, store once, answer.

Deliberately no APIGatewayHttpResolver: one route, and every millisecond of cold start counts here
(Bitbucket waits 10 s, and deliveries arrive in bursts). The core decides; this shapes the answer.
"""

from aws_lambda_powertools import Logger

from bitbridge import edge
from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.webhooks.receipt import receive

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()
# Created during init, which Lambda runs at full CPU before the first delivery is waiting on it.
client("dynamodb")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: object) -> dict:
    params = event.get("pathParameters") or {}
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    try:
        receipt = receive(
            provider_id=params.get("provider", ""),
            subscription_id=params.get("subscription", ""),
            headers=headers,
            body=event.get("body"),
            base64_encoded=bool(event.get("isBase64Encoded")),
        )
    except Exception as exc:
        # AWS is unavailable: a 5xx makes Bitbucket retry the delivery later. The type is enough
        # to diagnose; no message, which could carry request data.
        logger.error("delivery not stored", extra={"error": type(exc).__name__})
        return edge.json_response(
            edge.STATUS["delivery_not_stored"], {"message": "temporarily unavailable, retry later"}
        )
    status = edge.STATUS[receipt.outcome]
    logger.info(
        "delivery %s",
        receipt.outcome,
        extra={
            "status": status,
            "provider": params.get("provider"),
            "subscription": params.get("subscription"),
            "event_key": receipt.event_key,
            "delivery_id": receipt.delivery_id,
        },
    )
    return edge.json_response(status, receipt.body())
