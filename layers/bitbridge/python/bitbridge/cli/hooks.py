"""`bitbridge hooks ...` - install, list, remove and test repository webhooks."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bitbridge.cli import CliError, public_base_url


def known_user(user_id: str) -> str:
    """`user_id` when it names a bitbridge user, else the one-line error."""
    from bitbridge import accounts

    if accounts.get_user(user_id) is None:
        raise CliError(f"no user {user_id!r} (a bitbridge user id: `id` in /api/me, or OWNER in `imports list`)")
    return user_id


def _repository(args: argparse.Namespace) -> Any:
    from bitbridge import providers
    from bitbridge.bitbucket.http import BitbucketError
    from bitbridge.calls import INTERACTIVE, Caller
    from bitbridge.webhooks.subscriptions import Repository

    provider = providers.get_provider(args.provider)
    owner, _, slug = args.repo.partition("/")
    if not owner or not slug or "/" in slug:
        raise CliError(f"--repo takes WORKSPACE/SLUG (Cloud) or PROJECT/SLUG (Data Center), got {args.repo!r}")
    if args.user:
        known_user(args.user)
    elif not args.manual:
        raise CliError("pass --user (the connected user whose token installs the hook), or --manual")
    if args.repository_id:
        return Repository(args.provider, args.repository_id, owner, slug)
    if not args.user:
        raise CliError("pass --user (a connected user id, see /api/me) or --repository-id")
    caller = Caller(args.user, provider, priority=INTERACTIVE)
    try:
        repo, _ = providers.bitbucket(caller.provider).repository(caller.fetch, caller.api, args.repo)
    except BitbucketError as exc:
        raise CliError(str(exc)) from None
    return Repository(args.provider, repo.id, repo.owner, repo.slug, repo.name, repo.html_url)


def install(args: argparse.Namespace) -> int:
    from bitbridge.webhooks.subscriptions import HookPermissionDenied, install_webhook

    repo = _repository(args)
    try:
        installed = install_webhook(args.user, repo, public_base_url(args), manual=args.manual)
    except HookPermissionDenied as exc:
        raise CliError(str(exc)) from None
    sub = installed.subscription
    if not args.manual:
        print(f"Installed: subscription {sub.subscription_id} on {repo.full_name} (hook {sub.hook_id}).")
        return 0
    print(f"Subscription {sub.subscription_id} created for {repo.full_name}. In Bitbucket, add a webhook with:\n")
    print(f"  URL:     {installed.url}")
    print(f"  Secret:  {installed.secret}")
    print(f"  Events:  {', '.join(installed.events)}\n")
    print("The secret is derived, not stored: `bitbridge hooks install --manual` prints it again.")
    return 0


def list_(args: argparse.Namespace) -> int:
    from bitbridge.webhooks.subscriptions import list_subscriptions

    rows = [
        {
            "subscription": s.subscription_id,
            "provider": s.provider_id,
            "repository": s.repository_full_name,
            "hook_id": s.hook_id,
            "manual": s.manual,
            "last_delivery_at": s.last_delivery_at,
            "health": s.health,
            "state": s.state or "active",
            "attention_reason": s.attention_reason,
            "last_reconciled_at": s.last_reconciled_at,
            "missed_changes_backfilled": int(s.missed_changes_backfilled or 0),
            "hook_repairs": int(s.hook_repairs or 0),
            "last_hook_repair": s.last_hook_repair,
        }
        for s in list_subscriptions()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No webhook subscriptions.")
    else:
        print(
            f"{'SUBSCRIPTION':<28} {'PROVIDER':<18} {'REPOSITORY':<32} {'KIND':<9} {'STATE':<15} {'HEALTH':<9} "
            f"{'LAST DELIVERY':<24} {'RECONCILED':<24} {'BACKFILLED':>10} {'REPAIRS':>7}"
        )
    for r in rows:
        kind = "manual" if r["manual"] else "installed"
        print(
            f"{r['subscription']:<28} {r['provider']:<18} {r['repository']:<32} {kind:<9} {r['state']:<15} "
            f"{r['health'] or '-':<9} {r['last_delivery_at'] or '-':<24} {r['last_reconciled_at'] or '-':<24} "
            f"{r['missed_changes_backfilled']:>10} {r['hook_repairs']:>7}"
        )
        if r["attention_reason"]:
            print(f"    needs attention: {r['attention_reason']}")
    return 0


def remove(args: argparse.Namespace) -> int:
    from bitbridge.bitbucket.http import BitbucketError
    from bitbridge.store.subscriptions import SubscriptionRecord
    from bitbridge.webhooks.subscriptions import remove_webhook

    if args.user:
        known_user(args.user)
    try:
        remove_webhook(args.subscription, args.user)
    except SubscriptionRecord.DoesNotExist:
        raise CliError(f"no subscription {args.subscription} (see bitbridge hooks list)") from None
    except ValueError as exc:  # an installed hook whose owner is unknown
        raise CliError(f"{exc}: pass --user") from None
    except BitbucketError as exc:
        raise CliError(str(exc)) from None
    print(f"Removed subscription {args.subscription}.")
    return 0


def test(args: argparse.Namespace) -> int:
    """Show what bitbridge last heard on this subscription: the proof that deliveries arrive."""
    from bitbridge.store.subscriptions import SubscriptionRecord

    try:
        sub = SubscriptionRecord.get(args.subscription)
    except SubscriptionRecord.DoesNotExist:
        raise CliError(f"no subscription {args.subscription} (see bitbridge hooks list)") from None
    if sub.last_delivery_at is None:
        print(f"{sub.repository_full_name}: no delivery received yet. Push to the repository, then run this again.")
        return 1
    print(f"{sub.repository_full_name}: last delivery {sub.last_delivery_at}, health {sub.health}.")
    return 0 if sub.health == "ok" else 1


def register(groups: Any) -> None:
    parser = groups.add_parser("hooks", help="repository webhooks (subscriptions)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install", help="install (or update) bitbridge's hook on a repository")
    p.add_argument("--provider", required=True)
    p.add_argument("--repo", required=True, help="WORKSPACE/SLUG or PROJECT/SLUG")
    p.add_argument("--user", help="id of the connected user whose token installs the hook")
    p.add_argument("--repository-id", help="Bitbucket's repository id (uuid / number), if known")
    p.add_argument("--manual", action="store_true", help="only create the subscription; print what to paste")
    p.add_argument("--base-url", help="the API's public URL (default: the stack's)")
    p.set_defaults(run=install)

    p = sub.add_parser("list", help="list subscriptions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=list_)

    p = sub.add_parser("remove", help="remove the hook from Bitbucket and the subscription")
    p.add_argument("subscription")
    p.add_argument("--user", help="connected user whose token removes the hook (default: who installed it)")
    p.set_defaults(run=remove)

    p = sub.add_parser("test", help="check that deliveries arrive on a subscription")
    p.add_argument("subscription")
    p.set_defaults(run=test)
