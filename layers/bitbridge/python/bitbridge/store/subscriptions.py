"""Webhook subscriptions: one per repository hook bitbridge installed (or an admin configured by hand).

The hook's secret is derived from the webhook master key and ``pk`` (the subscription id) and is never
stored. The publisher updates ``last_delivery_at`` and ``health`` with a conditional UpdateItem, so a
deleted subscription is never recreated by a late delivery.
"""

from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from bitbridge.store.base import register, table_meta
from bitbridge.timestamps import iso


def repository_key(provider_id: str, repository_id: str) -> str:
    return f"{provider_id}#{repository_id}"


class ByRepository(GlobalSecondaryIndex["SubscriptionRecord"]):
    class Meta:
        index_name = "by_repository"
        projection = AllProjection()

    repository_key = UnicodeAttribute(hash_key=True)


@register
class SubscriptionRecord(Model):
    Meta = table_meta("subscriptions_table")

    pk = UnicodeAttribute(hash_key=True)  # the subscription id, as in /hooks/{provider}/{subscription}
    provider_id = UnicodeAttribute()
    repository_key = UnicodeAttribute()  # repository_key(provider_id, repository id)
    repository_full_name = UnicodeAttribute()  # display only: renames change it
    # The repository's display name and web page as Bitbucket's REST API gave them when the hook was installed:
    # the names events carry (a payload vouches for ids only; bitbridge.webhooks.publish). None when unknown.
    repository_name = UnicodeAttribute(null=True)
    repository_html_url = UnicodeAttribute(null=True)
    hook_id = UnicodeAttribute(null=True)  # Bitbucket's hook id; None for manual subscriptions until known
    events = ListAttribute(of=UnicodeAttribute, default=list)  # X-Event-Key values subscribed
    manual = BooleanAttribute(default=False)  # configured by hand in Bitbucket (`hooks install --manual`)
    owner_user_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=iso)
    last_delivery_at = UnicodeAttribute(null=True)  # received_at of the newest delivery published
    health = UnicodeAttribute(null=True)  # ok | malformed | rejected (last delivery's outcome); None before any
    last_delivery_id = UnicodeAttribute(null=True)
    # Deliveries signed with this subscription's secret but naming another repository or provider.
    rejected_count = NumberAttribute(null=True)
    last_rejected_at = UnicodeAttribute(null=True)
    last_rejected_id = UnicodeAttribute(null=True)
    # Reconciliation (bitbridge.reconcile.run): the hook's URL as installed (to repair it), the health
    # the reconciler found, and what it did.
    hook_url = UnicodeAttribute(null=True)
    state = UnicodeAttribute(null=True)  # None = active | needs_attention
    attention_reason = UnicodeAttribute(null=True)
    attention_count = NumberAttribute(default=0)  # times it became unhealthy (numbers its events)
    last_reconciled_at = UnicodeAttribute(null=True)
    last_reconcile_calls = NumberAttribute(null=True)  # Bitbucket calls the last reconciliation made
    # What Bitbucket's change probe answered when the refs were last compared (Cloud: the repository's
    # updated_on; Data Center: the newest ref-change activity id): refs are read again only once it moves.
    refs_mark = UnicodeAttribute(null=True)
    # When its last reconciliation's checks began (our clock): the workspace listing's start where there is one
    # (Cloud), else its own reads'. Everything Bitbucket changed before it was compared; the next listing and
    # pull request probe ask for changes since the oldest of these in the workspace (less a margin).
    checked_at = UnicodeAttribute(null=True)
    # Its last comparison of pull requests held the watermark back (differences observed, confirmations that did
    # not hold): the next run reads its pull requests again, whatever a probe says.
    prs_recheck = BooleanAttribute(null=True)
    last_hook_check_at = UnicodeAttribute(null=True)  # hooks are checked on their own cadence (reconcile.run)
    missed_changes_backfilled = NumberAttribute(default=0)
    hook_repairs = NumberAttribute(default=0)
    last_hook_repair_at = UnicodeAttribute(null=True)
    last_hook_repair = UnicodeAttribute(null=True)  # what was wrong
    # The provider's deploy key as the import installed it on the repository (bitbridge.webhooks.deploy_keys):
    # Bitbucket's id for it there, and the key (`algorithm base64`), so a changed provider key is noticed.
    deploy_key_id = UnicodeAttribute(null=True)
    deploy_key_text = UnicodeAttribute(null=True)
    last_deploy_key_repair = UnicodeAttribute(null=True)  # "{when} {what the reconciler repaired}"

    by_repository = ByRepository()

    #: Written by the reconciler (and the deploy-key step); a reinstall keeps them.
    RECONCILE_FIELDS = (
        "state",
        "attention_reason",
        "attention_count",
        "last_reconciled_at",
        "last_reconcile_calls",
        "missed_changes_backfilled",
        "hook_repairs",
        "last_hook_repair_at",
        "last_hook_repair",
        "deploy_key_id",
        "deploy_key_text",
        "last_deploy_key_repair",
    )

    @property
    def subscription_id(self) -> str:
        return str(self.pk)
