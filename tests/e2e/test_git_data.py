"""Git data and deploy keys, end to end on the local stack and the emulator over real HTTP, both flavors.

Its own stack: GitBundleLimitMb is 1 here (a repository over a megabyte is too large, so the limit is met with a
small push), and both providers have a deploy key (every import here adds it).

- An import's bundle clones to Bitbucket's branch and tag heads and a file at the default branch; a push after the
  import reaches the snapshot as an update of only what is new, within PUSH_SECONDS; a push whose delivery
  Bitbucket lost reaches it once the reconciler finds the push.
- An S3 outage in the middle of the git step: the step is retried, one bundle is published, verified.
- A repository over the limit: `too_large`, the rest of the import done.
- Deploy keys: installed for an admin, `manual_required` (the key, where to paste it) for a person who is not,
  put back by the reconciler after it was deleted in Bitbucket, removed with the subscription.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import requests
from dulwich import porcelain

from tests import ssh_public_keys
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.support import (
    PROVIDERS,
    api_session,
    bucket,
    cli,
    control,
    lines,
    manifest,
    snapshot,
    start_imports,
    wait_for,
)

pytestmark = pytest.mark.e2e

PUSH_SECONDS = 30  # a push reaches the snapshot's git data within this (webhook, bus, queue, one fetch)
LIMIT_TEXT = "  GitBundleLimitMb:\n    Type: Number\n    Default: 1024\n"
WS, PROJECT = "gitws", "GITD"
SEED = {
    "cloud": {
        "workspaces": [
            {
                "slug": WS,
                "name": WS,
                "members": {"alice": "owner", "bob": "member"},
                "repositories": [
                    {"slug": "data", "branches": 4, "tags": 2, "pull_requests": 1},
                    {"slug": "big", "branches": 1, "tags": 0, "pull_requests": 0},
                    {"slug": "outage", "branches": 2, "tags": 1, "pull_requests": 0},
                    {"slug": "missed", "branches": 2, "tags": 0, "pull_requests": 0},
                    {"slug": "plain", "branches": 1, "tags": 0, "pull_requests": 0},
                    {"slug": "bobs", "branches": 1, "tags": 0, "pull_requests": 0, "permissions": {"bob": "write"}},
                    {"slug": "refused", "branches": 1, "tags": 0, "pull_requests": 0},
                ],
            }
        ]
    },
    "datacenter": {
        "projects": [
            {
                "key": PROJECT,
                "name": PROJECT,
                "permissions": {"alice": "admin", "bob": "write"},
                "repositories": [
                    {"slug": "data", "branches": 4, "tags": 2, "pull_requests": 1},
                    {"slug": "big", "branches": 1, "tags": 0, "pull_requests": 0},
                    {"slug": "missed", "branches": 2, "tags": 0, "pull_requests": 0},
                    {"slug": "bobs", "branches": 1, "tags": 0, "pull_requests": 0},
                    {"slug": "refused", "branches": 1, "tags": 0, "pull_requests": 0},
                ],
            }
        ]
    },
}
OWNER = {"cloud": WS, "datacenter": PROJECT}
KEY = ssh_public_keys.ed25519("bitbridge e2e", "bitbridge@e2e")


@pytest.fixture(scope="module")
def git_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("git")
    text = (REPO_ROOT / "template.yaml").read_text()
    assert text.count(LIMIT_TEXT) == 1, "GitBundleLimitMb changed: update this test"
    (folder / "template.yaml").write_text(text.replace(LIMIT_TEXT, LIMIT_TEXT.replace("1024", "1")))
    stack = start_stack(folder, "--template", str(folder / "template.yaml"))
    try:
        control(stack, "cloud", "POST", "seed", SEED)
        (folder / "id.pub").write_text(KEY + "\n")
        for provider in PROVIDERS.values():
            done = cli(stack, "providers", "set-deploy-key", provider, "--key-file", str(folder / "id.pub"))
            assert done.returncode == 0, done.stderr
        yield stack
    finally:
        stop_stack(stack)


def _name(flavor: str, slug: str) -> str:
    return f"{OWNER[flavor]}/{slug}"


def _push(stack, flavor: str, slug: str, files: dict, message: str, branch: str = "main") -> str:
    body = {"branch": branch, "files": files, "message": message, "actor": "alice"}
    return str(control(stack, flavor, "POST", f"{flavor}/repos/{OWNER[flavor]}/{slug}/push", body)["head"])


def _import(stack, flavor: str, slug: str, user: str = "alice", **flags) -> dict:
    session = api_session(stack, flavor, user)
    job = start_imports(session, stack, flavor, [_name(flavor, slug)], **flags)[0]
    return wait_for(session, stack, [job["id"]], timeout=90)[job["id"]]


def _listed_heads(files: dict[str, bytes], flavor: str) -> dict[str, str]:
    """The branches and tags as Bitbucket listed them at import (the snapshot's pages)."""
    if flavor == "cloud":
        heads = {f"refs/heads/{b['name']}": b["target"]["hash"] for b in lines(files, "branches")}
        return heads | {f"refs/tags/{t['name']}": t["target"]["hash"] for t in lines(files, "tags")}
    heads = {b["id"]: b["latestCommit"] for b in lines(files, "branches")}
    return heads | {t["id"]: t["hash"] for t in lines(files, "tags")}


def _s3(stack, key: str) -> bytes:
    return stack.aws("s3").get_object(Bucket=bucket(stack), Key=key)["Body"].read()


def _latest(stack, prefix: str, sequence: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            latest = json.loads(_s3(stack, prefix + "git/latest.json"))
            if latest["sequence"] >= sequence:
                return latest
        except stack.aws("s3").exceptions.NoSuchKey:
            latest = None
        assert time.monotonic() < deadline, f"the git data did not reach sequence {sequence}: {latest}"
        time.sleep(0.5)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_the_bundle_clones_to_bitbuckets_heads_and_a_push_adds_only_what_is_new(git_stack, tmp_path, flavor):
    content = f"bundled {flavor}\n".encode()
    _push(git_stack, flavor, "data", {"docs/hello.txt": content.decode()}, "hello")
    done = _import(git_stack, flavor, "data")
    assert done["state"] == "completed", done
    git = done["git"]
    assert git["status"] == "completed" and git["requests"] == 2  # info/refs and one upload-pack, nothing else
    prefix = done["snapshot"]["prefix"]
    files = snapshot(git_stack, prefix)
    man = manifest(files)
    bundle = files["git/repository.bundle"]
    assert man["git"]["bundle"]["sha256"] == hashlib.sha256(bundle).hexdigest() == git["bundle"]["sha256"]
    assert {f["key"] for f in man["files"]} >= {"git/repository.bundle", "git/refs.json", "git/repository.idx"}
    # Cloned (dulwich), it has exactly the branches and tags Bitbucket listed, and the file at the default branch.
    path = tmp_path / "repository.bundle"
    path.write_bytes(bundle)
    clone = porcelain.clone(str(path), str(tmp_path / "clone"), checkout=True)
    cloned = {k.decode(): v.decode() for k, v in clone.refs.as_dict().items() if k.startswith(b"refs/remotes/")}
    assert {k.replace("refs/remotes/origin/", "refs/heads/"): v for k, v in cloned.items() if "HEAD" not in k} | {
        k.decode(): v.decode() for k, v in clone.refs.as_dict().items() if k.startswith(b"refs/tags/")
    } == _listed_heads(files, flavor)
    assert (tmp_path / "clone" / "docs" / "hello.txt").read_bytes() == content
    assert json.loads(files["git/refs.json"])["refs"]["HEAD"] == clone.refs[b"HEAD"].decode()
    # A push after the import: its webhook's event reaches the push consumer, which fetches only the push.
    head = _push(git_stack, flavor, "data", {"later.txt": "later\n"}, "after the import")
    pushed = time.monotonic()
    latest = _latest(git_stack, prefix, 1, timeout=PUSH_SECONDS)
    assert time.monotonic() - pushed < PUSH_SECONDS
    update = latest["bundles"][1]
    assert update["objects"] == 3 and update["prerequisites"] >= 1  # commit, root tree, blob: nothing more
    (tmp_path / "u.bundle").write_bytes(_s3(git_stack, prefix + update["key"]))
    fetched = porcelain.fetch(clone, str(tmp_path / "u.bundle"), force=True)
    assert fetched.refs[b"refs/heads/main"].decode() == head


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_push_whose_delivery_was_lost_reaches_the_git_data_when_reconciled(git_stack, flavor):
    name = _name(flavor, "missed")
    done = _import(git_stack, flavor, "missed")
    assert done["state"] == "completed" and done["git"]["status"] == "completed", done
    prefix = done["snapshot"]["prefix"]
    baseline = cli(git_stack, "reconcile", "--repo", name, "--json")
    assert baseline.returncode == 0, baseline.stderr
    control(git_stack, flavor, "POST", "delivery-faults", {"action": "drop", "repository": name})
    try:
        head = _push(git_stack, flavor, "missed", {"lost.txt": "delivery lost\n"}, "never delivered")
        deliveries = control(git_stack, flavor, "GET", f"deliveries?wait=1&timeout=60&repository={name}")
    finally:
        control(git_stack, flavor, "DELETE", "delivery-faults")
    states = [d["state"] for d in deliveries["deliveries"]]
    assert states and set(states) == {"dropped"}  # Bitbucket never told bitbridge about the push
    assert json.loads(_s3(git_stack, prefix + "git/latest.json"))["sequence"] == 0
    reconciled = cli(git_stack, "reconcile", "--repo", name, "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    assert json.loads(reconciled.stdout)[0]["status"] == "backfilled", reconciled.stdout
    found = time.monotonic()
    latest = _latest(git_stack, prefix, 1, timeout=PUSH_SECONDS)
    assert time.monotonic() - found < PUSH_SECONDS
    assert json.loads(_s3(git_stack, prefix + latest["refs"]))["refs"]["refs/heads/main"] == head
    assert latest["bundles"][1]["objects"] == 3  # the commit, its tree and the new file: only what the push added


def test_an_import_without_git_data_writes_none(git_stack):
    # Its own repository: an import of `bobs` here would be the job bob's import below is answered with.
    done = _import(git_stack, "cloud", "plain", exclude=["git"])
    assert done["state"] == "completed" and done["git"] is None and done["options"]["git"] is False
    files = snapshot(git_stack, done["snapshot"]["prefix"])
    assert not [k for k in files if k.startswith("git/")] and manifest(files)["git"] is None


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_repository_over_the_limit_is_imported_without_its_git_data(git_stack, flavor):
    _push(git_stack, flavor, "big", {"big.bin": {"base64": base64.b64encode(os.urandom(1536 * 1024)).decode()}}, "big")
    done = _import(git_stack, flavor, "big")
    assert done["state"] == "completed", done
    git = done["git"]
    assert git["status"] == "too_large" and git["limit"] == 1024 * 1024 and git["size"] > git["limit"]
    assert "GitBundleLimitMb" in git["what_to_do"]
    files = snapshot(git_stack, done["snapshot"]["prefix"])
    assert manifest(files)["counts"]["branches"] == 1 and lines(files, "branches")
    assert not [k for k in files if k.startswith("git/")]


def test_an_s3_outage_mid_step_ends_in_one_verified_bundle(git_stack, tmp_path):
    name = _name("cloud", "outage")
    path = f"/{name}.git/git-upload-pack"
    # The pack arrives slowly; while it does, S3 starts failing for a few seconds.
    control(git_stack, "cloud", "POST", "faults", {"latency_ms": 4000, "path_prefix": path})
    session = api_session(git_stack, "cloud", "alice")
    control(git_stack, "cloud", "DELETE", "requests")  # from here, the only git requests are this import's
    job = start_imports(session, git_stack, "cloud", [name])[0]
    deadline = time.monotonic() + 60
    while not _asked_for_pack(git_stack):
        assert time.monotonic() < deadline, "the git step never started"
        time.sleep(0.1)
    faults = f"{git_stack.urls['console']}/faults/aws"
    requests.post(faults, json={"service": "s3", "status": 503, "seconds": 6}, timeout=5).raise_for_status()
    try:
        done = wait_for(session, git_stack, [job["id"]], timeout=120)[job["id"]]
        hits = requests.get(faults, timeout=5).json()["faults"][0]["hits"]
    finally:
        control(git_stack, "cloud", "DELETE", "faults")
        requests.delete(faults, timeout=5)
    assert hits > 0  # the outage was met
    assert done["state"] == "completed" and done["git"]["status"] == "completed", done
    s3, prefix = git_stack.aws("s3"), done["snapshot"]["prefix"]
    versions = s3.list_object_versions(Bucket=bucket(git_stack), Prefix=prefix + "git/")
    bundles = [v["Key"] for v in versions.get("Versions", []) if v["Key"].endswith(".bundle")]
    assert bundles == [prefix + "git/repository.bundle"]  # one bundle, one version, no upload left behind
    assert not versions.get("DeleteMarkers")
    (tmp_path / "b.bundle").write_bytes(_s3(git_stack, prefix + "git/repository.bundle"))
    assert hashlib.sha256((tmp_path / "b.bundle").read_bytes()).hexdigest() == done["git"]["bundle"]["sha256"]
    porcelain.clone(str(tmp_path / "b.bundle"), str(tmp_path / "clone"), checkout=True)


def _asked_for_pack(stack) -> bool:
    endpoints = control(stack, "cloud", "GET", "requests")["flavors"].get("cloud", {}).get("endpoints", {})
    return endpoints.get("POST /{workspace}/{repo_slug}.git/{service}", 0) >= 1


def _keys(stack, flavor: str, slug: str) -> list[dict]:
    return list(control(stack, flavor, "GET", f"{flavor}/repos/{OWNER[flavor]}/{slug}/deploy-keys"))


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_deploy_keys_installed_manual_repaired_and_removed(git_stack, flavor):
    done = _import(git_stack, flavor, "data")
    assert done["deploy_key"]["status"] == "installed", done["deploy_key"]
    keys = _keys(git_stack, flavor, "data")
    assert [k["key"] for k in keys] == [KEY.rsplit(" ", 1)[0]]
    assert keys[0]["permission"] in ("read", "REPO_READ")  # read-only
    # A person without admin rights: the key, and where an admin pastes it.
    bobs = _import(git_stack, flavor, "bobs", user="bob", exclude=["git"])
    manual = bobs["deploy_key"]
    assert manual["status"] == "manual_required" and manual["key"] == KEY.rsplit(" ", 1)[0] + " bitbridge"
    assert "admin" in manual["reason"] and manual["where"] in manual["reason"]
    assert _keys(git_stack, flavor, "bobs") == []
    # Deleted in Bitbucket: the reconciler puts it back.
    control(git_stack, flavor, "DELETE", f"{flavor}/repos/{OWNER[flavor]}/data/deploy-keys")
    reconciled = cli(git_stack, "reconcile", "--repo", _name(flavor, "data"))
    assert reconciled.returncode == 0, reconciled.stderr
    assert [k["key"] for k in _keys(git_stack, flavor, "data")] == [KEY.rsplit(" ", 1)[0]]
    # Removed with the subscription.
    subscription = done["webhook"]["subscription_id"]
    removed = cli(git_stack, "hooks", "remove", subscription)
    assert removed.returncode == 0, removed.stderr
    assert _keys(git_stack, flavor, "data") == []


KEYS_PATH = {
    "cloud": f"/2.0/repositories/{WS}/refused/deploy-keys",
    "datacenter": f"/rest/keys/latest/projects/{PROJECT}/repos/refused/ssh",
}


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_key_bitbucket_refuses_for_good_is_reported_failed_and_the_rest_imported(git_stack, flavor):
    # Bitbucket answers adding the key with a 400 (not a 429 or an outage, which the step retries).
    refusal = {"flavor": flavor, "method": "POST", "path_prefix": KEYS_PATH[flavor], "status": 400}
    control(git_stack, flavor, "POST", "faults", refusal)
    try:
        done = _import(git_stack, flavor, "refused", exclude=["git"])
    finally:
        control(git_stack, flavor, "DELETE", "faults")
    assert done["state"] == "completed", done
    key = done["deploy_key"]
    assert key["status"] == "failed" and key["reason"].startswith("Bitbucket refused the key"), key
    assert "key_id" not in key and done["webhook"]["status"] == "installed"
    assert _keys(git_stack, flavor, "refused") == []
    # Nothing recorded as installed: removing the subscription takes nothing off, and says nothing failed.
    removed = cli(git_stack, "hooks", "remove", done["webhook"]["subscription_id"])
    assert removed.returncode == 0, removed.stderr


def test_the_cli_refuses_a_private_key_and_keeps_the_registered_one(git_stack, tmp_path):
    (tmp_path / "id").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n")
    refused = cli(git_stack, "providers", "set-deploy-key", PROVIDERS["cloud"], "--key-file", str(tmp_path / "id"))
    assert refused.returncode != 0 and "public key" in refused.stderr and "b3Blbg" not in refused.stderr
    shown = json.loads(cli(git_stack, "providers", "show", PROVIDERS["cloud"]).stdout)
    assert shown["deploy_key"]["key"] == KEY and shown["deploy_key"]["label"] == "bitbridge"
    assert shown["deploy_key"]["fingerprint"].startswith("SHA256:")
    assert Path(tmp_path / "id").exists()
