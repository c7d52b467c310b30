"""A repository's git data in its snapshot: every branch and tag as a verified git bundle, kept current on push.

**At import** (the worker's `git` step, `snapshot`): one fetch over git's smart HTTP with the person's token
(`git_transport`, every request through `calls.Caller.send`), the pack streamed to /tmp, checked as a bundle
(`bundles.verify`: checksums, deltas, every ref's history complete), then published in the snapshot:

    git/repository.bundle   the bundle: `git clone repository.bundle` checks out the default branch
    git/repository.idx      its pack's index (git's .idx v2): what later bundles are checked against
    git/refs.json           every branch and tag with its object (annotated tags: `peeled` to their commit)

The bundle goes up to its key as a multipart upload in parts, each with its SHA-256 (which S3 checks as it stores
the part), while the pack is checked on a thread beside it; the upload is completed - the bundle appears at its
key - only once the check passed and the index is written, and S3's checksum of what it assembled and its size must
then equal ours: a bundle at its key is always whole and verified, and it is never copied. Its sha256, object
count and the digest of its refs travel in the object's metadata, so an attempt that dies after publishing is
finished by the next one without a second download or a second bundle (the refs Bitbucket advertises equal those
of the bundle already there: adopted). One that dies mid-upload leaves only parts, which nobody sees (the bucket's
lifecycle aborts them after 7 days).

**After the import** (`update`, for each `repository.push` event the push consumer takes off the bus): the refs
are compared with the pointer's (`store.git_state`); unchanged, that was one request. Otherwise the fetch names
the previous heads as `have`s, so Bitbucket sends only what is new, and the pack becomes an update bundle -
`git/updates/NNNNN.bundle` (+ `.idx`, `.refs.json`), prerequisites the previous heads - checked against the
bundles before it (every object it needs is in it or in them). Why updates and not a fresh bundle each time:
an update costs what the push added (bytes and time), a fresh bundle the whole repository, every push
(tests/bench/git_data.py measures both). The chain is bounded: after MAX_UPDATES updates, or once they
outweigh the first bundle, the next push fetches a fresh full bundle that starts a new chain.
`git/latest.json` lists the chain to apply, in order.

**Limits** (template.yaml): the worker and the push consumer have 300 s, 1,024 MB of memory and 2,048 MB of
/tmp. A pack is streamed to /tmp (never held in memory) beside its index, and uploaded in 32 MB parts; one git
fetch runs at a time per container (`SLOT`). A repository larger than GitBundleLimitMb (default 1,024 MB: what
/tmp holds with room, and what fetches, checks and uploads within the time), or whose fetch would not finish in
time, gets `{"status": "too_large", "size", "limit", "what_to_do"}`: the import completes without its git data.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from dulwich.pack import PackIndex

from bitbridge.aws import client
from bitbridge.bitbucket.api import Bitbucket
from bitbridge.calls import Caller
from bitbridge.config import settings
from bitbridge.imports import bundles, git_transport, output
from bitbridge.imports.bundles import Refs
from bitbridge.store import git_state
from bitbridge.store.git_state import GitStateRecord
from bitbridge.timestamps import iso

MB = 1024 * 1024
BUNDLE, INDEX, REFS, LATEST = "git/repository.bundle", "git/repository.idx", "git/refs.json", "git/latest.json"
UPDATES = "git/updates/"
BUNDLE_TYPE = "application/x-git-bundle"
MAX_UPDATES = 32
# One git fetch at a time per container: /tmp and memory are sized for one repository at its limit.
SLOT = threading.BoundedSemaphore(1)
PART = 32 * MB  # a bundle is uploaded in parts of this size (S3 takes one stream at tens of MB/s)
# Metadata a published bundle carries (S3 lowercases the names).
META_SHA256, META_REFS, META_OBJECTS = "bundle-sha256", "refs-digest", "objects"

OutOfTime = git_transport.OutOfTime


@dataclass(frozen=True)
class Target:
    """The repository whose git data is fetched."""

    provider_id: str
    repository_id: str
    full_name: str
    owner: str  # workspace or project key
    slug: str


def limit_bytes() -> int:
    return settings().git_bundle_limit_mb * MB


def too_large(size: int | None, limit: int, *, timed_out: bool = False) -> dict[str, Any]:
    why = (
        "its git data could not be fetched within the function's time limit"
        if timed_out
        else f"its git data is larger than bitbridge's limit of {limit // MB:,} MB"
    )
    return {
        "status": "too_large",
        "size": size,
        "limit": limit,
        "what_to_do": (
            f"The repository was imported without its git data: {why} (stack parameter GitBundleLimitMb; the "
            "worker has 300 s and 2,048 MB of /tmp). Clone it directly with `git clone --mirror` and a token from "
            "bitbridge, or raise GitBundleLimitMb (at most 1,536) and import it again."
        ),
    }


# ------------------------------------------------------------------------------------------------ at import


def snapshot(
    caller: Caller,
    bitbucket: Bitbucket,
    web_url: str,
    target: Target,
    base: str,
    *,
    import_id: str,
    owner_id: str,
    known_size: int | None,
    deadline: float,
    listed: Listing,
) -> tuple[dict[str, Any], list[output.Written]]:
    """The import's git data under `base` (the snapshot's prefix) and the pointer to it: (the job's `git`
    outcome, the objects written). `listed`: the branches and tags as this import listed them, which the refs
    fetched must equal. Raises OutOfTime when the fetch would outlast `deadline`, and Bitbucket's errors as
    any call does."""
    limit, started = limit_bytes(), time.monotonic()
    if known_size is not None and known_size > limit:
        return too_large(known_size, limit), []
    there = _head(base + BUNDLE)  # published by an earlier attempt?
    adopt = (there or {}).get("Metadata", {}).get(META_REFS)
    with tempfile.TemporaryDirectory(prefix="bitbridge-git-") as tmp:
        try:
            fetched = git_transport.fetch(
                caller,
                bitbucket,
                bitbucket.git_url(web_url, target.owner, target.slug),
                Path(tmp) / "repository.pack",
                haves=[],
                unchanged=lambda refs: adopt is not None and bundles.digest(refs) == adopt,
                limit=limit,
                deadline=deadline,
            )
        except git_transport.TooLarge as exc:
            return too_large(exc.received, exc.limit), []
        moved = _moved_since_listing(caller, bitbucket, target, fetched, listed)
        if fetched.pack is None and fetched.refs:  # published by an attempt that died before saying so
            outcome, written = _adopted(there or {}, fetched, target, base, import_id, owner_id)
            return outcome | moved | {"seconds": round(time.monotonic() - started, 3)}, written
        refs_written = output.write_bytes(
            base, REFS, bundles.refs_json(fetched.refs, fetched.peeled), "application/json", len(fetched.refs)
        )
        if fetched.pack is None:  # no branch, no tag: nothing to bundle yet
            _start_pointer(target, base, import_id, owner_id, [], fetched.refs)
            return {"status": "empty", "reason": "The repository has no branches or tags yet."} | moved | _figures(
                fetched, refs_written
            ), [refs_written]
        published = _check_and_publish(base, BUNDLE, INDEX, fetched.pack, fetched.refs, prerequisites=[])
    bundle, objects = published.bundle, published.verified.objects
    _start_pointer(target, base, import_id, owner_id, [_entry(BUNDLE, INDEX, REFS, bundle, objects, 0)], fetched.refs)
    outcome = {"status": "completed", "bundle": _file(bundle), "objects": objects} | moved
    outcome |= {
        "check_seconds": round(published.check_seconds, 3),
        "publish_seconds": round(published.publish_seconds, 3),
    }
    outcome |= _figures(fetched, refs_written) | {"seconds": round(time.monotonic() - started, 3)}
    return outcome, [bundle, published.index, refs_written]


@dataclass(frozen=True)
class Listing:
    """The branches and tags an import listed: the digest it folded them into page by page (None: a job made
    before it did), and how to read them (the pages, read back only when the digest differs)."""

    digest: str | None
    read: Callable[[], Refs]


def _moved_since_listing(
    caller: Caller, bitbucket: Bitbucket, target: Target, fetched: git_transport.Fetched, listed: Listing
) -> dict[str, Any]:
    """The refs fetched must be those the import listed. Where they differ, Bitbucket is asked again (a push
    between the listing and the fetch moves them): equal to the new listing, the outcome names the refs that
    moved (`moved_since_listing`: the snapshot's pages are older than its git data, and the push's event
    brings what it changed); unequal, what arrived over git is not what Bitbucket holds (Incomplete: the step
    is tried again)."""
    if listed.digest is not None and listed.digest == bundles.fetched_digest(fetched.refs, fetched.peeled):
        return {}  # the usual case: no page read back
    differ = bundles.unlike_listed(fetched.refs, fetched.peeled, listed.read())
    if not differ:
        return {}
    now = bundles.heads_of(bitbucket.ref_heads(caller.fetch, caller.api, target.full_name))
    still = bundles.unlike_listed(fetched.refs, fetched.peeled, now)
    if still:
        shown = ", ".join(still[:5]) + (f" and {len(still) - 5} more" if len(still) > 5 else "")
        raise bundles.Incomplete(f"the refs fetched over git are not those Bitbucket lists: {shown}")
    return {"moved_since_listing": differ}


def _adopted(
    published: dict[str, Any],
    fetched: git_transport.Fetched,
    target: Target,
    base: str,
    import_id: str,
    owner_id: str,
) -> tuple[dict[str, Any], list[output.Written]]:
    meta = published.get("Metadata") or {}
    objects = int(meta.get(META_OBJECTS) or 0)
    bundle = output.Written(BUNDLE, objects, int(published["ContentLength"]), str(meta[META_SHA256]))
    refs_body = bundles.refs_json(fetched.refs, fetched.peeled)
    refs_written = output.Written(REFS, len(fetched.refs), len(refs_body), hashlib.sha256(refs_body).hexdigest())
    index_body = _get(base + INDEX)  # written before the bundle was: there
    index = output.Written(INDEX, 0, len(index_body), hashlib.sha256(index_body).hexdigest())
    _start_pointer(target, base, import_id, owner_id, [_entry(BUNDLE, INDEX, REFS, bundle, objects, 0)], fetched.refs)
    outcome = {"status": "completed", "bundle": _file(bundle), "objects": objects}
    return outcome | _figures(fetched, refs_written), [bundle, index, refs_written]


def _figures(fetched: git_transport.Fetched, refs: output.Written) -> dict[str, Any]:
    """What the fetch cost: bytes and requests from Bitbucket, seconds (`seconds`, set by the caller: the
    whole step, fetching, checking and publishing)."""
    return {
        "refs": _file(refs),
        "fetched_bytes": fetched.bytes,
        "requests": fetched.requests,
        "fetch_seconds": round(fetched.seconds, 3),
    }


def _file(written: output.Written) -> dict[str, Any]:
    return {"key": written.key, "sha256": written.sha256, "bytes": written.bytes, "count": written.count}


def _entry(bundle: str, index: str, refs: str, written: output.Written, objects: int, prerequisites: int) -> dict:
    return {
        "key": bundle,
        "index": index,
        "refs": refs,
        "sha256": written.sha256,
        "bytes": written.bytes,
        "objects": objects,
        "prerequisites": prerequisites,
        "at": iso(),
    }


def _start_pointer(
    target: Target, base: str, import_id: str, owner_id: str, chain: list[dict[str, Any]], refs: Refs
) -> None:
    git_state.start(
        GitStateRecord(
            provider_id=target.provider_id,
            repository_id=target.repository_id,
            repository_full_name=target.full_name,
            import_id=import_id,
            prefix=base,
            owner_id=owner_id,
            sequence=0,
            chain=chain,
            refs_digest=bundles.digest(refs),
        )
    )
    _write_latest(base, import_id, 0, chain)


# ------------------------------------------------------------------------------------------------ after pushes


def update(
    state: GitStateRecord,
    caller: Caller,
    bitbucket: Bitbucket,
    web_url: str,
    target: Target,
    *,
    lease: str,
    deadline: float,
) -> dict[str, Any]:
    """Bring the git data `state` points at up to date with Bitbucket, under the pointer's lease `lease`;
    what happened (the pointer's `last_sync`). Raises as `snapshot` does."""
    base, chain = state.prefix, list(state.chain or [])
    fresh = _due_for_a_fresh_bundle(chain)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bitbridge-git-") as tmp:
        folder = Path(tmp)
        previous = {} if fresh else _previous_commits(base, chain)
        indexes = [] if fresh else [_download_index(base, entry, folder / f"{n}.idx") for n, entry in enumerate(chain)]
        try:
            fetched = git_transport.fetch(
                caller,
                bitbucket,
                bitbucket.git_url(web_url, target.owner, target.slug),
                folder / "update.pack",
                haves=sorted(set(previous.values())),
                unchanged=lambda refs: bundles.digest(refs) == state.refs_digest,
                limit=limit_bytes(),
                deadline=deadline,
            )
        except git_transport.TooLarge as exc:
            outcome = too_large(exc.received, exc.limit) | {"at": iso()}
            git_state.release(state, lease, outcome)
            return outcome
        if fetched.pack is None and bundles.digest(fetched.refs) == state.refs_digest:
            outcome = {"outcome": "unchanged", "at": iso(), "requests": fetched.requests}
            git_state.release(state, lease, outcome)
            return outcome
        pack = fetched.pack or _empty_pack(folder / "update.pack")
        sequence = int(state.sequence or 0) + 1
        name = f"{UPDATES}{sequence:05d}"
        prerequisites = sorted(set(previous.values()))
        refs_written = output.write_bytes(
            base, name + ".refs.json", bundles.refs_json(fetched.refs, fetched.peeled), "application/json", 0
        )
        try:
            published = _check_and_publish(
                base,
                name + ".bundle",
                name + ".idx",
                pack,
                fetched.refs,
                prerequisites=prerequisites,
                known=bundles.in_any(indexes),
            )
        finally:
            for index in indexes:
                index.close()
    bundle, verified = published.bundle, published.verified
    entry = _entry(name + ".bundle", name + ".idx", refs_written.key, bundle, verified.objects, len(prerequisites))
    chain = [entry] if fresh else [*chain, entry]
    outcome = {
        "outcome": "fresh" if fresh else "updated",
        "at": iso(),
        "sequence": sequence,
        "objects": verified.objects,
        "fetched_bytes": fetched.bytes,
        "requests": fetched.requests,
        "fetch_seconds": round(fetched.seconds, 3),
        "seconds": round(time.monotonic() - started, 3),
        "bundle": _file(bundle),
    }
    changes = {"sequence": sequence, "chain": chain, "refs_digest": bundles.digest(fetched.refs), "last_sync": outcome}
    if git_state.advance(state, lease, changes):
        _write_latest(base, state.import_id, sequence, chain)
    else:
        outcome["outcome"] = "superseded"  # a new import (or a late lease) replaced the pointer meanwhile
    return outcome


def _due_for_a_fresh_bundle(chain: list[dict[str, Any]]) -> bool:
    """No bundle yet, or updates that outnumber MAX_UPDATES or outweigh the bundle they build on."""
    if not chain:
        return True
    updates = chain[1:]
    return len(updates) >= MAX_UPDATES or sum(int(u["bytes"]) for u in updates) > int(chain[0]["bytes"])


def _previous_commits(base: str, chain: list[dict[str, Any]]) -> dict[str, str]:
    """The latest bundle's refs, as the commits they reach (annotated tags peeled): the next update's haves
    and prerequisites (git wants commits there)."""
    body = json.loads(_get(base + chain[-1]["refs"]))
    peeled = body.get("peeled") or {}
    return {name: peeled.get(name, sha) for name, sha in (body.get("refs") or {}).items()}


def _download_index(base: str, entry: dict[str, Any], into: Path) -> PackIndex:
    into.write_bytes(_get(base + entry["index"]))
    return bundles.open_index(into)


def _empty_pack(path: Path) -> Path:
    """A pack of no objects: an update that only moves or deletes refs onto commits already bundled."""
    body = b"PACK" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
    path.write_bytes(body + hashlib.sha1(body, usedforsecurity=False).digest())
    return path


# ------------------------------------------------------------------------------------------------ S3


@dataclass(frozen=True)
class Published:
    bundle: output.Written
    index: output.Written
    verified: bundles.Verified
    check_seconds: float  # the check's own time (beside the upload)
    publish_seconds: float  # from the pack on disk to the bundle at its key, the check included


def _check_and_publish(
    base: str,
    key: str,
    index_key: str,
    pack: Path,
    refs: Refs,
    *,
    prerequisites: list[str],
    known: Callable[[str], bool] | None = None,
) -> Published:
    """Check the pack as a bundle (`bundles.verify`) on a thread of its own while the bundle goes up to `key` as a
    multipart upload, then - the check passed, its index written - complete the upload: only then is the bundle at
    its key, so a bundle there is always whole and verified. Any failure aborts the upload (nothing appears)."""
    s3, bucket, started = client("s3"), settings().snapshots_bucket, time.monotonic()
    head = bundles.header(refs, prerequisites)
    with ThreadPoolExecutor(1, thread_name_prefix="bundle-check") as pool:
        checking = pool.submit(_timed, bundles.verify, pack, refs, known=known)
        with pack.open("rb") as body, bundles.Joined(head, body) as joined:
            whole = _sha256(joined)  # a pass over the page cache: the metadata must name it before the first part
            meta = {META_REFS: bundles.digest(refs), META_OBJECTS: str(bundles.pack_objects(pack)), META_SHA256: whole}
            upload = s3.create_multipart_upload(
                Bucket=bucket, Key=base + key, ContentType=BUNDLE_TYPE, Metadata=meta, ChecksumAlgorithm="SHA256"
            )["UploadId"]
            try:
                sent = _upload_parts(bucket, base + key, upload, joined, stop=checking)
                verified, check_seconds = checking.result()  # Incomplete: raised here, the upload aborted
                index = output.write_bytes(base, index_key, verified.index.read_bytes(), "application/octet-stream", 0)
                _complete(bucket, base + key, upload, sent)
            except BaseException:
                s3.abort_multipart_upload(Bucket=bucket, Key=base + key, UploadId=upload)
                raise
    _check_stored(bucket, base + key, sent)
    bundle = output.Written(key, verified.objects, sent.size, whole)
    return Published(bundle, index, verified, check_seconds, time.monotonic() - started)


def _timed(check: Callable[..., bundles.Verified], *args: Any, **kwargs: Any) -> tuple[bundles.Verified, float]:
    started = time.monotonic()
    return check(*args, **kwargs), time.monotonic() - started


def _sha256(joined: bundles.Joined) -> str:
    whole = hashlib.sha256()
    while chunk := joined.read(4 * MB):
        whole.update(chunk)
    joined.seek(0)
    return whole.hexdigest()


@dataclass(frozen=True)
class _Sent:
    size: int
    stored_checksum: str  # what S3 must answer for the object: the SHA-256 of its parts' SHA-256s (base64)
    parts: list[dict[str, Any]]  # PartNumber, ETag, ChecksumSHA256: what CompleteMultipartUpload names


def _upload_parts(bucket: str, key: str, upload: str, joined: bundles.Joined, *, stop: Future[Any]) -> _Sent:
    """The bundle in PART-sized parts, each sent with its SHA-256, which S3 checks before it stores the part (a
    part that arrives different is refused). Read and hashed once, here, in the step's own thread (every AWS call
    is metered per thread of work), one part in memory at a time; `stop` (the check) failing ends it early."""
    s3 = client("s3")
    part_digests, size = b"", 0
    parts: list[dict[str, Any]] = []
    reader = io.BufferedReader(joined, MB)  # whole parts: S3 refuses a part under 5 MB but the last
    while part := reader.read(PART):  # a bundle is never empty: its header comes first
        if stop.done() and stop.exception() is not None:
            break  # the check failed: the caller raises it and aborts the upload
        digest = hashlib.sha256(part).digest()
        part_digests += digest
        size += len(part)
        checksum = base64.b64encode(digest).decode()
        number = len(parts) + 1
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=part, ChecksumSHA256=checksum
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum})
    composite = base64.b64encode(hashlib.sha256(part_digests).digest()).decode()
    return _Sent(size, composite, parts)


def _complete(bucket: str, key: str, upload: str, sent: _Sent) -> None:
    """S3 assembles the parts named - each by its ETag and SHA-256, so a part that is not the one sent (another
    upload of the same number meanwhile) is refused - and only now is the bundle at its key."""
    try:
        client("s3").complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": sent.parts}
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("InvalidPart", "BadDigest", "InvalidPartOrder"):
            raise bundles.Incomplete(f"the bundle S3 stored differs from the one written ({_code(exc)})") from None
        raise


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def _check_stored(bucket: str, key: str, sent: _Sent) -> None:
    """What S3 stored is the bundle written, without reading it back: S3's own checksum of the object (built from
    the parts it stored) and its size equal ours. Should S3 ever disagree, the object is removed before the step
    fails (and is tried again): a bundle at its key is one that passed."""
    s3 = client("s3")
    stored = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    # S3 answers "<checksum>-<parts>" for an object uploaded in parts (moto leaves the "-<parts>" off).
    checksum, _, parts = str(stored.get("ChecksumSHA256") or "").partition("-")
    same_bytes = checksum == sent.stored_checksum and parts in ("", str(len(sent.parts)))
    if not same_bytes or stored.get("ContentLength") != sent.size:
        version = stored.get("VersionId")
        s3.delete_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
        raise bundles.Incomplete(
            f"the bundle S3 stored differs from the one written ({stored.get('ContentLength')} of {sent.size} bytes)"
        )


def _head(key: str) -> dict[str, Any] | None:
    try:
        return dict(client("s3").head_object(Bucket=settings().snapshots_bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _get(key: str) -> bytes:
    return bytes(client("s3").get_object(Bucket=settings().snapshots_bucket, Key=key)["Body"].read())


def _write_latest(base: str, import_id: str, sequence: int, chain: list[dict[str, Any]]) -> None:
    body = {
        "import_id": import_id,
        "sequence": sequence,
        "updated_at": iso(),
        "bundles": chain,  # apply in order: clone the first, then fetch each later one
        "refs": chain[-1]["refs"] if chain else REFS,
    }
    output.write_json(base, LATEST, body)


def deadline_for(remaining_ms: Callable[[], int], reserve_ms: int) -> float:
    """When a fetch must stop: half of what is left after `reserve_ms`, leaving the other half for checking
    and publishing what arrived (each a pass over bytes the fetch took longer to bring)."""
    return time.monotonic() + max(0.0, (remaining_ms() - reserve_ms) / 1000 / 2)
