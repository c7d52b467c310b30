"""Git data benchmark on the local stack + emulator (prints figures, never fails).

1. The import's git step - fetch over smart HTTP through `Caller.send`, then the bundle's multipart upload with its
   check beside it, completed once the check passed, and S3's checksum compared - for the seeded repositories of
   both flavors and a synthetic repository of SIZE_MB (random content, pushed to the emulator in 10 MB commits),
   against `git clone --mirror` of the same repository from the same emulator in the same run (which also fetches,
   indexes and checks connectivity). Time and bytes fetched, target <= 1.5x.
2. Keeping it current: after a one-file push, the update the push consumer writes (bytes fetched, seconds)
   against a fresh bundle of the whole repository (the import's own step): why pushes add updates.

    .venv/bin/python tests/bench/git_data.py [--size-mb 200] [--skip-synthetic]

The synthetic case takes a few minutes (the emulator builds each 200 MB pack in pure Python, for the baseline and
for bitbridge alike). Runs beside `make test`, never in it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

from tests.e2e.conftest import start_stack, stop_stack  # noqa: E402
from tests.e2e.support import UNBUDGETED, api_session, bucket, control, start_imports, wait_for, without_rate_limits  # noqa: E402

SEEDED = {
    "cloud": ["acme/web-app", "acme/api-service", "acme/infra", "globex/mobile", "globex/docs"],
    "datacenter": ["PLAT/core", "PLAT/tools", "WEB/site", "WEB/cms", "~ALICE/dotfiles"],
}
TARGET = 1.5
CHUNK_MB = 10


def token(stack: Any, flavor: str) -> str:
    """An access token of alice's, as git would be given one (an OAuth client of the bench's own)."""
    web = stack.urls["bitbucket_cloud" if flavor == "cloud" else "bitbucket_datacenter"]
    client_id, secret, callback = f"bench-{flavor}", "bench-secret", "http://127.0.0.1/cb"
    scopes = ["repository"] if flavor == "cloud" else ["REPO_ADMIN"]
    control(
        stack,
        flavor,
        "POST",
        "oauth/clients",
        {"flavor": flavor, "client_id": client_id, "client_secret": secret, "redirect_uri": callback, "scopes": scopes},
    )
    body = {"flavor": flavor, "client_id": client_id, "user": "alice", "state": "s", "redirect_uri": callback}
    if flavor != "cloud":
        body["scope"] = "REPO_ADMIN"
    code = control(stack, flavor, "POST", "oauth/authorize", body)["code"]
    if flavor == "cloud":
        answer = requests.post(
            f"{web}/site/oauth2/access_token",
            auth=(client_id, secret),
            data={"grant_type": "authorization_code", "code": code},
            timeout=30,
        )
    else:
        answer = requests.post(
            f"{web}/rest/oauth2/latest/token",
            timeout=30,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uri": callback,
            },
        )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def clone_url(stack: Any, flavor: str, full_name: str) -> str:
    owner, slug = full_name.split("/")
    if flavor == "cloud":
        return f"{stack.urls['bitbucket_cloud']}/{owner}/{slug}.git"
    return f"{stack.urls['bitbucket_datacenter']}/scm/{owner}/{slug}.git"


def mirror(stack: Any, flavor: str, full_name: str, access_token: str) -> tuple[float, int]:
    """`git clone --mirror`: seconds, and the pack's bytes (what came over the wire)."""
    header = (
        "Authorization: Basic " + base64.b64encode(f"x-token-auth:{access_token}".encode()).decode()
        if flavor == "cloud"
        else f"Authorization: Bearer {access_token}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "HOME": tmp, "GIT_CONFIG_NOSYSTEM": "1"}
        started = time.monotonic()
        subprocess.run(
            [
                "git",
                "-c",
                f"http.extraHeader={header}",
                "-c",  # keep what arrives as the pack it came in (git unpacks fewer than 100 objects by default)
                "transfer.unpackLimit=1",
                "clone",
                "-q",
                "--mirror",
                clone_url(stack, flavor, full_name),
                f"{tmp}/m.git",
            ],
            check=True,
            env=env,
        )
        seconds = time.monotonic() - started
        packs = sum(p.stat().st_size for p in Path(f"{tmp}/m.git/objects/pack").glob("*.pack"))
        return seconds, packs


def import_git(stack: Any, session: Any, flavor: str, full_name: str) -> dict[str, Any]:
    job = start_imports(session, stack, flavor, [full_name], reimport=True)[0]
    done = wait_for(session, stack, [job["id"]], timeout=900)[job["id"]]
    assert done["state"] == "completed" and done["git"]["status"] == "completed", done
    return done


def row(name: str, ours: dict[str, Any], base_seconds: float, base_bytes: int) -> tuple[float, float]:
    t, b = ours["seconds"] / base_seconds, ours["fetched_bytes"] / max(1, base_bytes)
    print(
        f"  {name:<24} git step {ours['seconds']:7.2f} s ({ours['fetch_seconds']:6.2f} fetching) "
        f"{ours['fetched_bytes'] / 1e6:9.2f} MB | git clone --mirror {base_seconds:7.2f} s {base_bytes / 1e6:9.2f} MB"
        f" | time {t:4.2f}x bytes {b:4.2f}x"
    )
    return t, b


def seeded(stack: Any) -> None:
    print("1. Seeded repositories (the import's git step vs git clone --mirror, same emulator, same run)")
    for flavor, names in SEEDED.items():
        session, access = api_session(stack, flavor, "alice"), token(stack, flavor)
        ratios = []
        for name in names:
            base = mirror(stack, flavor, name, access)
            ratios.append(row(f"{flavor} {name}", import_git(stack, session, flavor, name)["git"], *base))
        print(
            f"  {flavor}: median time {statistics.median(r[0] for r in ratios):.2f}x, "
            f"median bytes {statistics.median(r[1] for r in ratios):.2f}x (target <= {TARGET})"
        )


def synthetic(stack: Any, size_mb: int) -> None:
    print(f"\n2. A synthetic {size_mb} MB repository (random content in {CHUNK_MB} MB commits)")
    control(
        stack,
        "cloud",
        "POST",
        "seed",
        {
            "cloud": {
                "workspaces": [
                    {
                        "slug": "gitbench",
                        "name": "gitbench",
                        "members": {"alice": "owner"},
                        "repositories": [{"slug": "big", "branches": 1, "tags": 0, "pull_requests": 0}],
                    }
                ]
            }
        },
    )
    started = time.monotonic()
    for n in range(max(1, size_mb // CHUNK_MB)):
        files = {
            f"data/{n:03d}-{i}.bin": {"base64": base64.b64encode(os.urandom(2 * 1024 * 1024)).decode()}
            for i in range(CHUNK_MB // 2)
        }
        control(stack, "cloud", "POST", "cloud/repos/gitbench/big/push", {"files": files, "message": f"chunk {n}"})
    print(f"  built in the emulator in {time.monotonic() - started:.1f} s")
    session, access = api_session(stack, "cloud", "alice"), token(stack, "cloud")
    base = mirror(stack, "cloud", "gitbench/big", access)
    done = import_git(stack, session, "cloud", "gitbench/big")
    t, b = row("cloud gitbench/big", done["git"], *base)
    print(f"  target <= {TARGET}x: {'met' if t <= TARGET and b <= TARGET else 'NOT met'}")
    git = done["git"]
    print(
        f"  the git step: fetch {git['fetch_seconds']:.2f} s, publish {git['publish_seconds']:.2f} s (the upload with "
        f"the check beside it, {git['check_seconds']:.2f} s of its own, then S3's check); git clone --mirror writes to "
        "a local disk, not S3"
    )
    again = mirror(stack, "cloud", "gitbench/big", access)  # the baseline again, after ours: drift on the box
    print(f"  (git clone --mirror again after the import: {again[0]:.2f} s)")
    keeping_current(stack, done)


def keeping_current(stack: Any, done: dict[str, Any]) -> None:
    print("\n3. After a push: an update bundle against a fresh bundle of the whole repository")
    prefix = done["snapshot"]["prefix"]
    control(stack, "cloud", "POST", "cloud/repos/gitbench/big/push", {"files": {"README.md": "pushed\n"}})
    s3, name = stack.aws("s3"), bucket(stack)
    deadline = time.monotonic() + 120
    while True:
        try:
            latest = json.loads(s3.get_object(Bucket=name, Key=prefix + "git/latest.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            latest = {"sequence": 0}
        if latest["sequence"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    item = stack.aws("dynamodb").get_item(
        TableName="bitbridge-local-ImportsTable",
        Key={"pk": {"S": f"GIT#bitbucket-cloud#{done['repository']['id']}"}, "sk": {"S": "GIT"}},
    )["Item"]
    sync = json.loads(item["last_sync"]["S"])
    fresh = done["git"]
    print(
        f"  update: {sync['seconds']:.2f} s, {sync['fetched_bytes'] / 1e3:.1f} KB fetched, "
        f"{sync['objects']} objects, bundle {sync['bundle']['bytes'] / 1e3:.1f} KB"
    )
    print(
        f"  fresh bundle: {fresh['seconds']:.2f} s, {fresh['fetched_bytes'] / 1e6:.1f} MB fetched, "
        f"{fresh['objects']} objects"
    )
    print(
        f"  an update costs {sync['seconds'] / fresh['seconds']:.3f}x the time and "
        f"{sync['fetched_bytes'] / fresh['fetched_bytes']:.5f}x the bytes of a fresh bundle: pushes add updates "
        "(a fresh bundle starts a new chain after 32 of them, or once they outweigh the first)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if shutil.which("git") is None:
        sys.exit("the baseline needs the git command line")
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bench-git-")), timeout=120)
    try:
        without_rate_limits(stack, UNBUDGETED)
        seeded(stack)
        if not args.skip_synthetic:
            synthetic(stack, args.size_mb)
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    main()
