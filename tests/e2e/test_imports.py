"""Repository listing and imports, end to end: local stack + emulator over real HTTP, both flavors."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.support import (
    PROVIDERS,
    api_session,
    cli,
    control,
    emulator_repo,
    entity_files,
    lines,
    list_all_repos,
    manifest,
    requests_made,
    snapshot,
    start_imports,
    wait_for,
)
from tests.e2e.support import (
    job as get_job,
)

pytestmark = pytest.mark.e2e

ENTITY_COUNT = {"branches": "branches", "tags": "tags", "issues": "issues"}


def _assert_snapshot_matches(stack, flavor: str, done: dict, by_name: dict) -> None:
    for body in done.values():
        assert body["state"] == "completed", body
        expected = emulator_repo(stack, flavor, body["repository"]["full_name"])
        files = snapshot(stack, body["snapshot"]["prefix"])
        man = manifest(files)
        counts = man["counts"]
        assert counts["branches"] == expected["branches"], body["repository"]
        assert counts["tags"] == expected["tags"]
        assert counts["pull_requests"] == expected["pull_requests"]["total"]
        assert counts.get("issues", 0) == expected["issues"]
        # The files hold exactly those entities, each once.
        assert len(lines(files, "branches")) == expected["branches"]
        assert len(lines(files, "pull_requests")) == expected["pull_requests"]["total"]
        ids = [pr["id"] for pr in lines(files, "pull_requests")]
        assert len(set(ids)) == len(ids)
        states = {s: sum(1 for pr in lines(files, "pull_requests") if pr["state"] == s) for s in ("OPEN", "MERGED")}
        assert states["OPEN"] == expected["pull_requests"].get("OPEN", 0)
        assert states["MERGED"] == expected["pull_requests"].get("MERGED", 0)
        # The manifest's checksums are the files'.
        for entry in man["files"]:
            assert hashlib.sha256(files[entry["key"]]).hexdigest() == entry["sha256"]
        assert "repository.json" in files and man["api_calls"] >= 1
        # A hook is installed where the user may manage hooks; elsewhere the manifest says what to add by hand.
        hook = man["webhook"]
        if hook["status"] == "installed":
            assert expected["hooks"] == 1
        else:
            assert hook["status"] == "manual_required" and "admin" in hook["reason"]
            assert hook["url"].startswith(f"{stack.api}/hooks/") and hook["events"] and "secret" not in hook
        by_name[body["repository"]["full_name"]] = files


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_every_seeded_repository_imports_exactly(stack, flavor):
    session = api_session(stack, flavor, "alice")
    listed = list_all_repos(session, stack, flavor)
    names = sorted(r["full_name"] for r in listed)
    seeded = {
        r["full_name"]
        for r in control(stack, flavor, "GET", "state")["repositories"]
        if r["flavor"] == ("cloud" if flavor == "cloud" else "datacenter")
    }
    default = {"acme/web-app", "acme/api-service", "acme/infra", "globex/mobile", "globex/docs"}
    if flavor == "datacenter":
        default = {"PLAT/core", "PLAT/tools", "WEB/site", "WEB/cms", "~ALICE/dotfiles", "~BOB/scratch"}
    assert default <= set(names) <= seeded
    assert len(names) == len(set(names))  # no repository listed twice across pages or phases
    jobs = start_imports(session, stack, flavor, sorted(default))
    done = wait_for(session, stack, [j["id"] for j in jobs], timeout=60)
    files: dict = {}
    _assert_snapshot_matches(stack, flavor, done, files)
    if flavor == "cloud":  # 120 branches: two pages at pagelen 100
        assert len([k for k in files["acme/web-app"] if k.startswith("branches/")]) == 2
    owned = "acme/web-app" if flavor == "cloud" else "PLAT/core"  # alice administers these
    hook = manifest(files[owned])["webhook"]
    assert hook["status"] == "installed" and hook["subscription_id"].startswith("sub-")
    # The listing now shows each repository's import.
    again = {r["full_name"]: r for r in list_all_repos(session, stack, flavor)}
    for name in default:
        assert again[name]["import"]["state"] == "completed"


def test_listing_pages_with_stable_cursors_search_and_scopes(stack):
    session = api_session(stack, "cloud", "alice")
    everything = [r["full_name"] for r in list_all_repos(session, stack, "cloud")]
    paged = [r["full_name"] for r in list_all_repos(session, stack, "cloud", limit="2")]
    assert paged == everything
    scopes = session.get(f"{stack.api}/api/repos/scopes", params={"provider": "bitbucket-cloud"}, timeout=30).json()
    assert {"acme", "globex"} <= {s["key"] for s in scopes["scopes"]}
    only_globex = [r["full_name"] for r in list_all_repos(session, stack, "cloud", workspace="globex")]
    assert only_globex and all(n.startswith("globex/") for n in only_globex)
    found = [r["full_name"] for r in list_all_repos(session, stack, "cloud", q="web")]
    assert "acme/web-app" in found and "globex/docs" not in found
    bad = session.get(f"{stack.api}/api/repos", params={"provider": "bitbucket-cloud", "cursor": "!!"}, timeout=10)
    assert bad.status_code == 400
    assert requests.get(f"{stack.api}/api/repos", params={"provider": "bitbucket-cloud"}, timeout=10).status_code == 401


def test_same_import_posted_twice_concurrently_makes_one_job(stack):
    control(stack, "cloud", "POST", "cloud/repos", {"owner": "acme", "slug": "twice", "name": "twice"})
    session = api_session(stack, "cloud", "alice")

    def post(_: int) -> list[dict]:
        return start_imports(session, stack, "cloud", ["acme/twice"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(post, range(6)))
    ids = {a[0]["id"] for a in answers}
    assert len(ids) == 1
    assert sum(1 for a in answers if a[0]["created"]) == 1
    done = wait_for(session, stack, list(ids))
    assert next(iter(done.values()))["state"] == "completed"
    # Posted again later: the completed import comes back; `reimport` makes a new one.
    assert start_imports(session, stack, "cloud", ["acme/twice"])[0]["id"] in ids
    fresh = start_imports(session, stack, "cloud", ["acme/twice"], reimport=True)[0]
    assert fresh["id"] not in ids and fresh["created"]
    wait_for(session, stack, [fresh["id"]])


def test_a_kickoff_that_dies_before_enqueueing_is_healed_by_asking_again(stack):
    """The job is written, then the queue send fails (as when the kickoff times out between the two):
    the request answers 5xx and the job is queued but never sent. Asking again enqueues it, and it runs."""
    control(stack, "cloud", "POST", "seed", _workspace_seed("lostws", "lost", prs=3, count=3))
    names = [f"lostws/lost-{n:04d}" for n in (1, 2, 3)]
    session = api_session(stack, "cloud", "alice")
    faults = f"{stack.urls['console']}/faults/aws"
    assert requests.post(faults, json={"service": "sqs", "status": 503, "seconds": 60}, timeout=5).status_code == 200
    try:
        died = session.post(
            f"{stack.api}/api/imports", json={"provider": PROVIDERS["cloud"], "repositories": names}, timeout=60
        )
    finally:
        requests.delete(faults, timeout=5)
    assert died.status_code >= 500, died.text
    queued = {
        j["repository"]["full_name"]: j for j in session.get(f"{stack.api}/api/imports", timeout=10).json()["imports"]
    }
    assert all(queued[n]["state"] == "queued" for n in names)  # written, never sent
    time.sleep(3)
    assert all(get_job(session, stack, queued[n]["id"])["state"] == "queued" for n in names)

    again = start_imports(session, stack, "cloud", names)
    assert [j["id"] for j in again] == [queued[n]["id"] for n in names]  # the same jobs, not new ones
    assert not any(j["created"] for j in again)
    done = wait_for(session, stack, [j["id"] for j in again])
    assert all(d["state"] == "completed" for d in done.values()), done
    # Asked a third time: completed jobs come back as they are (nothing is sent or run again).
    third = start_imports(session, stack, "cloud", names)
    assert [j["state"] for j in third] == ["completed"] * 3


def test_inaccessible_repository_is_refused_and_nothing_is_started(stack):
    session = api_session(stack, "cloud", "carol")  # carol cannot see globex
    before = session.get(f"{stack.api}/api/imports", timeout=10).json()["imports"]
    response = session.post(
        f"{stack.api}/api/imports",
        json={"provider": PROVIDERS["cloud"], "repositories": ["acme/web-app", "globex/mobile"]},
        timeout=30,
    )
    assert response.status_code in (403, 404), response.text
    error = response.json()["error"]
    assert error["code"] in ("repositories_forbidden", "repositories_not_found")
    assert error["repositories"][0]["repository"] == "globex/mobile"
    assert session.get(f"{stack.api}/api/imports", timeout=10).json()["imports"] == before
    bad = session.post(f"{stack.api}/api/imports", json={"provider": "bitbucket-cloud"}, timeout=10)
    assert bad.status_code == 400
    too_many = session.post(
        f"{stack.api}/api/imports",
        json={"provider": PROVIDERS["cloud"], "repositories": [f"acme/r{i}" for i in range(21)]},
        timeout=10,
    )
    assert too_many.status_code == 400 and too_many.json()["error"]["limit"] == 20
    assert "further requests" in too_many.json()["error"]["message"]
    assert session.get(f"{stack.api}/api/imports", timeout=10).json()["imports"] == before


def test_an_import_counts_its_calls_and_makes_no_more_aws_calls_than_the_design_needs(stack):
    control(stack, "cloud", "POST", "seed", _workspace_seed("econws", "econ", prs=5))
    session = api_session(stack, "cloud", "alice")
    job = start_imports(session, stack, "cloud", ["econws/econ-0001"])[0]
    done = wait_for(session, stack, [job["id"]])[job["id"]]
    assert done["state"] == "completed" and done["webhook"]["status"] == "installed"
    man = manifest(snapshot(stack, done["snapshot"]["prefix"]))
    # Bitbucket: the access check, one page per list, the hook's POST, and the git step's two requests (the
    # refs, then one pack), as the emulator counted them.
    per_repository = control(stack, "cloud", "GET", "requests")["flavors"]["cloud"]["repositories"]
    counted = next(n for name, n in per_repository.items() if "econ-0001" in name)
    assert done["api_calls"] == man["api_calls"] == counted == 5 + 2
    # AWS, by operation: the design's minimum for three one-page lists, a new hook and the git data (the
    # webhook master key is cached per container, so it may have been read already).
    aws = dict(done["aws_calls"])
    assert aws.pop("secretsmanager:GetSecretValue", 0) <= 1
    # The rate-limit budget: at most one lease write per class the import spends (repositories: the three
    # lists; webhooks: the hook; git: the fetch), and one read of a class's budget the container has not seen
    # yet; a lease the container still holds from another import costs nothing. PutItem 2 + 1: the
    # subscription before the hook is created, then with its id; the git pointer.
    budget_writes, budget_reads = aws.pop("dynamodb:PutItem", 0) - 3, aws.pop("dynamodb:GetItem", 0) - 3
    assert 0 <= budget_writes <= 3 and 0 <= budget_reads <= 3, (budget_writes, budget_reads)
    assert aws == {
        # the lease (returns the job), one per page, the git step's checkpoint, project link, completion; and
        # what the import saw as the repository's observed state: one per page of branches, tags, open pull
        # requests, and its end
        "dynamodb:UpdateItem": 1 + 3 + 1 + 2 + 3 + 1,
        # GetItem 3: provider, connection (token), subscription (counted above)
        "kms:Decrypt": 1,  # the token, once (the webhook and git steps reuse it)
        # repository.json, one object per page, people.jsonl, manifest.json; git: refs.json, the index,
        # latest.json
        "s3:PutObject": 3 + 3 + 3,
        # the bundle's upload to its key, in one part (each part sent with its SHA-256): no copy, no read-back
        "s3:CreateMultipartUpload": 1,
        "s3:UploadPart": 1,
        "s3:CompleteMultipartUpload": 1,
        # is a bundle published already (a redo adopts it); S3's checksum and size of what it stored
        "s3:HeadObject": 2,
        "events:PutEvents": 2,  # import.started, import.completed
    }
    assert man["aws_calls"] == done["aws_calls"]


def test_rate_limit_window_makes_the_job_wait_then_complete_without_duplicates(stack):
    control(stack, "cloud", "POST", "seed", _workspace_seed("ratews", "limited", prs=120))
    session = api_session(stack, "cloud", "alice")
    # Every repository-data request is refused for 3 s once the import reaches pull requests.
    control(
        stack,
        "cloud",
        "POST",
        "faults",
        {"status": 429, "seconds": 3, "path_prefix": "/2.0/repositories/ratews/limited-0001/pullrequests"},
    )
    try:
        job = start_imports(session, stack, "cloud", ["ratews/limited-0001"])[0]
        seen: set[str] = set()
        done = wait_for(session, stack, [job["id"]], timeout=60, seen=seen)[job["id"]]
    finally:
        control(stack, "cloud", "DELETE", "faults")
    assert done["state"] == "completed" and done["error"] is None
    assert "waiting_rate_limit" in seen
    assert done["rate_limit_waits"] >= 1
    files = snapshot(stack, done["snapshot"]["prefix"])
    prs = lines(files, "pull_requests")
    assert len(prs) == 120 and len({p["id"] for p in prs}) == 120


def test_dropped_connections_mid_pull_requests_resume_to_a_clean_runs_output(stack):
    control(stack, "cloud", "POST", "seed", _workspace_seed("crashws", "crash", prs=180))
    session = api_session(stack, "cloud", "alice")
    clean = start_imports(session, stack, "cloud", ["crashws/crash-0001"])[0]
    clean_done = wait_for(session, stack, [clean["id"]])[clean["id"]]
    # Import it again; the third pull request page (of four) drops the connection more often than the
    # in-process retries absorb, so the job defers and a later invocation resumes from its checkpoint.
    control(
        stack,
        "cloud",
        "POST",
        "faults",
        {
            "drop_connection": True,
            "after": 2,
            "count": 4,
            "path_prefix": "/2.0/repositories/crashws/crash-0001/pullrequests",
        },
    )
    try:
        crashed = start_imports(session, stack, "cloud", ["crashws/crash-0001"], reimport=True)[0]
        done = wait_for(session, stack, [crashed["id"]], timeout=60)[crashed["id"]]
        fired = control(stack, "cloud", "GET", "faults")
    finally:
        control(stack, "cloud", "DELETE", "faults")
    assert done["state"] == "completed", done
    assert done["id"] != clean_done["id"]
    assert fired[0]["fired"] == 4 if isinstance(fired, list) else fired["faults"][0]["fired"] == 4
    clean_files = entity_files(snapshot(stack, clean_done["snapshot"]["prefix"]))
    resumed_files = entity_files(snapshot(stack, done["snapshot"]["prefix"]))
    assert resumed_files == clean_files  # byte for byte, page for page
    assert manifest(snapshot(stack, done["snapshot"]["prefix"]))["counts"]["pull_requests"] == 180


def test_token_expiring_during_an_import_is_refreshed_unnoticed(stack):
    control(stack, "cloud", "POST", "seed", _workspace_seed("tokenws", "tok", prs=200))
    session = api_session(stack, "cloud", "alice")
    # Slow pull request pages, and every access token dies after the first one.
    control(
        stack,
        "cloud",
        "POST",
        "faults",
        {"latency_ms": 300, "path_prefix": "/2.0/repositories/tokenws/tok-0001/pullrequests"},
    )
    before = requests_made(stack, "cloud").get("POST /site/oauth2/access_token", 0)
    try:
        job = start_imports(session, stack, "cloud", ["tokenws/tok-0001"])[0]
        _wait_for_page(session, stack, job["id"], "pull_requests")
        control(stack, "cloud", "POST", "tokens/expire", {"all": True, "flavor": "cloud"})
        done = wait_for(session, stack, [job["id"]], timeout=60)[job["id"]]
    finally:
        control(stack, "cloud", "DELETE", "faults")
    assert done["state"] == "completed" and done["error"] is None
    assert requests_made(stack, "cloud").get("POST /site/oauth2/access_token", 0) > before
    assert len(lines(snapshot(stack, done["snapshot"]["prefix"]), "pull_requests")) == 200


def test_cancel_stops_an_import(stack):
    control(stack, "datacenter", "POST", "seed", _project_seed("CANC", "slow", prs=3000))
    session = api_session(stack, "datacenter", "alice")
    control(stack, "datacenter", "POST", "faults", {"latency_ms": 500, "path_prefix": "/rest/api/1.0/projects/CANC"})
    try:
        job = start_imports(session, stack, "datacenter", ["CANC/slow"])[0]
        cancelled = session.post(f"{stack.api}/api/imports/{job['id']}/cancel", json={}, timeout=10)
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert session.post(f"{stack.api}/api/imports/{job['id']}/cancel", json={}, timeout=10).status_code == 409
    finally:
        control(stack, "datacenter", "DELETE", "faults")
    other = api_session(stack, "datacenter", "carol")
    assert other.get(f"{stack.api}/api/imports/{job['id']}", timeout=10).status_code == 404


def test_only_the_user_who_started_a_shared_import_can_cancel_or_retry_it(stack):
    seed = _project_seed("SHRD", "shared", prs=3000)
    seed["datacenter"]["projects"][0]["permissions"] = {"alice": "admin", "bob": "read"}
    control(stack, "datacenter", "POST", "seed", seed)
    alice, bob = api_session(stack, "datacenter", "alice"), api_session(stack, "datacenter", "bob")
    control(stack, "datacenter", "POST", "faults", {"latency_ms": 500, "path_prefix": "/rest/api/1.0/projects/SHRD"})
    try:
        job = start_imports(alice, stack, "datacenter", ["SHRD/shared"])[0]
        # (alice is also the local stack's admin: AdminUsers names her on both emulator providers)
        assert job["you"] == {"started_it": True, "admin": True, "can_cancel": True, "can_retry": False}
        # Bob, a read-only member, requests the same repository: he joins the running job, and his view says
        # he can watch it, not stop it.
        joined = start_imports(bob, stack, "datacenter", ["SHRD/shared"])[0]
        assert joined["id"] == job["id"] and joined["created"] is False
        assert joined["you"] == {"started_it": False, "admin": False, "can_cancel": False, "can_retry": False}

        refused = bob.post(f"{stack.api}/api/imports/{job['id']}/cancel", json={}, timeout=10)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "not_import_owner"
        assert error["message"].startswith("Only the user who started this import, or an admin, can cancel it")
        assert get_job(alice, stack, job["id"])["state"] in ("queued", "running", "waiting_rate_limit")

        cancelled = alice.post(f"{stack.api}/api/imports/{job['id']}/cancel", json={}, timeout=10)
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["you"]["can_retry"] is True
        assert get_job(bob, stack, job["id"])["you"]["can_retry"] is False
        refused = bob.post(f"{stack.api}/api/imports/{job['id']}/retry", json={}, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_import_owner"
        assert get_job(alice, stack, job["id"])["state"] == "cancelled"

        retried = alice.post(f"{stack.api}/api/imports/{job['id']}/retry", json={}, timeout=10)
        assert retried.status_code == 200 and retried.json()["state"] == "queued"
        assert alice.post(f"{stack.api}/api/imports/{job['id']}/cancel", json={}, timeout=10).status_code == 200
    finally:
        control(stack, "datacenter", "DELETE", "faults")


def _wait_for_page(session, stack, job_id: str, step: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = get_job(session, stack, job_id)
        if body["step"] == step and body["progress"].get(step, 0) > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"the import never reached {step}")


def _workspace_seed(slug: str, repo: str, prs: int, count: int = 1) -> dict:
    return {
        "cloud": {
            "workspaces": [
                {
                    "slug": slug,
                    "name": slug,
                    "members": {"alice": "owner"},
                    "repositories": [
                        {"slug": repo, "count": count, "branches": 3, "tags": 1, "pull_requests": prs, "issues": 0}
                    ],
                }
            ]
        }
    }


def _project_seed(key: str, repo: str, prs: int) -> dict:
    return {
        "datacenter": {
            "projects": [
                {
                    "key": key,
                    "name": key,
                    "permissions": {"alice": "admin"},
                    "repositories": [{"slug": repo, "branches": 2, "tags": 1, "pull_requests": prs}],
                }
            ]
        }
    }


def test_cli_lists_shows_cancels_and_retries_from_the_checkpoint(stack):
    control(stack, "datacenter", "POST", "seed", _project_seed("CLIP", "resume", prs=2500))
    session = api_session(stack, "datacenter", "alice")
    # Slow pages leave the CLI (1-3 s to start, far more on a loaded machine) time to cancel mid-step: once
    # the first pull request page is saved, the other two take 10 s each (under the worker's 15 s read timeout).
    control(stack, "datacenter", "POST", "faults", {"latency_ms": 2000, "path_prefix": "/rest/api/1.0/projects/CLIP"})
    pull_requests = "/rest/api/1.0/projects/CLIP/repos/resume/pull-requests"
    control(stack, "datacenter", "POST", "faults", {"latency_ms": 8000, "path_prefix": pull_requests, "after": 1})
    try:
        job = start_imports(session, stack, "datacenter", ["CLIP/resume"])[0]
        _wait_for_page(session, stack, job["id"], "pull_requests")
        cancelled = cli(stack, "imports", "cancel", job["id"])
        assert cancelled.returncode == 0, cancelled.stderr
        assert cli(stack, "imports", "cancel", job["id"]).returncode == 2  # already cancelled: a clear refusal
    finally:
        control(stack, "datacenter", "DELETE", "faults")
    listed = json.loads(cli(stack, "imports", "list", "--state", "cancelled", "--json").stdout)
    assert job["id"] in {j["id"] for j in listed}
    shown = json.loads(cli(stack, "imports", "show", job["id"]).stdout)
    assert shown["state"] == "cancelled" and shown["checkpoint"]["page"] >= 2
    before = requests_made(stack, "datacenter")
    retried = cli(stack, "imports", "retry", job["id"])
    assert retried.returncode == 0, retried.stderr
    done = wait_for(session, stack, [job["id"]], timeout=60)[job["id"]]
    assert done["state"] == "completed"
    files = snapshot(stack, done["snapshot"]["prefix"])
    assert len(lines(files, "pull_requests")) == 2500
    # Resumed where it stopped: the branches and the first pull request page were not read again.
    after = requests_made(stack, "datacenter")
    key = "GET /rest/api/1.0/projects/{project_key}/repos/{repository_slug}/branches"
    assert before.get(key, 0) > 0 and after.get(key, 0) == before.get(key, 0)
    assert cli(stack, "imports", "show", "nope").returncode == 2
