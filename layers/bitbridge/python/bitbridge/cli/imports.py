"""`bitbridge imports ...` - list, inspect, retry and cancel import jobs (admin view: every user's jobs).

bitbridge imports list [--state STATE] [--user USER_ID] [--limit N] [--json]
bitbridge imports show ID
bitbridge imports retry ID      resume a failed or cancelled import from its last checkpoint
bitbridge imports cancel ID
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bitbridge.cli import CliError, positive_int


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("imports", help="list, inspect, retry and cancel import jobs")
    commands = group.add_subparsers(dest="command", required=True)

    list_ = commands.add_parser("list", help="import jobs, newest first")
    list_.add_argument("--state", choices=_states(), help="only jobs in this state")
    list_.add_argument("--user", help="only this user's jobs (bitbridge user id)")
    list_.add_argument("--limit", type=positive_int, default=50)
    list_.add_argument("--json", action="store_true")
    list_.set_defaults(run=run_list)

    for name, helptext, func in (
        ("show", "one job in full", run_show),
        ("retry", "resume a failed or cancelled job from its checkpoint", run_retry),
        ("cancel", "cancel an active job", run_cancel),
    ):
        cmd = commands.add_parser(name, help=helptext)
        cmd.add_argument("id", help="import id")
        cmd.set_defaults(run=func)


def _states() -> tuple[str, ...]:
    from bitbridge.store.imports import ACTIVE_STATES, TERMINAL_STATES

    return (*ACTIVE_STATES, *TERMINAL_STATES)


def _job(job_id: str) -> Any:
    from bitbridge.imports import jobs

    job = jobs.load(job_id) if job_id.isalnum() else None
    if job is None:
        raise CliError(f"no import {job_id} (see bitbridge imports list)")
    return job


def _rows(args: argparse.Namespace) -> list[Any]:
    from bitbridge.store.imports import JOB_SK, JobRecord

    if args.user:
        from bitbridge.cli.hooks import known_user

        known_user(args.user)
        found = list(JobRecord.by_owner.query(args.user, scan_index_forward=False))
    else:
        # The admin view spans every user: a filtered scan (jobs are few next to their pages).
        found = sorted(JobRecord.scan(JobRecord.sk == JOB_SK), key=lambda j: j.created_at, reverse=True)
    if args.state:
        found = [j for j in found if j.state == args.state]
    return found[: args.limit]


def run_list(args: argparse.Namespace) -> int:
    from bitbridge.imports import queries

    rows = [queries.public(j) | {"owner": j.owner_id} for j in _rows(args)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No imports.")
    else:
        width = max(len(str(r["id"])) for r in rows)
        print(f"{'ID':<{width}}  {'STATE':<18} {'STEP':<13} {'PROVIDER':<18} {'REPOSITORY':<32} PROGRESS")
    for r in rows:
        progress = " ".join(f"{k}={v}" for k, v in r["progress"].items())
        print(
            f"{r['id']:<{width}}  {r['state']:<18} {r['step']:<13} {r['provider']:<18} "
            f"{r['repository']['full_name']:<32} {progress}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from bitbridge.imports import queries

    job = _job(args.id)
    print(json.dumps(queries.public(job) | {"owner": job.owner_id, "checkpoint": job.checkpoint}, indent=2))
    return 0


def run_retry(args: argparse.Namespace) -> int:
    from bitbridge.imports import changes, jobs

    try:
        job = changes.retry(_job(args.id))
    except jobs.ImportRequestError as exc:
        raise CliError(str(exc)) from None
    print(f"Import {job.job_id} re-queued; it resumes at step {job.step}.")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from bitbridge.imports import changes, jobs

    try:
        job = changes.cancel(_job(args.id))
    except jobs.ImportRequestError as exc:
        raise CliError(str(exc)) from None
    print(f"Import {job.job_id} cancelled.")
    return 0
