"""The push consumer: keeps each imported repository's git data current (GitSyncFunction).

bitbridge's own event stream feeds it: an EventBridge rule sends every `repository.push` event - a delivery from
Bitbucket, or a push the reconciler found that deliveries missed - to GitSyncQueue, and each message brings the
repository's bundles up to date (`gitdata.update`). Nothing in the publisher knows about it.

- A push to a repository without git data (never imported, or imported with `exclude: ["git"]`) is dropped; one
  whose import is still on its way (its git step not done yet) comes back in RETRY_SECONDS.
- Pushes in quick succession cost one update: each sync fetches the refs as they are now, so those that follow
  find nothing new (one request each). Syncs of one repository take turns (the pointer's lease).
- Bitbucket's 429 and outages (and AWS's) send the message back (ChangeMessageVisibility: Retry-After, else a backoff);
  after the queue's maxReceiveCount it is parked in GitSyncDeadLetterQueue (alarm). Nothing is lost by then: the
  next push or reconciliation brings everything up to date. A connection that must be re-authorised, or a
  repository Bitbucket refuses, is noted on the pointer (`last_sync`) and the message dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from bitbridge import deadlines, providers, tokens
from bitbridge.aws import client
from bitbridge.bitbucket.http import BitbucketError, RateLimited
from bitbridge.budget import IMPORT, OverBudget
from bitbridge.calls import Caller
from bitbridge.config import settings
from bitbridge.imports import bundles, gitdata
from bitbridge.imports.jobs import get_item, load
from bitbridge.store import git_state
from bitbridge.store.imports import ACTIVE_STATES, REPOJOB_SK, RepoJobRecord, repojob_pk
from bitbridge.timestamps import iso

logger = Logger(child=True)

RETRY_SECONDS = 30  # an import on its way, a sync of the same repository in progress
LEASE_SECONDS = 330  # longer than the function's Timeout: a sync that died frees the repository after it
SAFETY_MS = 20_000
MAX_VISIBILITY = 43_200  # SQS's limit for ChangeMessageVisibility


def handle_batch(records: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """One push event per message, one after another (one git fetch at a time per container)."""
    failures: list[dict[str, str]] = []
    for record in records:
        with deadlines.within(context):  # a token refresh never outlives the invocation (else it is handed over)
            retry = sync_record(record, context)
        if retry is not None:
            client("sqs").change_message_visibility(
                QueueUrl=settings().git_sync_queue_url,
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=max(0, min(MAX_VISIBILITY, int(retry))),
            )
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def sync_record(record: dict[str, Any], context: Any) -> float | None:
    """Seconds after which the message should come back, or None when it is done with."""
    try:
        detail = json.loads(record["body"])["detail"]
        provider_id = str(detail["provider"]["id"])
        repository = detail["repository"]
        target = gitdata.Target(
            provider_id,
            str(repository["id"]),
            str(repository["full_name"]),
            repository["workspace"],
            repository["slug"],
        )
    except (ValueError, KeyError, TypeError):
        logger.error("unreadable push event", extra={"message_id": record.get("messageId")})
        return None
    return sync(target, context)


def _remaining_ms(context: Any) -> int:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return int(getter()) if getter else 300_000


def sync(target: gitdata.Target, context: Any) -> float | None:
    state = git_state.get(target.provider_id, target.repository_id)
    if state is None:
        return RETRY_SECONDS if _import_on_its_way(target) else None
    run = uuid.uuid4().hex
    now = int(time.time())
    if not git_state.take_lease(state, run, now, now + LEASE_SECONDS):
        return RETRY_SECONDS
    log = {"repository": target.full_name, "provider": target.provider_id}

    def stop(outcome: str, reason: str) -> None:
        git_state.release(state, run, {"outcome": outcome, "reason": reason[:500], "at": iso()})

    try:
        provider = providers.get_provider(target.provider_id)
        caller = Caller(state.owner_id, provider, priority=IMPORT)  # keeping an import current is import work
        with gitdata.SLOT:
            outcome = gitdata.update(
                state,
                caller,
                providers.bitbucket(provider),
                provider.web_url,
                target,
                lease=run,
                deadline=gitdata.deadline_for(lambda: _remaining_ms(context), SAFETY_MS),
            )
        logger.info("git data synced", extra=log | {"outcome": outcome.get("outcome") or outcome.get("status")})
        return None
    except OverBudget as exc:  # the owner's rate-limit budget has no room now: back at the slot it gave
        stop("waiting_budget", "waiting for room in the rate-limit budget")
        return max(1.0, exc.retry_at - time.time())
    except RateLimited as exc:
        stop("rate_limited", str(exc))
        return exc.retry_after or 60
    except (tokens.ReauthRequired, tokens.NotConnected):
        stop("reauth_required", "The importing user's Bitbucket connection must be re-authorised.")
        return None
    except providers.UnknownProvider:
        stop("failed", f"The provider {target.provider_id} is no longer registered.")
        return None
    except BitbucketError as exc:
        stop("failed" if exc.permanent else "retrying", str(exc))
        return None if exc.permanent else RETRY_SECONDS
    except (tokens.TokenUnavailable, bundles.Incomplete, gitdata.OutOfTime, ClientError, BotoCoreError) as exc:
        stop("retrying", str(exc) or type(exc).__name__)
        return RETRY_SECONDS
    except BaseException:
        stop("retrying", "unexpected error")
        raise


def _import_on_its_way(target: gitdata.Target) -> bool:
    """Whether the repository's import is still running and will bundle its git data (then the push waits)."""
    pointer = get_item(RepoJobRecord, repojob_pk(target.provider_id, target.repository_id), REPOJOB_SK)
    job = load(pointer.job_id) if pointer else None
    return job is not None and job.state in ACTIVE_STATES and bool((job.options or {}).get("git"))
