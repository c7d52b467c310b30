"""Lambda entry point for the reconciliation schedule (every minute; each run reconciles one slot of the
interval): hook checks and repairs, and backfill of what deliveries missed."""

from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from bitbridge import deadlines
from bitbridge.config import settings
from bitbridge.reconcile.run import per_run_budget, run

# Cold start: the environment is read and checked now; a missing or malformed variable fails here, named.
settings()

logger = Logger()
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    config = settings()
    minutes = config.reconcile_interval_minutes
    now = datetime.now(UTC)
    with deadlines.within(context):  # a token refresh never outlives this invocation
        report = run(
            slot=int(now.timestamp() // 60) % minutes,
            slots=minutes,
            budget=per_run_budget(config.reconcile_api_budget, minutes),
            now=now,
        )
    waited = report.count("deferred") + report.count("rate_limited") + report.count("waiting_budget")
    summary = {
        "reconciled": len(report.results) - waited,
        "backfilled": report.total("backfilled"),
        "hook_repairs": report.total("repaired"),
        "needs_attention": report.count("needs_attention"),
        "deferred": waited,
        "api_calls": report.total("calls"),
    }
    metrics.add_metric(name="MissedChangesBackfilled", unit=MetricUnit.Count, value=summary["backfilled"])
    metrics.add_metric(name="HookRepairs", unit=MetricUnit.Count, value=summary["hook_repairs"])
    metrics.add_metric(name="SubscriptionsNeedingAttention", unit=MetricUnit.Count, value=summary["needs_attention"])
    metrics.add_metric(name="ReconcileDeferred", unit=MetricUnit.Count, value=summary["deferred"])
    metrics.add_metric(name="ReconcileApiCalls", unit=MetricUnit.Count, value=summary["api_calls"])
    logger.info("reconciliation run", extra=summary)
    return summary
