"""`bitbridge budget` (who spends how much of their Bitbucket allowance now) and `bitbridge providers
set-limits` (a provider's rate limits, over its flavor's published numbers)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bitbridge import budget, providers
from bitbridge.cli import CliError
from bitbridge.safe_text import one_line


def _waiting(row: dict[str, Any], now: float) -> str:
    parts = [
        f"{priority} x{w['waiters']} until +{max(0, round(w['until'] - now))}s"
        for priority, w in row.get("waiting", {}).items()
    ]
    return ", ".join(parts) or "-"


def show(args: argparse.Namespace) -> int:
    if args.provider:
        providers.get_provider(args.provider)  # an unknown id is a mistake, not an empty report
    rows = budget.report(args.provider, args.user)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No budget has been spent yet" + (" by this person." if args.user else "."))
        return 0
    now = time.time()
    print(f"{'PROVIDER':<20} {'WHO':<28} {'CLASS':<13} {'USED':>7} {'LIMIT':>7} {'PER':<8} {'429s':>5}  WAITING")
    for row in rows:
        who = one_line(str(row.get("person") or row.get("user_id") or "(OAuth consumer)"))[:28]
        if row.get("limited"):
            per = f"{row['window_seconds']:g}s" if row["model"] == "window" else f"{row['refill_per_second']:g}/s"
            used, limit = f"{row['used']:g}", str(row["limit"])
            if row.get("ceiling_until"):
                limit = f"{row['ceiling']}*"  # held after a 429 until its window passes
        else:
            used, limit, per = "-", "off", ""
        print(
            f"{row['provider']:<20} {who:<28} {row['class']:<13} {used:>7} {limit:>7} {per:<8} "
            f"{row['rejected']:>5}  {_waiting(row, now)}"
        )
    if any(r.get("ceiling_until") for r in rows):
        print("\n* held to what bitbridge already spends after Bitbucket answered 429 (another app spends it too)")
    return 0


def _classes(pairs: list[str] | None) -> dict[str, int]:
    classes: dict[str, int] = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        if not name or not value.strip().isdigit():
            raise CliError(f"--class takes NAME=N (a whole number of calls), got {pair!r}")
        classes[name.strip()] = int(value)
    return classes


def set_limits(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {
        "window_seconds": args.window_seconds,
        "refill_per_second": args.refill_per_second,
        "scope": args.scope,
        "reserve": None if args.reserve is None else args.reserve / 100,
        "enabled": None if args.limits is None else args.limits == "on",
        "classes": _classes(args.klass),
    }
    if not args.reset and not any(v not in (None, {}) for v in changes.values()):
        raise CliError("nothing to set; see `bitbridge providers set-limits --help`")
    record = providers.set_limits(args.id, changes, reset=args.reset)
    print(json.dumps({"provider": args.id, "limits": providers.limits(record).describe()}, indent=2))
    return 0


def register_set_limits(command: Any) -> None:
    """`providers set-limits`, added to the providers group by its `register` (`command` makes a subcommand)."""
    p = command("set-limits", set_limits, "set a provider's rate limits (default: Bitbucket's published numbers)")
    p.add_argument("id")
    p.add_argument("--window-seconds", type=float, help="Cloud: the rolling window (3600; less to test at speed)")
    p.add_argument(
        "--class",
        dest="klass",
        action="append",
        metavar="NAME=N",
        help="a class's limit (Cloud: repositories, webhooks, raw, git, other per window; Data Center: http=CAPACITY)",
    )
    p.add_argument("--refill-per-second", type=float, help="Data Center: the bucket's refill rate (5)")
    p.add_argument("--scope", choices=("per_user", "per_consumer"), help="whose allowance OAuth calls spend")
    p.add_argument("--reserve", type=float, metavar="PERCENT", help="the share only people waiting may spend (5)")
    p.add_argument("--limits", choices=("on", "off"), help="off: no budget (a Data Center without rate limiting)")
    p.add_argument("--reset", action="store_true", help="back to the flavor's published numbers first")


def register(groups: Any) -> None:
    p = groups.add_parser("budget", help="rate-limit budgets: what each person (or consumer) spends now")
    p.add_argument("--provider", help="one provider")
    p.add_argument("--user", help="one person (bitbridge user id)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=show)
