"""The console's Activity: the newest normalised events of the repositories a user imported.

The publisher keeps a short recent-events map on each imported project item (see
bitbridge.webhooks.project_state.record_recent), so this is one index query for the user's newest
jobs and one batch read of their projects: no scan, no read of the deliveries table.
"""

from __future__ import annotations

from typing import Any

from bitbridge.store.imports import PROJECT_SK, JobRecord, ProjectRecord, project_pk

JOBS_CONSIDERED = 200  # the user's newest import jobs; older ones' repositories drop out of Activity


def recent_events(user_id: str, limit: int = 50) -> list[dict[str, Any]]:
    projects = {
        (job.provider_id, job.repository_id)
        for job in JobRecord.by_owner.query(user_id, scan_index_forward=False, limit=JOBS_CONSIDERED)
    }
    if not projects:
        return []
    events: list[dict[str, Any]] = []
    for project in ProjectRecord.batch_get(
        [(project_pk(provider, repo), PROJECT_SK) for provider, repo in projects],
        attributes_to_get=["pk", "sk", "provider_id", "recent_events"],
    ):
        for entry in (project.recent_events.as_dict() if project.recent_events else {}).values():
            events.append({**entry, "provider": project.provider_id})
    events.sort(key=lambda e: (str(e.get("occurred_at", "")), str(e.get("id", ""))), reverse=True)
    return events[:limit]
