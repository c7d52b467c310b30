"""The git data of an import, on moto under the worker's and the push consumer's IAM policies, fetched from the
emulator over real HTTP: a verified bundle of every branch and tag, retry-safe around a crash on either side of
publishing it, `too_large` as an outcome, and updates that carry only what a push added, applied in order."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import requests
from dulwich import porcelain

from bitbridge import metering
from bitbridge.aws import client, reset_caches
from bitbridge.bitbucket.api import for_flavor
from bitbridge.bitbucket.http import RateLimited
from bitbridge.calls import Caller
from bitbridge.config import settings
from bitbridge.imports import bundles, gitdata
from bitbridge.store import git_state
from bitbridge.store.providers import ProviderRecord
from infra.emulator import Emulator
from infra.local.iam import acting_as

REPOS = {"cloud": ("acme", "api-service"), "datacenter": ("PLAT", "tools")}
GIT = shutil.which("git")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator(cloud_port=0, dc_port=0, seed=True).start()
    emulator.backend.config.rate_limits_enabled = False  # a module's worth of fetches by one person
    yield emulator
    emulator.stop()


def _caller(emu: Emulator, flavor: str) -> Caller:
    backend = emu.backend
    scopes = ["repository"] if flavor == "cloud" else ["REPO_ADMIN"]
    client_id = f"git-{flavor}"
    if backend.get_client(flavor, client_id) is None:
        backend.register_client(flavor, client_id, "s", "http://127.0.0.1/cb", scopes)
    token = backend._new_token(flavor, client_id, "alice", scopes, None).access_token
    web = emu.cloud_url if flavor == "cloud" else emu.dc_url
    api = web + ("/2.0" if flavor == "cloud" else "/rest/api/1.0")
    return Caller.with_token(ProviderRecord("p-" + flavor, flavor=flavor, label="x", web_url=web, api_url=api), token)


def _target(flavor: str) -> gitdata.Target:
    owner, slug = REPOS[flavor]
    return gitdata.Target("p-" + flavor, f"repo-{flavor}", f"{owner}/{slug}", owner, slug)


def _listed(emu: Emulator, flavor: str) -> bundles.Refs:
    """The branches and tags as the import's pages would list them now (Bitbucket's REST listing)."""
    caller = _caller(emu, flavor)
    return bundles.heads_of(for_flavor(flavor).ref_heads(caller.fetch, caller.api, _target(flavor).full_name))


def _snapshot(
    emu: Emulator, flavor: str, base: str, listed: bundles.Refs | None = None
) -> tuple[dict[str, Any], list[Any]]:
    caller = _caller(emu, flavor)
    heads = _listed(emu, flavor) if listed is None else listed
    with acting_as("ImportWorkerFunction"):
        return gitdata.snapshot(
            caller,
            for_flavor(flavor),
            str(caller.provider.web_url),
            _target(flavor),
            base,
            import_id="imp-" + flavor,
            owner_id="user-1",
            known_size=None,
            deadline=time.monotonic() + 120,
            listed=gitdata.Listing(bundles.fold_listed(None, heads), lambda: heads),
        )


def _update(emu: Emulator, flavor: str) -> dict[str, Any]:
    caller = _caller(emu, flavor)
    state = git_state.get("p-" + flavor, f"repo-{flavor}")
    assert state is not None
    with acting_as("GitSyncFunction"):
        assert git_state.take_lease(state, "run", int(time.time()), int(time.time()) + 60)
        return gitdata.update(
            state,
            caller,
            for_flavor(flavor),
            str(caller.provider.web_url),
            _target(flavor),
            lease="run",
            deadline=time.monotonic() + 120,
        )


def _object(key: str) -> bytes:
    return client("s3").get_object(Bucket=settings().snapshots_bucket, Key=key)["Body"].read()


def _versions(key: str) -> int:
    listed = client("s3").list_object_versions(Bucket=settings().snapshots_bucket, Prefix=key)
    return len([v for v in listed.get("Versions", []) if v["Key"] == key])


def _emulator_heads(emu: Emulator, flavor: str) -> dict[str, str]:
    repo = emu.backend.get_repo(flavor, *REPOS[flavor])
    return {f"refs/heads/{n}": r.target for n, r in repo.branches.items()} | {
        f"refs/tags/{n}": r.target for n, r in repo.tags.items()
    }


def _upload_packs(emu: Emulator, flavor: str) -> int:
    stats = requests.get(f"{emu.cloud_url}/_emulator/requests", timeout=5).json()["flavors"].get(flavor, {})
    return sum(n for name, n in stats.get("endpoints", {}).items() if name.startswith("POST") and ".git/" in name)


def _composite(bundle: bytes, part: int = gitdata.PART) -> str:
    """S3's checksum of an object uploaded in `part`-sized parts: the SHA-256 of its parts' SHA-256s (base64)."""
    parts = [bundle[at : at + part] for at in range(0, len(bundle), part)]
    return base64.b64encode(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()).decode()


def _clone(bundle: bytes, folder: Path) -> Any:
    path = folder / "repository.bundle"
    path.write_bytes(bundle)
    return porcelain.clone(str(path), str(folder / "clone"), checkout=True)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_snapshot_is_a_verified_bundle_of_every_branch_and_tag(aws, emu, tmp_path, flavor):
    repo = emu.backend.get_repo(flavor, *REPOS[flavor])
    emu.backend.push(repo, repo.default_branch, "alice", files={"docs/bundled.txt": b"in the bundle\n"}, message="b")
    base = f"imports/p-{flavor}/snap/"
    outcome, written = _snapshot(emu, flavor, base)
    assert outcome["status"] == "completed" and outcome["requests"] == 2  # info/refs, upload-pack
    phases = outcome["fetch_seconds"] + outcome["publish_seconds"]
    assert 0 < phases <= outcome["seconds"]  # the step's time, accounted for by its parts
    assert 0 < outcome["check_seconds"] <= outcome["publish_seconds"]  # the check ran beside the upload
    bundle = _object(base + gitdata.BUNDLE)
    assert outcome["bundle"]["sha256"] == hashlib.sha256(bundle).hexdigest()
    stored = client("s3").head_object(
        Bucket=settings().snapshots_bucket, Key=base + gitdata.BUNDLE, ChecksumMode="ENABLED"
    )
    assert stored["ChecksumSHA256"].partition("-")[0] == _composite(bundle)  # S3's own, of the bytes it stored
    assert stored["Metadata"][gitdata.META_SHA256] == outcome["bundle"]["sha256"]
    assert outcome["bundle"]["bytes"] == len(bundle) and {w.key for w in written} == {
        gitdata.BUNDLE,
        gitdata.INDEX,
        gitdata.REFS,
    }
    # The bundle's refs are every branch and tag Bitbucket has, and HEAD; refs.json says the same.
    refs, prerequisites = bundles.parse_header(iter(bundle.splitlines(keepends=True)).__next__)
    assert prerequisites == [] and {k: v for k, v in refs.items() if k != "HEAD"} == _emulator_heads(emu, flavor)
    assert refs["HEAD"] == repo.branches[repo.default_branch].target
    assert json.loads(_object(base + gitdata.REFS))["refs"] == refs
    # A clone from it checks out the default branch, file for file.
    clone = _clone(bundle, tmp_path)
    assert (tmp_path / "clone" / "docs" / "bundled.txt").read_bytes() == b"in the bundle\n"
    assert clone.refs[b"HEAD"].decode() == refs["HEAD"]
    if GIT:
        assert (
            subprocess.run(
                [GIT, "bundle", "verify", str(tmp_path / "repository.bundle")],
                cwd=tmp_path / "clone",
                capture_output=True,
            ).returncode
            == 0
        )
    # Nothing half-published is left, and the pointer names this bundle.
    assert "Uploads" not in client("s3").list_multipart_uploads(Bucket=settings().snapshots_bucket, Prefix=base)
    state = git_state.get("p-" + flavor, f"repo-{flavor}")
    assert state is not None and [e["key"] for e in state.chain] == [gitdata.BUNDLE]
    assert state.refs_digest == bundles.digest(refs)
    latest = json.loads(_object(base + gitdata.LATEST))
    assert latest["bundles"][0]["sha256"] == outcome["bundle"]["sha256"]


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_refs_pushed_between_the_listing_and_the_fetch_are_named_and_the_bundle_is_bitbuckets_now(aws, emu, flavor):
    repo = emu.backend.get_repo(flavor, *REPOS[flavor])
    listed = _listed(emu, flavor)  # the import's pages
    head = emu.backend.push(repo, repo.default_branch, "alice", files={"late.txt": b"late\n"}, message="l")[-1].hash
    outcome, _ = _snapshot(emu, flavor, f"imports/p-{flavor}/moved/", listed)
    moved = f"refs/heads/{repo.default_branch}"
    assert outcome["status"] == "completed" and outcome["moved_since_listing"] == [moved], outcome
    refs = json.loads(_object(f"imports/p-{flavor}/moved/" + gitdata.REFS))["refs"]
    assert refs[moved] == head  # what Bitbucket holds now; its push event brings the pages along
    # Listed as Bitbucket lists it: nothing to name.
    again, _ = _snapshot(emu, flavor, f"imports/p-{flavor}/as-listed/")
    assert "moved_since_listing" not in again


def test_refs_fetched_are_compared_with_the_listing_by_name_and_commit():
    refs = {"HEAD": "a" * 40, "refs/heads/main": "a" * 40, "refs/tags/v1": "t" * 40, "refs/tags/v0": "b" * 40}
    peeled = {"refs/tags/v1": "c" * 40}  # an annotated tag: the REST listing names the commit it tags
    listed = bundles.heads_of({"b:main": ("a" * 40, "a" * 40), "t:v1": ("t" * 40, "C" * 40), "t:v0": ("b" * 40,) * 2})
    assert bundles.unlike_listed(refs, peeled, listed) == []
    assert bundles.unlike_listed(refs, {}, listed) == ["refs/tags/v1"]  # compared as the tag object: unlike
    assert bundles.unlike_listed(refs, peeled, {**listed, "refs/heads/gone": "d" * 40}) == ["refs/heads/gone"]
    fewer = {k: v for k, v in listed.items() if k != "refs/tags/v0"}
    assert bundles.unlike_listed(refs, peeled, fewer) == ["refs/tags/v0"]
    # The import folds its pages into a digest as it writes them, in any order: equal when nothing moved.
    pages = [{"refs/tags/v0": "b" * 40}, {"refs/heads/main": "A" * 40, "refs/tags/v1": "c" * 40}]
    folded = bundles.fold_listed(bundles.fold_listed(None, pages[1]), pages[0])
    assert folded == bundles.fold_listed(None, listed) == bundles.fetched_digest(refs, peeled)
    assert bundles.fetched_digest(refs, {}) != folded
    assert bundles.fold_listed(None, pages[0]) != folded


def test_a_redo_after_publishing_adopts_the_bundle_without_fetching_it_again(aws, emu):
    base = "imports/p-cloud/redo/"
    first, _ = _snapshot(emu, "cloud", base)
    packs = _upload_packs(emu, "cloud")
    # The worker died after the bundle reached its key, before the job said so: the step runs again.
    again, written = _snapshot(emu, "cloud", base)
    assert _upload_packs(emu, "cloud") == packs  # the refs were compared; nothing was downloaded
    assert again["requests"] == 1 and again["bundle"] == first["bundle"]
    assert _versions(base + gitdata.BUNDLE) == 1  # one bundle, never a second version
    assert {w.key for w in written} == {gitdata.BUNDLE, gitdata.INDEX, gitdata.REFS}


def test_a_redo_after_dying_mid_upload_publishes_one_whole_bundle(aws, emu, tmp_path):
    base, bucket = "imports/p-datacenter/half/", settings().snapshots_bucket
    # An attempt died after its first part: its upload is still open at the bundle's key, and nobody sees it.
    s3 = client("s3")
    dead = s3.create_multipart_upload(Bucket=bucket, Key=base + gitdata.BUNDLE, ChecksumAlgorithm="SHA256")
    s3.upload_part(Bucket=bucket, Key=base + gitdata.BUNDLE, UploadId=dead["UploadId"], PartNumber=1, Body=b"# v2 git")
    assert _versions(base + gitdata.BUNDLE) == 0
    outcome, _ = _snapshot(emu, "datacenter", base)
    assert outcome["status"] == "completed" and _versions(base + gitdata.BUNDLE) == 1
    _clone(_object(base + gitdata.BUNDLE), tmp_path)  # whole and verified: the redo's own parts, not the dead one's


def test_a_bundle_of_several_parts_is_checked_as_s3_stored_it_without_reading_it_back(aws, monkeypatch):
    monkeypatch.setattr(gitdata, "PART", 5 * 1024 * 1024)  # S3's smallest part but the last: 3 parts
    head, body = b"# v2 git bundle\n" + b"0" * 40 + b" refs/heads/main\n\n", os.urandom(11 * 1024 * 1024)
    key, bucket = "imports/p-cloud/parts/git/repository.bundle", settings().snapshots_bucket
    with acting_as("ImportWorkerFunction"):
        s3 = client("s3")
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
        with bundles.Joined(head, io.BytesIO(body)) as joined:
            sent = gitdata._upload_parts(bucket, key, upload, joined, stop=Future())
        assert len(sent.parts) == 3 and sent.size == len(head) + len(body)
        gitdata._complete(bucket, key, upload, sent)
        with metering.metered() as meter:
            gitdata._check_stored(bucket, key, sent)
    assert meter.aws == {"s3:HeadObject": 1}  # S3's checksum and size: nothing read back
    assert _object(key) == head + body
    assert sent.stored_checksum == _composite(head + body, 5 * 1024 * 1024)


def test_a_part_that_is_not_the_one_sent_is_refused_and_nothing_published(aws, emu, monkeypatch):
    base = "imports/p-cloud/swapped/"
    upload_parts = gitdata._upload_parts

    def then_swapped(bucket: str, key: str, upload: str, joined: bundles.Joined, **kwargs: Any) -> Any:
        sent = upload_parts(bucket, key, upload, joined, **kwargs)
        # Another writer's part 1 lands in the upload after ours: the same size, its last byte different.
        joined.seek(0)
        ours = joined.read(gitdata.PART)
        theirs = ours[:-1] + bytes([ours[-1] ^ 0xFF])
        client("s3").upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=theirs)
        return sent

    monkeypatch.setattr(gitdata, "_upload_parts", then_swapped)
    with pytest.raises(bundles.Incomplete, match="differs from the one written"):
        _snapshot(emu, "cloud", base)
    assert _versions(base + gitdata.BUNDLE) == 0
    uploads = client("s3").list_multipart_uploads(Bucket=settings().snapshots_bucket, Prefix=base)
    assert "Uploads" not in uploads  # aborted: no parts left behind


def test_an_object_s3_holds_differently_than_it_was_sent_is_removed_and_refused(aws, emu):
    base, bucket = "imports/p-cloud/replaced/", settings().snapshots_bucket
    _snapshot(emu, "cloud", base)
    ours = _object(base + gitdata.BUNDLE)
    sent = gitdata._Sent(len(ours), _composite(ours), [{"PartNumber": 1}])
    # Bytes other than those sent at the key (S3 going wrong): the same size, one byte different.
    theirs = ours[:-1] + bytes([ours[-1] ^ 0xFF])
    s3 = client("s3")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=base + gitdata.BUNDLE, ChecksumAlgorithm="SHA256")
    part = s3.upload_part(
        Bucket=bucket, Key=base + gitdata.BUNDLE, UploadId=upload["UploadId"], PartNumber=1, Body=theirs
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=base + gitdata.BUNDLE,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    with acting_as("ImportWorkerFunction"), pytest.raises(bundles.Incomplete, match="differs from the one written"):
        gitdata._check_stored(bucket, base + gitdata.BUNDLE, sent)
    assert _object(base + gitdata.BUNDLE) == ours  # the stranger removed; the bundle that passed is there again


def test_a_pack_that_fails_its_check_aborts_the_upload_and_publishes_nothing(aws, emu, monkeypatch):
    base = "imports/p-cloud/damaged/"
    verify = bundles.verify

    def damaged(pack: Path, refs: bundles.Refs, **kwargs: Any) -> bundles.Verified:
        with pack.open("r+b") as fh:  # one byte of the last object's data
            fh.seek(-30, os.SEEK_END)
            byte = fh.read(1)
            fh.seek(-30, os.SEEK_END)
            fh.write(bytes([byte[0] ^ 0xFF]))
        return verify(pack, refs, **kwargs)

    monkeypatch.setattr(bundles, "verify", damaged)
    with pytest.raises(bundles.Incomplete):
        _snapshot(emu, "cloud", base)
    assert _versions(base + gitdata.BUNDLE) == 0
    uploads = client("s3").list_multipart_uploads(Bucket=settings().snapshots_bucket, Prefix=base)
    assert "Uploads" not in uploads


@pytest.fixture
def one_megabyte_limit(aws) -> Iterator[None]:
    os.environ["BITBRIDGE_GIT_BUNDLE_LIMIT_MB"] = "1"
    reset_caches()
    yield
    del os.environ["BITBRIDGE_GIT_BUNDLE_LIMIT_MB"]
    reset_caches()


def test_too_large_is_an_outcome_with_what_to_do(one_megabyte_limit, emu):
    repo = emu.backend.get_repo("datacenter", *REPOS["datacenter"])
    emu.backend.push(repo, "big", "alice", files={"big.bin": os.urandom(1536 * 1024)}, message="big")
    try:
        outcome, written = _snapshot(emu, "datacenter", "imports/p-datacenter/big/")
    finally:
        emu.backend.delete_ref(repo, "branch", "big", "alice")
    assert outcome["status"] == "too_large" and written == []
    assert outcome["limit"] == 1024 * 1024 and outcome["size"] > outcome["limit"]
    assert "GitBundleLimitMb" in outcome["what_to_do"] and "git clone --mirror" in outcome["what_to_do"]
    # Where Bitbucket tells the size first (Cloud), nothing is fetched at all.
    packs = _upload_packs(emu, "cloud")
    caller = _caller(emu, "cloud")
    with acting_as("ImportWorkerFunction"):
        known, _ = gitdata.snapshot(
            caller,
            for_flavor("cloud"),
            str(caller.provider.web_url),
            _target("cloud"),
            "imports/p-cloud/big/",
            import_id="x",
            owner_id="u",
            known_size=2 * 1024 * 1024,
            deadline=time.monotonic() + 60,
            listed=gitdata.Listing(None, dict),
        )
    assert known["status"] == "too_large" and known["size"] == 2 * 1024 * 1024
    assert _upload_packs(emu, "cloud") == packs


def test_a_fetch_past_its_deadline_stops_and_publishes_nothing(aws, emu):
    base = "imports/p-cloud/late/"
    caller = _caller(emu, "cloud")
    with acting_as("ImportWorkerFunction"), pytest.raises(gitdata.OutOfTime):
        gitdata.snapshot(
            caller,
            for_flavor("cloud"),
            str(caller.provider.web_url),
            _target("cloud"),
            base,
            import_id="late",
            owner_id="u",
            known_size=None,
            deadline=time.monotonic(),  # the pack arrives after it: the worker tries again, then says too_large
            listed=gitdata.Listing(None, dict),
        )
    listed = client("s3").list_objects_v2(Bucket=settings().snapshots_bucket, Prefix=base)
    assert "Contents" not in listed  # no bundle, no refs, nothing half-written


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_updates_carry_only_what_a_push_added_and_apply_in_order(aws, emu, tmp_path, flavor):
    base = f"imports/p-{flavor}/updates/"
    _snapshot(emu, flavor, base)
    repo = emu.backend.get_repo(flavor, *REPOS[flavor])
    head = emu.backend.push(repo, repo.default_branch, "alice", files={"new.txt": b"new\n"}, message="n")[-1].hash
    first = _update(emu, flavor)
    # One commit, its root tree and one blob: nothing the bundle before it holds came again.
    assert first["outcome"] == "updated" and first["objects"] == 3 and first["sequence"] == 1
    # A branch deleted: refs move, no object is needed (an update with an empty pack).
    gone = sorted(n for n in repo.branches if n != repo.default_branch)[0]
    emu.backend.delete_ref(repo, "branch", gone, "alice")
    second = _update(emu, flavor)
    assert second["outcome"] == "updated" and second["objects"] == 0
    # Nothing new: one look at the refs, no bundle.
    packs = _upload_packs(emu, flavor)
    same = _update(emu, flavor)
    assert same == same | {"outcome": "unchanged", "requests": 1} and _upload_packs(emu, flavor) == packs
    state = git_state.get("p-" + flavor, f"repo-{flavor}")
    assert state is not None and [e["key"] for e in state.chain] == [
        gitdata.BUNDLE,
        "git/updates/00001.bundle",
        "git/updates/00002.bundle",
    ]
    assert state.lease_owner is None
    # Applied in order, the bundles give Bitbucket's branches and tags now.
    clone = _clone(_object(base + gitdata.BUNDLE), tmp_path)
    for entry in state.chain[1:]:
        update = tmp_path / Path(entry["key"]).name
        update.write_bytes(_object(base + entry["key"]))
        fetched = porcelain.fetch(clone, str(update), force=True)
        refs = {
            k.decode(): v.decode() for k, v in fetched.refs.items() if k.startswith((b"refs/heads/", b"refs/tags/"))
        }
    assert refs == _emulator_heads(emu, flavor) and refs[f"refs/heads/{repo.default_branch}"] == head


def test_a_long_chain_is_replaced_by_a_fresh_bundle(aws, emu, monkeypatch):
    monkeypatch.setattr(gitdata, "MAX_UPDATES", 2)
    base = "imports/p-cloud/chain/"
    _snapshot(emu, "cloud", base)
    repo = emu.backend.get_repo("cloud", *REPOS["cloud"])
    outcomes = []
    for n in range(3):
        emu.backend.push(repo, repo.default_branch, "alice", files={f"c{n}.txt": b"%d\n" % n}, message=f"c{n}")
        outcomes.append(_update(emu, "cloud"))
    assert [o["outcome"] for o in outcomes] == ["updated", "updated", "fresh"]
    state = git_state.get("p-cloud", "repo-cloud")
    assert state is not None and len(state.chain) == 1 and state.chain[0]["prerequisites"] == 0
    assert state.chain[0]["key"] == "git/updates/00003.bundle" and state.sequence == 3
    assert bundles.parse_header(iter(_object(base + state.chain[0]["key"]).splitlines(True)).__next__)[1] == []


def test_git_requests_spend_clouds_git_allowance_and_its_429_reaches_the_job(aws, emu):
    # Cloud counts git over HTTPS in its own class (60,000 an hour); spent, git answers 429 and the step raises
    # RateLimited, which the worker waits out like any 429 (the job's waiting_rate_limit).
    control = f"{emu.cloud_url}/_emulator"
    requests.delete(f"{control}/rate-limits", timeout=5).raise_for_status()
    config = {"rate_limits_enabled": True, "cloud_rate_limits": {"git": 1}}
    requests.post(f"{control}/config", json=config, timeout=5).raise_for_status()
    try:
        with pytest.raises(RateLimited):
            _snapshot(emu, "cloud", "imports/p-cloud/limited/")  # info/refs is the one request allowed
        used = requests.get(f"{control}/rate-limits", params={"flavor": "cloud", "class": "git"}, timeout=5).json()
    finally:
        emu.backend.config.rate_limits_enabled = False
        emu.backend.config.cloud_rate_limits["git"] = 60000
    (row,) = used["limits"]
    assert (row["user"], row["admitted"], row["rejected"]) == ("alice", 1, 1)
    listed = client("s3").list_objects_v2(Bucket=settings().snapshots_bucket, Prefix="imports/p-cloud/limited/")
    assert "Contents" not in listed


def test_the_token_travels_only_as_the_flavors_git_header(aws, emu):
    # Cloud takes an OAuth token for git only as the password of x-token-auth; Data Center as Bearer.
    assert for_flavor("cloud").git_authorization("t0k") == "Basic " + base64.b64encode(b"x-token-auth:t0k").decode()
    assert for_flavor("datacenter").git_authorization("t0k") == "Bearer t0k"
