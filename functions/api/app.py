"""Lambda entry point for the console (/ and /assets/*), /login, /health and the session-authenticated
/api/* routes: one resolver over the per-area routers in `bitbridge.routes`."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines, edge
from bitbridge.config import settings
from bitbridge.routes import ROUTERS

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()
app = APIGatewayHttpResolver()
edge.install(app)
for router in ROUTERS:
    app.include_router(router)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    with deadlines.within(context):  # a token refresh never outlives this invocation
        return app.resolve(event, context)
