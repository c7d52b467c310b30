"""`bitbridge providers ...` - register, inspect, verify and change Bitbucket providers."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from bitbridge import providers, ssh_keys
from bitbridge.cli import CliError, budget, positive_int, public_base_url
from bitbridge.safe_text import one_line


def _secret(args: argparse.Namespace) -> str:
    if args.secret_stdin:
        return sys.stdin.readline().strip()
    if args.secret:
        return str(args.secret)
    return getpass.getpass("Secret (not echoed): ")


def _show(record: Any) -> dict[str, Any]:
    return {
        "id": record.provider_id,
        "flavor": record.flavor,
        "label": record.label,
        "web_url": record.web_url,
        "api_url": record.api_url,
        "scopes": record.scope_list,
        "sign_in": record.sign_in,
        "imports": record.imports,
        "status": record.status,
        "status_detail": record.status_detail,
        "verified_at": record.verified_at,
        "deploy_key": _deploy_key(record),
    }


def _deploy_key(record: Any) -> dict[str, Any] | None:
    if not record.deploy_key:
        return None
    key = ssh_keys.parse(record.deploy_key)
    return {"label": record.deploy_key_label, "fingerprint": key.fingerprint, "key": key.line()}


def add(args: argparse.Namespace) -> int:
    # Everything that can fail is settled before anything is created: no half-registered provider.
    base = public_base_url(args)
    record = providers.add_provider(
        args.id,
        args.flavor,
        args.key,
        _secret(args),
        web_url=args.url,
        api_url=args.api_url,
        label=args.label,
        scopes=args.scopes.split(",") if args.scopes else None,
        sign_in=not args.no_sign_in,
        imports=not args.no_imports,
    )
    print(f"Registered provider {record.provider_id} ({record.flavor}), status: {record.status}.\n")
    print("Paste this callback URL into Bitbucket:")
    print(f"  {providers.callback_url(base, record.provider_id)}\n")
    print(f"Permissions to tick: {providers.PERMISSIONS_TO_TICK[record.flavor]}\n")
    print(f"Then verify it: bitbridge providers verify {record.provider_id}")
    return 0


def list_(args: argparse.Namespace) -> int:
    rows = [_show(p) for p in providers.list_providers()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No providers registered. Add one with `bitbridge providers add`.")
    else:
        print(f"{'ID':<24} {'FLAVOR':<11} {'STATUS':<9} {'USE':<16} URL")
    for row in rows:
        purposes = ",".join(p for p in ("sign_in", "imports") if row[p]) or "none"
        print(f"{row['id']:<24} {row['flavor']:<11} {row['status']:<9} {purposes:<16} {row['web_url']}")
    return 0


def show(args: argparse.Namespace) -> int:
    record = providers.get_provider(args.id)
    details = _show(record) | {"callback_url": providers.callback_url(public_base_url(args), record.provider_id)}
    print(json.dumps(details, indent=2))
    return 0


def verify(args: argparse.Namespace) -> int:
    from bitbridge import verification
    from bitbridge.provider_checks import preflight

    record = providers.get_provider(args.id)
    base = public_base_url(args)
    problems = preflight(record, providers.credentials(args.id), providers.callback_url(base, args.id))
    if problems:
        providers.mark_failed(args.id, "; ".join(problems))
        print(f"{args.id} is misconfigured:")
        for problem in problems:
            print(f"  - {one_line(problem)}")
        return 1
    providers.clear_diagnosis(args.id)  # whatever failed before is fixed, as far as the checks can tell
    ticket = verification.mint(args.id)
    print("Pre-flight checks passed (reachable, client known, secret accepted, redirect URI accepted).")
    print("Complete one OAuth round trip in a browser to verify the provider (this link works once):\n")
    print(f"  {providers.verification_url(base, args.id, ticket)}\n")
    if args.no_wait:
        return 0
    print(f"Waiting up to {args.timeout} s for the round trip ...")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        outcome = verification.outcome(ticket)  # this attempt's own outcome, never an earlier one's
        if outcome == "verified":
            print(f"{args.id} is verified.")
            return 0
        if outcome == "failed":
            # Stored text may quote Bitbucket: printed as one line without terminal escapes.
            detail = one_line(providers.get_provider(args.id).status_detail or "no detail recorded")
            print(f"{args.id} failed verification: {detail}")
            return 1
        time.sleep(1)
    print("No round trip completed in time; run verify again when ready.")
    return 1


def set_(args: argparse.Namespace) -> int:
    changes: dict[str, object] = {}
    for name in ("label", "web_url", "api_url"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.scopes is not None:
        changes["scopes"] = " ".join(args.scopes.split(","))
    for name in ("sign_in", "imports"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value == "on"
    if not changes:
        raise CliError("nothing to set; see `bitbridge providers set --help`")
    print(json.dumps(_show(providers.update_provider(args.id, **changes)), indent=2))
    return 0


def set_deploy_key(args: argparse.Namespace) -> int:
    if args.remove:
        if args.key_file or args.label:
            raise CliError("--remove takes no --key-file or --label")
        providers.set_deploy_key(args.id, None)
        print(f"{args.id}: imports no longer add a deploy key (keys already added stay until their subscription goes).")
        return 0
    if not args.key_file:
        raise CliError("give the public key: --key-file id_ed25519.pub (or --remove)")
    try:
        with open(args.key_file, encoding="utf-8") as fh:
            text = fh.read(ssh_keys.MAX_LENGTH + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.key_file}: {exc.__class__.__name__}") from None
    record = providers.set_deploy_key(args.id, text, args.label)
    key = ssh_keys.parse(str(record.deploy_key))
    label = record.deploy_key_label
    print(f"{args.id}: imports add this key read-only to each repository ({key.fingerprint}, label {label!r}).")
    print(
        "Repositories that have the previous key get this one at their next reconciliation; "
        "those imported without a key get it when imported again."
    )
    return 0


def rotate_secret(args: argparse.Namespace) -> int:
    providers.rotate_secret(args.id, _secret(args), client_id=args.key)
    print(f"Stored the new secret for {args.id}; status is pending until `bitbridge providers verify {args.id}`.")
    return 0


def remove(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError(f"removing {args.id} deletes its secret and stops sign-in through it; add --yes")
    providers.remove_provider(args.id)
    print(f"Removed provider {args.id}.")
    return 0


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except providers.ProviderError as exc:
            raise CliError(str(exc)) from None

    return run


def register(groups: Any) -> None:
    parser = groups.add_parser("providers", help="Bitbucket providers (Cloud consumers, Data Center links)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(run=_run(func))
        return p

    def secret_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--secret", help="the client secret (prefer --secret-stdin or the prompt)")
        p.add_argument("--secret-stdin", action="store_true", help="read the secret from standard input")

    p = command("add", add, "register a provider; prints the callback URL to paste into Bitbucket")
    p.add_argument("id", help="id used in URLs, e.g. bitbucket-cloud or acme-datacenter")
    p.add_argument("--flavor", choices=providers.FLAVORS, required=True)
    p.add_argument("--key", required=True, help="the OAuth consumer key / client id")
    secret_options(p)
    p.add_argument("--url", help="Data Center base URL; for Cloud, the web URL (default https://bitbucket.org)")
    p.add_argument("--api-url", help="API base URL (default derived from the flavor and --url)")
    p.add_argument("--label", help="label for the sign-in button")
    p.add_argument("--scopes", help="comma-separated scopes (default: what bitbridge needs)")
    p.add_argument("--no-sign-in", action="store_true", help="use for imports only, not sign-in")
    p.add_argument("--no-imports", action="store_true", help="use for sign-in only")
    p.add_argument("--base-url", help="the API's public URL (default: the stack's)")

    p = command("list", list_, "list providers")
    p.add_argument("--json", action="store_true")

    p = command("show", show, "show one provider and its callback URL")
    p.add_argument("id")
    p.add_argument("--base-url")

    p = command("verify", verify, "check a provider and verify it with a real OAuth round trip")
    p.add_argument("id")
    p.add_argument("--base-url")
    p.add_argument("--timeout", type=positive_int, default=300)
    p.add_argument("--no-wait", action="store_true", help="print the URL and exit")

    p = command("set", set_, "change a provider's settings")
    p.add_argument("id")
    p.add_argument("--label")
    p.add_argument("--web-url")
    p.add_argument("--api-url")
    p.add_argument("--scopes", help="comma-separated")
    p.add_argument("--sign-in", choices=("on", "off"))
    p.add_argument("--imports", choices=("on", "off"))

    p = command("set-deploy-key", set_deploy_key, "the SSH public key imports add read-only to each repository")
    p.add_argument("id")
    p.add_argument("--key-file", help="the public key file (id_ed25519.pub): never the private key")
    p.add_argument("--label", help="the key's label in Bitbucket (default bitbridge)")
    p.add_argument("--remove", action="store_true", help="stop adding a key (those added stay until removed)")

    p = command("rotate-secret", rotate_secret, "store a new client secret (and optionally key)")
    p.add_argument("id")
    p.add_argument("--key", help="a new client id, if it changed too")
    secret_options(p)

    p = command("remove", remove, "remove a provider and its secret")
    p.add_argument("id")
    p.add_argument("--yes", action="store_true")

    budget.register_set_limits(command)
