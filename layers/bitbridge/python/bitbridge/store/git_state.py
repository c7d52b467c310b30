"""Where a repository's git data stands (ImportsTable): the pointer the push consumer keeps current.

  GIT#{provider}#{repository id}   / GIT    the latest import's bundles, in the order to apply them

`chain` lists the bundles (`{"key", "index", "refs", "sha256", "bytes", "objects", "prerequisites", "at"}`,
keys relative to `prefix`): the first a full bundle, each later one an update over the ones before it.
`sequence` numbers the updates written so far; `refs_digest` names the refs the last bundle holds, so a push that
changed nothing bitbridge keeps costs one look at Bitbucket's refs. Updates are made under a lease
(`lease_owner`, `lease_until`): one at a time per repository, and the pointer moves only with the lease held.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from bitbridge.store.base import condition_failed, register, table_meta
from bitbridge.timestamps import iso

GIT_SK = "GIT"


def git_pk(provider_id: str, repository_id: str) -> str:
    return f"GIT#{provider_id}#{repository_id}"


@register
class GitStateRecord(Model):
    Meta = table_meta("imports_table")

    pk = UnicodeAttribute(hash_key=True)  # GIT#{provider}#{repository id}
    sk = UnicodeAttribute(range_key=True, default=GIT_SK)
    provider_id = UnicodeAttribute()
    repository_id = UnicodeAttribute()
    repository_full_name = UnicodeAttribute()
    import_id = UnicodeAttribute()  # the import whose snapshot the bundles belong to
    prefix = UnicodeAttribute()  # that snapshot's S3 prefix
    owner_id = UnicodeAttribute()  # whose connection fetches (the import's owner)
    sequence = NumberAttribute(default=0)  # updates written since the import
    chain = JSONAttribute(default=list)
    refs_digest = UnicodeAttribute(null=True)  # bitbridge.imports.bundles.digest of the latest refs
    last_sync = JSONAttribute(null=True)  # {"at", "outcome", "seconds", "fetched_bytes", "objects", "reason"}
    updated_at = UnicodeAttribute(default=iso)
    lease_owner = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)


def get(provider_id: str, repository_id: str) -> GitStateRecord | None:
    try:
        return GitStateRecord.get(git_pk(provider_id, repository_id), GIT_SK, consistent_read=True)
    except GitStateRecord.DoesNotExist:
        return None


def start(record: GitStateRecord) -> None:
    """An import's git data: the pointer starts over from its bundle (a later import replaces an earlier one)."""
    record.pk, record.sk, record.updated_at = git_pk(record.provider_id, record.repository_id), GIT_SK, iso()
    record.save()


def take_lease(record: GitStateRecord, owner: str, now: int, until: int) -> bool:
    """The pointer's lease for `owner` until `until` (epoch); False while another sync holds it."""
    try:
        record.update(
            actions=[GitStateRecord.lease_owner.set(owner), GitStateRecord.lease_until.set(until)],
            condition=GitStateRecord.pk.exists()
            & (GitStateRecord.lease_until.does_not_exist() | (GitStateRecord.lease_until < now)),
        )
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise


def advance(record: GitStateRecord, owner: str, changes: dict[str, Any]) -> bool:
    """Move the pointer (`changes`: attribute -> value) and release the lease, only while `owner` holds it
    (False: the lease was lost, or a new import replaced the pointer)."""
    actions = [getattr(GitStateRecord, name).set(value) for name, value in changes.items()]
    actions += [
        GitStateRecord.updated_at.set(iso()),
        GitStateRecord.lease_owner.remove(),
        GitStateRecord.lease_until.remove(),
    ]
    try:
        record.update(actions=actions, condition=GitStateRecord.lease_owner == owner)
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise


def release(record: GitStateRecord, owner: str, last_sync: dict[str, Any]) -> None:
    """Give the lease back, noting what the sync found (nothing to do, or why it stopped)."""
    advance(record, owner, {"last_sync": last_sync})
