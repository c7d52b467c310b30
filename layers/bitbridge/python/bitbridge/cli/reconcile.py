"""`bitbridge reconcile [--repo OWNER/SLUG]` - reconcile subscriptions with Bitbucket now (all of them, or
one repository), as the scheduled reconciler does over its interval: repair hooks, backfill missed
changes, mark subscriptions that need attention."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from bitbridge.cli import CliError, positive_int


def reconcile(args: argparse.Namespace) -> int:
    from bitbridge.config import settings
    from bitbridge.reconcile.run import SimulatedCrash, run
    from bitbridge.webhooks.subscriptions import list_subscriptions

    if args.repo is not None:
        owner, _, slug = args.repo.partition("/")
        if not owner or not slug or "/" in slug:
            raise CliError(f"--repo takes WORKSPACE/SLUG or PROJECT/SLUG, got {args.repo!r}")
        if not any(s.repository_full_name.lower() == args.repo.lower() for s in list_subscriptions()):
            raise CliError(f"no subscription for {args.repo} (see bitbridge hooks list)")
    try:
        report = run(
            repo=args.repo,
            budget=args.budget or settings().reconcile_api_budget,
            crash_after_emits=args.crash_after_events,
        )
    except SimulatedCrash as exc:
        print(f"reconciliation stopped: {exc}")
        return 3
    if args.json:
        print(json.dumps([asdict(r) for r in report.results], indent=2))
        return 0
    if not report.results:
        print("No subscriptions to reconcile.")
    for r in report.results:
        extra = f" repaired: {r.repaired}" if r.repaired else ""
        extra += f" ({r.reason})" if r.reason else ""
        print(f"{r.repository:<32} {r.status:<15} backfilled {r.backfilled:<4} calls {r.calls:<4}{extra}")
    print(
        f"{len(report.results)} subscription(s): {report.total('backfilled')} missed change(s) backfilled, "
        f"{report.total('repaired')} hook(s) repaired, {report.count('needs_attention')} need attention."
    )
    return 0


def register(groups: Any) -> None:
    p = groups.add_parser("reconcile", help="reconcile subscriptions with Bitbucket now")
    p.add_argument("--repo", help="only this repository (WORKSPACE/SLUG or PROJECT/SLUG)")
    p.add_argument("--budget", type=positive_int, help="Bitbucket calls per provider (default: the stack's budget)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--crash-after-events", type=int, help=argparse.SUPPRESS)  # tests: die mid-run
    p.set_defaults(run=reconcile)
