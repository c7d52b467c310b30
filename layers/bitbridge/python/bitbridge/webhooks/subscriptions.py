"""Webhook subscriptions: install, find and remove bitbridge's hook on a repository.

A repository has at most one bitbridge subscription; its id is derived from the provider and
repository id, so installing twice finds the same subscription, the same hook (matched by our
URL) and the same secret - never a duplicate. The secret is derived from the master key and the
subscription id (`derive_hook_secret`), so nothing per hook is stored anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bitbridge import providers
from bitbridge.aws import secret_value
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.bitbucket.repos import hook_id
from bitbridge.calls import INTERACTIVE, WEBHOOKS, Caller
from bitbridge.config import settings
from bitbridge.store.subscriptions import SubscriptionRecord, repository_key
from bitbridge.timestamps import iso
from bitbridge.webhooks import deploy_keys
from bitbridge.webhooks.binding import subscription_id
from bitbridge.webhooks.signatures import derive_hook_secret


class HookPermissionDenied(Exception):
    """The connected user may not manage hooks on this repository (needs admin rights)."""


@dataclass(frozen=True)
class Repository:
    provider_id: str
    repository_id: str  # Cloud uuid, Data Center numeric id
    owner: str  # Cloud workspace slug, Data Center project key (~USER for personal repositories)
    slug: str
    name: str | None = None  # display name and web page, as Bitbucket's REST API gave them (when known)
    html_url: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.slug}"


@dataclass(frozen=True)
class Installed:
    subscription: SubscriptionRecord
    url: str
    events: tuple[str, ...]
    secret: str | None  # only for manual installs, to paste into Bitbucket; never stored


def hook_url(base_url: str, provider_id: str, sub_id: str) -> str:
    return f"{base_url.rstrip('/')}/hooks/{provider_id}/{sub_id}"


def hook_secret(sub_id: str) -> str:
    return derive_hook_secret(secret_value(settings().webhook_master_key_secret_arn).encode(), sub_id)


def _hooks_url(provider: Any, repo: Repository) -> str:
    return providers.bitbucket(provider).hooks_url(provider.api_url, repo.owner, repo.slug)


def _hook_call(caller: Caller, method: str, url: str, what: str, **kwargs: Any) -> Any:
    # Data Center answers 401 to a user without admin rights: not a stale token, so no refresh.
    return caller.call(method, url, what, resource=WEBHOOKS, refresh_on_401=False, **kwargs)


def _find_hook(caller: Caller, url: str, our_url: str) -> str | None:
    """Bitbucket's id of the hook pointing at our URL, if one exists (so we update, not duplicate)."""

    def fetch(page_url: str, params: dict[str, Any] | None) -> Any:
        return _hook_call(caller, "GET", page_url, "listing repository hooks", params=params).json()

    cursor: str | None = None
    while True:
        page = providers.bitbucket(caller.provider).hooks_page(fetch, url, cursor)
        found = next((hook_id(h) for h in page.values if h.get("url") == our_url), None)
        if found or page.next is None:
            return found
        cursor = page.next


def _existing(sub_id: str) -> SubscriptionRecord | None:
    try:
        return SubscriptionRecord.get(sub_id, consistent_read=True)
    except SubscriptionRecord.DoesNotExist:
        return None


def _update_hook(caller: Caller, hooks: str, hook_id: str, body: dict[str, Any]) -> bool:
    try:
        _hook_call(caller, "PUT", f"{hooks}/{quote(hook_id, safe='')}", "updating the hook", json=body)
    except BitbucketError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _create_hook(caller: Caller, hooks: str, body: dict[str, Any]) -> str:
    return hook_id(_hook_call(caller, "POST", hooks, "creating the hook", json=body).json())


def install_webhook(
    user_id: str | None,
    repo: Repository,
    base_url: str,
    *,
    manual: bool = False,
    caller: Caller | None = None,
) -> Installed:
    """Create or update bitbridge's hook on `repo` (as `user_id`), or, with `manual`, only the
    subscription plus what an admin pastes into Bitbucket by hand. A caller already calling Bitbucket
    as `user_id` (the import worker, the reconciler) passes its `Caller`: provider and token not read again.

    One call in the common cases: a known hook is updated by its id, and a repository without a
    subscription gets one recorded *before* the hook is created - so an attempt interrupted after
    Bitbucket created the hook leaves a subscription without a hook id, and the next attempt
    looks the hook up by URL instead of creating a second one.
    """
    provider = caller.provider if caller else providers.get_provider(repo.provider_id)
    sub_id = subscription_id(repo.provider_id, repo.repository_id)
    url = hook_url(base_url, repo.provider_id, sub_id)
    events = providers.bitbucket(provider).webhook_events
    secret = hook_secret(sub_id)
    existing = _existing(sub_id)
    record = SubscriptionRecord(
        sub_id,
        provider_id=repo.provider_id,
        repository_key=repository_key(repo.provider_id, repo.repository_id),
        repository_full_name=repo.full_name,
        # What events call the repository (a payload only vouches for its id); kept when not known now.
        repository_name=repo.name or (existing.repository_name if existing else None),
        repository_html_url=repo.html_url or (existing.repository_html_url if existing else None),
        hook_id=existing.hook_id if existing else None,
        events=list(events),
        manual=manual,
        owner_user_id=user_id,
        created_at=existing.created_at if existing else iso(),
        last_delivery_at=existing.last_delivery_at if existing else None,
        health=existing.health if existing else None,
        last_delivery_id=existing.last_delivery_id if existing else None,
        hook_url=url,
    )
    for name in SubscriptionRecord.RECONCILE_FIELDS if existing else ():
        setattr(record, name, getattr(existing, name))
    if manual:
        record.save()
        return Installed(record, url, events, secret)
    if user_id is None:
        raise ValueError("installing a hook needs a connected user (or use manual)")
    caller = caller or Caller(user_id, provider, priority=INTERACTIVE)
    hooks = _hooks_url(provider, repo)
    body = providers.bitbucket(provider).hook_body(url, events, secret)
    try:
        if existing is None:
            record.save(condition=SubscriptionRecord.pk.does_not_exist())
            try:
                record.hook_id = _create_hook(caller, hooks, body)
            except BitbucketError:
                record.delete()  # nothing was created: leave no subscription behind
                raise
        elif not (existing.hook_id and _update_hook(caller, hooks, existing.hook_id, body)):
            # A manual or interrupted subscription, or a hook deleted on Bitbucket's side.
            found = _find_hook(caller, hooks, url)
            if found and _update_hook(caller, hooks, found, body):
                record.hook_id = found
            else:
                record.hook_id = _create_hook(caller, hooks, body)
    except BitbucketError as exc:
        if exc.status in (401, 403):
            raise HookPermissionDenied(
                f"{repo.full_name}: the connected user may not manage its webhooks "
                "(needs admin rights); install it by hand with `bitbridge hooks install --manual`"
            ) from None
        raise
    record.save()
    return Installed(record, url, events, None)


def remove_webhook(sub_id: str, user_id: str | None = None) -> None:
    """Delete the hook from Bitbucket (when we installed it), the deploy key the import added, and the
    subscription. The key goes first: refused (no admin rights), nothing has changed yet."""
    record = SubscriptionRecord.get(sub_id)
    hook = bool(record.hook_id and not record.manual)
    if hook or record.deploy_key_id:
        owner = user_id or record.owner_user_id
        if owner is None:
            raise ValueError("removing an installed hook or deploy key needs the connected user")
        provider = providers.get_provider(record.provider_id)
        full_name = record.repository_full_name
        owner_key, _, slug = full_name.partition("/")
        repo = Repository(record.provider_id, record.repository_key.split("#", 1)[1], owner_key, slug)
        caller = Caller(owner, provider, priority=INTERACTIVE)
        try:
            deploy_keys.remove_with(record, caller)
        except deploy_keys.KeyPermissionDenied:
            raise BitbucketError(
                f"{full_name}: the connected user may not remove bitbridge's deploy key (needs admin rights); "
                "pass --user with an admin of the repository",
                403,
                permanent=True,
            ) from None
        if hook:
            try:
                url = f"{_hooks_url(provider, repo)}/{quote(str(record.hook_id), safe='')}"
                _hook_call(caller, "DELETE", url, "deleting")
            except BitbucketError as exc:
                if exc.status != 404:  # already gone on Bitbucket's side is fine
                    raise
    record.delete()


def list_subscriptions() -> list[SubscriptionRecord]:
    return sorted(SubscriptionRecord.scan(), key=lambda s: (s.provider_id, s.repository_full_name))
