"""The provider's deploy key on imported repositories: added read-only by each import, removed with the
repository's subscription, put back by the reconciler.

An admin registers one SSH public key per provider (`bitbridge providers set-deploy-key`), as GitLab registers
its server's key: whatever holds the private key may then clone and fetch the imported repositories over SSH,
read-only. It is added as a Cloud deploy key (`/2.0/repositories/{workspace}/{slug}/deploy-keys`) or a Data
Center repository access key with REPO_READ (`/rest/keys/latest/projects/{key}/repos/{slug}/ssh`), as the
import's owner. Adding is idempotent: the repository's keys are read first, and the same key (comment and label
aside) is found rather than added twice.

Only repository admins may add keys (and on Cloud the connection needs `repository:admin`): a person without
admin rights gets `manual_required`, with the key and the settings page where an admin pastes it. What was
installed is recorded on the repository's subscription (`deploy_key_id`, `deploy_key_text`), so removing the
subscription removes the key and the reconciler checks it is still there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pynamodb.expressions.update import Action

from bitbridge import providers, ssh_keys
from bitbridge.bitbucket.http import BitbucketError
from bitbridge.calls import Caller
from bitbridge.store.base import condition_failed
from bitbridge.store.imports import HOOK_FAILED, HOOK_INSTALLED, HOOK_MANUAL
from bitbridge.store.providers import ProviderRecord
from bitbridge.store.subscriptions import SubscriptionRecord
from bitbridge.timestamps import iso

logger = logging.getLogger(__name__)

INSTALLED, MANUAL, FAILED = HOOK_INSTALLED, HOOK_MANUAL, HOOK_FAILED
DEFAULT_LABEL = "bitbridge"


class KeyPermissionDenied(Exception):
    """The connected user may not manage the repository's access keys (needs admin rights)."""


@dataclass(frozen=True)
class Where:
    owner: str  # workspace or project key
    slug: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.slug}"


def configured(provider: ProviderRecord) -> ssh_keys.PublicKey | None:
    """The provider's deploy key, if an admin registered one."""
    text = provider.deploy_key
    return ssh_keys.parse(text) if text else None


def _keys_url(caller: Caller, where: Where) -> str:
    provider = caller.provider
    return providers.bitbucket(provider).deploy_keys_url(provider.web_url, caller.api, where.owner, where.slug)


def _call(caller: Caller, method: str, url: str, what: str, **kwargs: Any) -> Any:
    # Data Center answers 401 to a user without admin rights: not a stale token, so no refresh (as for hooks).
    try:
        return caller.call(method, url, what, refresh_on_401=False, **kwargs)
    except BitbucketError as exc:
        if exc.status in (401, 403):
            raise KeyPermissionDenied(what) from None
        raise


def find(caller: Caller, where: Where, key: ssh_keys.PublicKey) -> str | None:
    """Bitbucket's id of `key` on the repository, if it is there."""
    bitbucket = providers.bitbucket(caller.provider)
    url = _keys_url(caller, where)

    def fetch(page_url: str, params: dict[str, Any] | None) -> Any:
        return _call(caller, "GET", page_url, "listing the repository's access keys", params=params).json()

    cursor: str | None = None
    while True:
        page = bitbucket.deploy_keys_page(fetch, url, cursor)
        for raw in page.values:
            key_id, text = bitbucket.deploy_key_of(raw)
            if ssh_keys.same_key(text, key.text):
                return key_id
        if page.next is None:
            return None
        cursor = page.next


def add(caller: Caller, where: Where, key: ssh_keys.PublicKey, label: str) -> str:
    """The key on the repository, read-only: found, or added (Bitbucket's id either way)."""
    found = find(caller, where, key)
    if found is not None:
        return found
    bitbucket = providers.bitbucket(caller.provider)
    body = bitbucket.deploy_key_body(key.line(label), label)
    added = _call(caller, "POST", _keys_url(caller, where), "adding the deploy key", json=body).json()
    return bitbucket.deploy_key_of(added)[0]


def remove(caller: Caller, where: Where, key_id: str) -> None:
    """Take the key off the repository (already gone is fine)."""
    try:
        _call(caller, "DELETE", f"{_keys_url(caller, where)}/{quote(key_id, safe='')}", "removing the deploy key")
    except BitbucketError as exc:
        if exc.status != 404:
            raise


def manual(provider: ProviderRecord, where: Where, key: ssh_keys.PublicKey, label: str, why: str) -> dict[str, Any]:
    """What a person without admin rights is told: the key, and where an admin of the repository pastes it."""
    page = providers.bitbucket(provider).deploy_key_settings_url(provider.web_url, where.owner, where.slug)
    return {
        "status": MANUAL,
        "reason": f"{why} An admin of {where.full_name} adds this key, read-only, at {page}",
        "key": key.line(label),
        "fingerprint": key.fingerprint,
        "where": page,
    }


def install(caller: Caller, where: Where, subscription_id: str | None) -> dict[str, Any] | None:
    """The import's deploy-key step: the job's `deploy_key` outcome (None: the provider has no key). Recorded on
    the subscription when there is one. 429 and outages propagate (the step is retried like any other)."""
    provider = caller.provider
    key = configured(provider)
    if key is None:
        return None
    label = provider.deploy_key_label or DEFAULT_LABEL
    try:
        key_id = add(caller, where, key, label)
    except KeyPermissionDenied:
        why = (
            "The connected account may not manage this repository's access keys: that needs admin rights on the "
            f"repository, and a connection with the permissions bitbridge asks for ({_permissions(provider)})."
        )
        return manual(provider, where, key, label, why)
    except BitbucketError as exc:
        if not exc.permanent:
            raise
        return {"status": FAILED, "reason": f"Bitbucket refused the key: {exc}"}
    if subscription_id is not None:
        record(subscription_id, key_id, key.text)
    return {"status": INSTALLED, "key_id": key_id, "fingerprint": key.fingerprint}


def _permissions(provider: ProviderRecord) -> str:
    return providers.bitbucket(provider).permissions_to_tick


def record(subscription_id: str, key_id: str | None, text: str | None, repaired: str | None = None) -> None:
    """Remember (or forget, with None) the key installed on the subscription's repository, and what the
    reconciler repaired."""
    actions: list[Action] = (
        [SubscriptionRecord.deploy_key_id.set(key_id), SubscriptionRecord.deploy_key_text.set(text)]
        if key_id and text
        else [SubscriptionRecord.deploy_key_id.remove(), SubscriptionRecord.deploy_key_text.remove()]
    )
    if repaired:
        actions += [SubscriptionRecord.last_deploy_key_repair.set(f"{iso()} {repaired}")]
    try:
        SubscriptionRecord(subscription_id).update(actions=actions, condition=SubscriptionRecord.pk.exists())
    except Exception as exc:
        if not condition_failed(exc):  # the subscription was removed meanwhile: nothing to record on
            raise


def where_of(sub: SubscriptionRecord) -> Where:
    owner, _, slug = sub.repository_full_name.partition("/")
    return Where(owner, slug)


def remove_with(sub: SubscriptionRecord, caller: Caller) -> None:
    """The subscription is being removed: its repository's deploy key goes with it."""
    if sub.deploy_key_id:
        remove(caller, where_of(sub), str(sub.deploy_key_id))


def repair(sub: SubscriptionRecord, caller: Caller) -> str | None:
    """The reconciler's check of one subscription's deploy key: what was repaired (None: nothing to do).

    A key bitbridge installed must still be there and be the provider's current key: deleted in Bitbucket, it is
    added again; replaced by the admin (`set-deploy-key`), the new key goes on and the old one off. A key never
    installed (a person without admin rights) is left to the person who pastes it. Raises KeyPermissionDenied
    when the owner lost admin rights, and Bitbucket's errors as any call does."""
    key = configured(caller.provider)
    if not sub.deploy_key_id:
        return None
    where = where_of(sub)
    if key is None:  # the admin removed the provider's key: take it off the repository
        remove(caller, where, str(sub.deploy_key_id))
        record(sub.subscription_id, None, None, "the provider's deploy key was removed")
        return "the provider's deploy key was removed"
    if sub.deploy_key_text and ssh_keys.same_key(str(sub.deploy_key_text), key.text):
        if find(caller, where, key) is not None:
            return None
        problem = "the deploy key was deleted in Bitbucket"
    else:
        problem = "the provider's deploy key changed"
        remove(caller, where, str(sub.deploy_key_id))
    label = caller.provider.deploy_key_label or DEFAULT_LABEL
    record(sub.subscription_id, add(caller, where, key, label), key.text, problem)
    return problem


def reconcile(sub: SubscriptionRecord, caller: Caller) -> tuple[str | None, int]:
    """The reconciler's deploy-key check of one subscription (`repair`, with its own call count): (what was
    repaired, Bitbucket calls made). An owner without admin rights is left alone (the hook check says so)."""
    if not sub.deploy_key_id:
        return None, 0
    own = caller.fork()
    try:
        repaired = repair(sub, own)
    except KeyPermissionDenied:
        return None, own.calls
    if repaired:
        logger.info("deploy key repaired", extra={"subscription": sub.subscription_id, "repaired": repaired})
    return repaired, own.calls
