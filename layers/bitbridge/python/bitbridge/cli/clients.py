"""`bitbridge clients ...` - service API clients (products' backends) and their keys.

bitbridge clients add ID --scopes tokens:read,proxy --origin https://app.example.com [--label TEXT] [--json]
bitbridge clients list [--json]
bitbridge clients rotate ID [--overlap 24h] [--json]   a new key; the old ones keep working for the overlap
bitbridge clients revoke ID [--key KEY_ID]              the whole client, or one key

A key is printed once, when it is made; bitbridge keeps only a salted hash of it.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from bitbridge.cli import CliError


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("clients", help="service API clients and their keys")
    commands = group.add_subparsers(dest="command", required=True)

    add = commands.add_parser("add", help="register a client and print its first key (shown once)")
    add.add_argument("id", help="client id: lowercase letters, digits, dashes")
    add.add_argument("--scopes", required=True, help="comma-separated: " + ", ".join(_scopes()))
    add.add_argument("--origin", action="append", default=[], help="an origin connect sessions may return to")
    add.add_argument("--label")
    add.add_argument("--json", action="store_true")
    add.set_defaults(run=run_add)

    list_ = commands.add_parser("list", help="clients, their scopes, origins and keys (never the secrets)")
    list_.add_argument("--json", action="store_true")
    list_.set_defaults(run=run_list)

    rotate = commands.add_parser("rotate", help="a new key; current keys keep working for the overlap")
    rotate.add_argument("id")
    rotate.add_argument("--overlap", default="24h", help="how long the old keys keep working (e.g. 30s, 15m, 24h)")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(run=run_rotate)

    revoke = commands.add_parser("revoke", help="revoke a client (every key) or one key")
    revoke.add_argument("id")
    revoke.add_argument("--key", help="revoke only this key id")
    revoke.set_defaults(run=run_revoke)


def _scopes() -> tuple[str, ...]:
    from bitbridge.service.credentials import SCOPES

    return SCOPES


def duration_seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise CliError(f"a duration is a number with s, m, h or d (e.g. 24h), got {value!r}")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def run_add(args: argparse.Namespace) -> int:
    from bitbridge.service import credentials

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        record, key = credentials.add_client(args.id, scopes, args.origin, args.label)
    except credentials.ClientError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({"client_id": record.client_id, "key": key, "scopes": sorted(record.scopes)}))
        return 0
    print(f"Client {record.client_id} registered with scopes {', '.join(sorted(record.scopes))}.")
    print(f"Its key (shown once, store it as a secret):\n\n  {key}\n")
    print("Send it as `Authorization: Bearer <key>`; see docs/service-api.md.")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from bitbridge.service import credentials

    rows: list[dict[str, Any]] = []
    for client in credentials.list_clients():
        keys = [
            {
                "key_id": k.key_id,
                "state": credentials.key_state(k),
                "created_at": k.created_at,
                "expires_at": k.expires_at,
            }
            for k in credentials.keys_of(client)
        ]
        rows.append(
            {
                "client_id": client.client_id,
                "label": client.label,
                "status": client.status,
                "scopes": sorted(client.scopes or ()),
                "origins": sorted(client.origins or ()),
                "keys": keys,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No service clients.")
    for r in rows:
        print(f"{r['client_id']:<24} {r['status']:<8} scopes={','.join(r['scopes'])} origins={','.join(r['origins'])}")
        for k in r["keys"]:
            print(f"    {k['key_id']}  {k['state']:<8} created {k['created_at']}")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from bitbridge.service import credentials

    try:
        key, phased = credentials.rotate(args.id, duration_seconds(args.overlap))
    except credentials.ClientError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({"client_id": args.id, "key": key, "phased_out": phased, "overlap": args.overlap}))
        return 0
    print(f"New key for {args.id} (shown once):\n\n  {key}\n")
    print(f"Old keys {', '.join(phased) or '(none)'} keep working for {args.overlap}, then only the new one does.")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from bitbridge.service import credentials

    try:
        credentials.revoke(args.id, args.key)
    except credentials.ClientError as exc:
        raise CliError(str(exc)) from None
    what = f"Key {args.key} of {args.id}" if args.key else f"Client {args.id} and every key it had"
    print(f"{what} revoked (running functions notice within {int(credentials.CACHE_SECONDS)} s).")
    return 0
