"""`import.started | progress | completed | failed` on the event bus (Source "bitbridge").

The job in DynamoDB is the record of truth; these events tell downstream systems as it happens. Each has
a stable `id` (job + event + step) so consumers can deduplicate a redelivered one.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from bitbridge.aws import client
from bitbridge.config import settings
from bitbridge.store.imports import JobRecord
from bitbridge.timestamps import iso

logger = Logger(child=True)

SOURCE = "bitbridge"


def detail(job: JobRecord, name: str) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "id": f"{job.job_id}:{name}:{job.step}:{job.state}",
        "type": name,
        "import_id": job.job_id,
        "provider": {"id": job.provider_id, "flavor": job.flavor},
        "repository": {"id": job.repository_id, "full_name": job.repository_full_name},
        "state": job.state,
        "step": job.step,
        "counts": dict(job.counts or {}),
        "api_calls": int(job.api_calls or 0),
        "error": {"reason": job.reason, "message": job.error} if job.error else None,
        "occurred_at": iso(),
    }


def publish(job: JobRecord, name: str) -> None:
    """Best effort: a bus outage must not fail or repeat an import (its state is in DynamoDB)."""
    try:
        result = client("events").put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": name,
                    "Detail": json.dumps(detail(job, name)),
                    "EventBusName": settings().event_bus_name,
                }
            ]
        )
        if result.get("FailedEntryCount"):
            logger.warning("import event not published", extra={"event": name, "import_id": job.job_id})
    except Exception:
        logger.warning("import event not published", extra={"event": name, "import_id": job.job_id}, exc_info=True)
