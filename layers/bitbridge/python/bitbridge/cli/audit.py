"""`bitbridge audit --client ID [--since 24h] [--end-user ID] [--json]` - the service API's audit trail.

One line per token vend, proxy call and other service call: time, end user, provider, method, path
(query secrets redacted), status and duration. Never a token.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bitbridge.cli import CliError, positive_int


def register(subparsers: Any) -> None:
    cmd = subparsers.add_parser("audit", help="the service API's audit trail for one client")
    cmd.add_argument("--client", required=True, help="service client id")
    cmd.add_argument("--since", default="24h", help="how far back: 90s, 15m, 2h, 7d, or an ISO time (default 24h)")
    cmd.add_argument("--end-user", help="only this end user's calls")
    cmd.add_argument("--limit", type=positive_int, default=1000)
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bitbridge.service import audit, credentials

    try:
        credentials.get_client(args.client)
    except credentials.ClientError as exc:
        raise CliError(f"{exc} (see bitbridge clients list)") from None
    try:
        start = audit.parse_since(args.since)
    except ValueError:
        raise CliError(f"--since: 90s, 15m, 2h, 7d or an ISO time, got {args.since!r}") from None
    rows = audit.since(args.client, start, args.end_user, args.limit)
    for r in rows:
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['at']}  {r['action']:<16} {r['end_user_id'] or '-':<16} {r['provider'] or '-':<16} "
                f"{r['method']:<6} {r['status']}  {r['duration_ms']:>7.1f} ms  {r['path']}"
            )
    if not rows and not args.json:
        print(f"No service calls by {args.client} since {start.isoformat(timespec='seconds')}.")
    return 0
