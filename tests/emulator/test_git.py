"""Real git in the emulator: content pushes make real commits, the REST answers about commits, changes and files
come from the git objects (validated against Atlassian's OpenAPI), merges make merge commits, and git smart HTTP
clones and fetches at Bitbucket's clone URLs with each flavour's way of taking a token."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from dulwich import porcelain
from dulwich.client import HttpGitClient, HTTPUnauthorized
from dulwich.errors import HangupException
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.emulator.git import GitRepo, MergeConflict

from .conftest import bearer, cloud_login, control, dc_login, validate
from .test_openapi_contract import CLOUD_NULLABLE, _cloud_validate, _strip_known_nulls

REPOS = {"cloud": "acme/api-service", "datacenter": "PLAT/tools"}
BINARY = bytes(range(256)) * 4
# Bitbucket Cloud sends `old` / `new` as null for an added / removed file; the spec does not mark them nullable.
CLOUD_NULLABLE.update({"old", "new"})


def _push(emu, flavor: str, repo: str | None = None, **body: object) -> dict:
    resp = control(emu, "POST", f"{flavor}/repos/{repo or REPOS[flavor]}/push", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _cloud(emu, token: str, route: str, repo: str = REPOS["cloud"], **params: object) -> requests.Response:
    url = f"{emu.cloud_url}/2.0/repositories/{repo}{route}"
    return requests.get(url, headers=bearer(token), params=params, timeout=10)  # type: ignore[arg-type]


def _dc(emu, token: str, path: str, repo: str = REPOS["datacenter"], **params: object) -> requests.Response:
    project, slug = repo.split("/")
    url = f"{emu.dc_url}/rest/api/1.0/projects/{project}/repos/{slug}{path}"
    return requests.get(url, headers=bearer(token), params=params, timeout=10)  # type: ignore[arg-type]


def _four_changes(emu, flavor: str) -> tuple[str, str]:
    """A base commit with three files, then one push that adds, modifies, deletes and renames one file each."""
    base = _push(
        emu,
        flavor,
        branch="feature/files",
        files={"keep.txt": "one\ntwo\n", "gone.txt": "bye\n", "old/name.md": "# same\n\ncontent\n"},
        message="Base",
    )["head"]
    head = _push(
        emu,
        flavor,
        branch="feature/files",
        files={"src/new.py": "print('new')\n", "keep.txt": "one\n2\nthree\n"},
        delete=["gone.txt"],
        rename={"old/name.md": "docs/name.md"},
        message="Four changes",
    )["head"]
    return base, head


def test_a_content_push_gives_exactly_its_changes_on_cloud(emu, cloud_spec):
    token = cloud_login(emu)
    base, head = _four_changes(emu, "cloud")
    resp = _cloud(emu, token, f"/diffstat/{head}")
    assert resp.status_code == 200
    values = resp.json()["values"]
    _cloud_validate(cloud_spec, resp)
    stats = {
        (v["status"], (v["old"] or {}).get("path"), (v["new"] or {}).get("path")): (
            v["lines_added"],
            v["lines_removed"],
        )
        for v in values
    }
    assert stats == {
        ("added", None, "src/new.py"): (1, 0),
        ("modified", "keep.txt", "keep.txt"): (2, 1),
        ("removed", "gone.txt", None): (0, 1),
        ("renamed", "old/name.md", "docs/name.md"): (0, 0),
    }
    # `new..old` (Bitbucket's order) gives the same four against the base commit.
    ranged = _cloud(emu, token, f"/diffstat/{head}..{base}").json()["values"]
    assert len(ranged) == 4
    diff = _cloud(emu, token, f"/diff/{head}")
    assert diff.status_code == 200 and diff.headers["Content-Type"].startswith("text/plain")
    text = diff.text
    assert "diff --git a/keep.txt b/keep.txt" in text and "-two\n+2\n+three\n" in text
    assert "+++ b/src/new.py" in text and "--- a/gone.txt" in text
    assert "similarity index 100%\nrename from old/name.md\nrename to docs/name.md\n" in text
    only = _cloud(emu, token, f"/diff/{head}", path="keep.txt").text
    assert "keep.txt" in only and "new.py" not in only


def test_a_content_push_gives_exactly_its_changes_on_data_center(emu, dc_spec):
    token = dc_login(emu)
    base, head = _four_changes(emu, "datacenter")
    resp = _dc(emu, token, f"/commits/{head}/changes")
    assert resp.status_code == 200
    validate(dc_spec, resp, flavor="datacenter")
    changes = {(v["type"], v.get("srcPath", {}).get("toString"), v["path"]["toString"]) for v in resp.json()["values"]}
    assert changes == {
        ("ADD", None, "src/new.py"),
        ("MODIFY", None, "keep.txt"),
        ("DELETE", None, "gone.txt"),
        ("MOVE", "old/name.md", "docs/name.md"),
    }
    deleted = next(v for v in resp.json()["values"] if v["type"] == "DELETE")
    assert deleted["contentId"] == "0" * 40 and deleted["fromContentId"] != "0" * 40
    # compare/changes: what `from` has that `to` lacks (from their merge base).
    compared = _dc(emu, token, "/compare/changes", **{"from": head, "to": base})
    validate(dc_spec, compared, flavor="datacenter")
    assert {v["path"]["toString"] for v in compared.json()["values"]} == {p for _, _, p in changes}
    since = _dc(emu, token, f"/commits/{head}/changes", since=base).json()["values"]
    assert len(since) == 4


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_files_read_back_byte_for_byte_at_a_branch_a_tag_and_a_commit(emu, flavor):
    token = cloud_login(emu) if flavor == "cloud" else dc_login(emu)
    pushed = _push(
        emu,
        flavor,
        files={"assets/logo.bin": {"base64": base64.b64encode(BINARY).decode()}, "deep/er/notes.txt": "héllo\n"},
        message="Binary and text",
    )
    head = pushed["head"]
    tag = control(emu, "POST", f"{flavor}/repos/{REPOS[flavor]}/tags", json={"name": "v9.0.0", "target": head})
    assert tag.status_code == 201
    _push(emu, flavor, files={"deep/er/notes.txt": "changed later\n"}, message="Later")
    repo = emu.backend.get_repo(flavor, *REPOS[flavor].split("/"))
    blob = repo.git.read(repo.git.lookup(head, "assets/logo.bin")[1])
    assert blob == BINARY

    def read(at: str, path: str) -> bytes:
        route = f"/src/{at}/{path}" if flavor == "cloud" else f"/raw/{path}"
        resp = _cloud(emu, token, route) if flavor == "cloud" else _dc(emu, token, route, at=at)
        assert resp.status_code == 200, resp.text
        return resp.content

    for at in (head, head[:10], "v9.0.0"):
        assert read(at, "assets/logo.bin") == BINARY
        assert read(at, "deep/er/notes.txt") == "héllo\n".encode()
    assert read("main", "deep/er/notes.txt") == b"changed later\n"
    missing = _cloud(emu, token, f"/src/{head}/nope.txt") if flavor == "cloud" else _dc(emu, token, "/raw/nope.txt")
    assert missing.status_code == 404


def _validate_src(spec, resp: requests.Response, head: str) -> None:  # type: ignore[no-untyped-def]
    """A directory listing URL ends in "/" (the root's is `/src/{commit}/`), which the spec's `/src/{commit}/{path}`
    template does not match: validate against that operation by a file path."""
    resp._content = json.dumps(_strip_known_nulls(resp.json())).encode()
    validate(spec, resp, flavor="cloud", path=f"/2.0/repositories/{REPOS['cloud']}/src/{head}/pkg")


def test_cloud_directory_listings_and_meta_match_spec(emu, cloud_spec):
    token = cloud_login(emu)
    head = _push(emu, "cloud", files={"pkg/a.py": "a\n", "pkg/sub/b.py": "b\n"}, message="Package")["head"]
    root = _cloud(emu, token, f"/src/{head}/", pagelen=100)
    _validate_src(cloud_spec, root, head)
    assert {(v["path"], v["type"]) for v in root.json()["values"]} >= {
        ("pkg", "commit_directory"),
        ("README.md", "commit_file"),
    }
    pkg = _cloud(emu, token, f"/src/{head}/pkg/")
    _validate_src(cloud_spec, pkg, head)
    assert [(v["path"], v["type"]) for v in pkg.json()["values"]] == [
        ("pkg/a.py", "commit_file"),
        ("pkg/sub", "commit_directory"),
    ]
    deep = _cloud(emu, token, f"/src/{head}/pkg/", max_depth=2).json()["values"]
    assert "pkg/sub/b.py" in {v["path"] for v in deep}
    meta = _cloud(emu, token, f"/src/{head}/pkg/a.py", format="meta").json()
    assert (meta["type"], meta["size"], meta["commit"]["hash"]) == ("commit_file", 2, head)
    redirect = requests.get(
        f"{emu.cloud_url}/2.0/repositories/acme/api-service/src",
        headers=bearer(token),
        timeout=10,
        allow_redirects=False,
    )
    assert redirect.status_code == 302 and redirect.headers["Location"].endswith(f"/src/{head}/")


def test_dc_browse_lists_a_directory_and_pages_a_file(emu, dc_spec):
    token = dc_login(emu)
    _push(emu, "datacenter", files={"pkg/a.py": "line 1\nline 2\nline 3\n", "pkg/sub/b.py": "b\n"}, message="P")
    listing = _dc(emu, token, "/browse/pkg", at="main")
    validate(dc_spec, listing, flavor="datacenter")
    children = listing.json()["children"]["values"]
    assert [(c["path"]["toString"], c["type"]) for c in children] == [("a.py", "FILE"), ("sub", "DIRECTORY")]
    lines = _dc(emu, token, "/browse/pkg/a.py", limit=2).json()
    assert [line["text"] for line in lines["lines"]] == ["line 1", "line 2"] and lines["isLastPage"] is False
    assert _dc(emu, token, "/browse/pkg/a.py", type="true").json() == {"type": "FILE"}
    root = _dc(emu, token, "/browse").json()
    assert "pkg" in {c["path"]["toString"] for c in root["children"]["values"]}


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_commit_listings_follow_the_git_history(emu, cloud_spec, dc_spec, flavor):
    token = cloud_login(emu) if flavor == "cloud" else dc_login(emu)
    before = _push(emu, flavor, branch="logbranch", commits=1)["head"]
    pushed = _push(emu, flavor, branch="logbranch", commits=["first", "second"])
    repo = emu.backend.get_repo(flavor, *REPOS[flavor].split("/"))
    expected = [c.id.decode() for c in repo.git.log([pushed["head"]])]
    assert expected[:3] == [*reversed(pushed["commits"]), before]
    if flavor == "cloud":
        resp = _cloud(emu, token, "/commits/logbranch", pagelen=100)
        _cloud_validate(cloud_spec, resp)
        assert [c["hash"] for c in resp.json()["values"]] == expected[:100]
        assert [c["message"] for c in resp.json()["values"][:2]] == ["second\n", "first\n"]
        new_only = _cloud(emu, token, "/commits", include="logbranch", exclude="main").json()["values"]
        one = _cloud(emu, token, f"/commit/{pushed['head'][:12]}")
        _cloud_validate(cloud_spec, one)
        assert one.json()["parents"][0]["hash"] == pushed["commits"][0]
    else:
        resp = _dc(emu, token, "/commits", until="logbranch", limit=1000)
        validate(dc_spec, resp, flavor="datacenter")
        assert [c["id"] for c in resp.json()["values"]] == expected
        assert [c["message"] for c in resp.json()["values"][:2]] == ["second", "first"]
        new_only = _dc(emu, token, "/commits", until="logbranch", since="main").json()["values"]
        one = _dc(emu, token, f"/commits/{pushed['head']}")
        validate(dc_spec, one, flavor="datacenter")
        assert one.json()["parents"][0]["id"] == pushed["commits"][0]
    assert len(new_only) == 3  # the three pushed commits; main's history is excluded


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_merge_is_a_real_merge_commit_with_both_sides(emu, flavor):
    repo_name = REPOS[flavor]
    _push(emu, flavor, branch="feature/merge", files={"feature.txt": "from the branch\n"}, message="Feature")
    main = _push(emu, flavor, files={"main.txt": "from main\n"}, message="Main moves on")["head"]
    pr = control(emu, "POST", f"{flavor}/repos/{repo_name}/pullrequests", json={"source": "feature/merge"}).json()
    control(emu, "POST", f"{flavor}/repos/{repo_name}/pullrequests/{pr['id']}/merge")
    repo = emu.backend.get_repo(flavor, *repo_name.split("/"))
    merge = repo.branches["main"].target
    commit = repo.git.commit(merge)
    source = repo.pull_requests[pr["id"]].source_hash
    assert [p.decode() for p in commit.parents] == [main, source]
    assert {"feature.txt", "main.txt", "README.md"} <= set(repo.git.files(merge))
    assert repo.pull_requests[pr["id"]].merge_hash == merge


def test_push_content_errors_change_nothing(emu):
    path = f"cloud/repos/{REPOS['cloud']}/push"
    repo = emu.backend.get_repo("cloud", *REPOS["cloud"].split("/"))
    head = repo.branches["main"].target
    bad = [
        ({"delete": ["missing.txt"]}, "no such file"),
        ({"rename": {"missing.txt": "x.txt"}}, "no such file"),
        ({"files": {"../escape.txt": "x"}}, "Invalid file path"),
        ({"files": {"a.txt": {"base64": "not base64!"}}}, "base64"),
        ({"files": {"a.txt": 3}}, "must be a string"),
        ({"files": {"README.md/x": "x"}}, "is a file"),
        ({"to": "0" * 40, "force": True}, "does not exist"),
    ]
    for body, message in bad:
        resp = control(emu, "POST", path, json=body)
        assert resp.status_code == 400 and message in resp.json()["error"], (body, resp.text)
    assert repo.branches["main"].target == head


def test_seeded_repositories_are_real_git_with_shared_content(emu):
    for flavor, name in (("cloud", "acme/web-app"), ("datacenter", "PLAT/core")):
        repo = emu.backend.get_repo(flavor, *name.split("/"))
        for ref in (*repo.branches.values(), *repo.tags.values()):
            assert repo.git.has_commit(ref.target), ref.name
        for pr in repo.pull_requests.values():
            assert repo.git.has_commit(pr.source_hash)
            if pr.state == "MERGED":
                assert repo.git.is_ancestor(pr.merge_hash, repo.branches[repo.default_branch].target)
    one = emu.backend.get_repo("cloud", "acme", "api-service")
    other = emu.backend.get_repo("datacenter", "PLAT", "tools")
    # Same content, same blob ids in both repositories; commits differ (dates, repositories).
    readme = one.git.lookup(one.branches["main"].target, "README.md")
    assert readme == other.git.lookup(other.branches["main"].target, "README.md")
    assert one.branches["main"].target != other.branches["main"].target


def test_a_repositorys_git_objects_export_and_restore():
    from infra.emulator.git import Signature

    git = GitRepo()
    files = git.apply(None, write={"a.txt": b"a\n", "b/c.txt": b"c\n"})
    first = git.commit_files([], files, "one", Signature("A", "a@example.com"), 1_700_000_000)
    second = git.commit_files([first], git.apply(first, delete=["a.txt"]), "two", Signature("A", "a@e.com"), 1)
    for restored in (GitRepo(git.export()), pickle.loads(pickle.dumps(git))):
        assert restored.files(second) == git.files(second)
        assert [c.status for c in restored.changes(first, second)] == ["removed"]
        assert restored.export() == git.export()


# ---------------------------------------- git smart HTTP
def _rest_heads(emu, flavor: str, repo: str) -> dict[str, str]:
    if flavor == "cloud":
        token, heads, url = cloud_login(emu), {}, f"{emu.cloud_url}/2.0/repositories/{repo}/refs/branches?pagelen=100"
        while url:
            page = requests.get(url, headers=bearer(token), timeout=10).json()
            heads.update({b["name"]: b["target"]["hash"] for b in page["values"]})
            url = page.get("next")
        return heads
    values = _dc(emu, dc_login(emu), "/branches", repo=repo, limit=1000).json()["values"]
    return {b["displayId"]: b["latestCommit"] for b in values}


def _clone_url(emu, flavor: str, repo: str) -> tuple[str, str]:
    """(server root, path) of the HTTP clone link the repository's REST representation advertises."""
    if flavor == "cloud":
        body = requests.get(f"{emu.cloud_url}/2.0/repositories/{repo}", headers=bearer(cloud_login(emu)), timeout=10)
        href = next(c["href"] for c in body.json()["links"]["clone"] if c["name"] == "https")
        root = emu.cloud_url
    else:
        project, slug = repo.split("/")
        body = requests.get(
            f"{emu.dc_url}/rest/api/1.0/projects/{project}/repos/{slug}", headers=bearer(dc_login(emu)), timeout=10
        )
        href = next(c["href"] for c in body.json()["links"]["clone"] if c["name"] == "http")
        root = emu.dc_url
    assert href.startswith(root)
    return root, href[len(root) :]


def _dulwich_fetch(base: str, path: str, target: Path, **auth: str) -> dict[str, str]:
    client = HttpGitClient(base, **auth)
    result = client.fetch(path, porcelain.init(str(target)))
    return {k.decode(): v.decode() for k, v in result.refs.items() if k.startswith(b"refs/heads/")}


@pytest.mark.parametrize(("flavor", "repo"), [("cloud", "acme/web-app"), ("datacenter", "PLAT/core")])
def test_a_dulwich_clone_gives_the_rest_listings_heads(emu, tmp_path, flavor, repo):
    head = _push(emu, flavor, repo, branch="feature/cloned", files={"x.txt": "x\n"}, message="X")["head"]
    base, path = _clone_url(emu, flavor, repo)
    if flavor == "cloud":
        auth = {"username": "x-token-auth", "password": cloud_login(emu)}
    else:
        auth = {"username": "anything", "password": dc_login(emu)}
    heads = _dulwich_fetch(base, path, tmp_path / "clone", **auth)
    assert {k.removeprefix("refs/heads/"): v for k, v in heads.items()} == _rest_heads(emu, flavor, repo)
    assert heads["refs/heads/feature/cloned"] == head
    # The objects arrived: the clone reads the pushed file at that commit.
    local = porcelain.open_repo(str(tmp_path / "clone"))
    tree = local[local[head.encode()].tree]
    assert local[tree[b"x.txt"][1]].data == b"x\n"


GIT = shutil.which("git")


@pytest.mark.skipif(GIT is None, reason="the git command line is not installed on this machine")
@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_git_clones_and_fetches_with_the_flavours_token_handling(emu, tmp_path, flavor):
    repo = REPOS[flavor]
    base, path = _clone_url(emu, flavor, repo)
    host = base.split("//", 1)[1]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([GIT, *args], capture_output=True, text=True, env=env, timeout=60, check=False)  # type: ignore[list-item]

    if flavor == "cloud":
        clone = git("clone", "-q", f"http://x-token-auth:{cloud_login(emu)}@{host}{path}", str(tmp_path / "c"))
    else:  # Bearer header, as DC's HTTP access tokens are sent
        clone = git(
            "-c",
            f"http.extraHeader=Authorization: Bearer {dc_login(emu)}",
            "clone",
            "-q",
            base + path,
            str(tmp_path / "c"),
        )
    assert clone.returncode == 0, clone.stderr
    assert git("-C", str(tmp_path / "c"), "fsck", "--strict").returncode == 0
    listed = git(
        "-C", str(tmp_path / "c"), "for-each-ref", "--format=%(refname:lstrip=3) %(objectname)", "refs/remotes/origin"
    )
    heads = dict(line.split() for line in listed.stdout.splitlines() if not line.startswith("HEAD "))
    assert heads == _rest_heads(emu, flavor, repo)
    # A fetch after a push brings the new commit.
    head = _push(emu, flavor, files={"fetched.txt": "new\n"}, message="Fetch me")["head"]
    extra = () if flavor == "cloud" else ("-c", f"http.extraHeader=Authorization: Bearer {dc_login(emu)}")
    fetched = git("-C", str(tmp_path / "c"), *extra, "fetch", "-q", "origin")
    assert fetched.returncode == 0, fetched.stderr
    assert git("-C", str(tmp_path / "c"), "rev-parse", "origin/main").stdout.strip() == head
    # Pushing over git is refused (the control API pushes).
    pushed = git("-C", str(tmp_path / "c"), *extra, "push", "-q", "origin", "HEAD:refs/heads/from-git")
    assert pushed.returncode != 0 and "not emulated" in pushed.stderr


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_git_refuses_missing_wrong_and_unauthorised_tokens(emu, tmp_path, flavor):
    base, path = _clone_url(emu, flavor, "acme/api-service" if flavor == "cloud" else "WEB/site")
    refs = f"{base}{path}/info/refs?service=git-upload-pack"
    missing = requests.get(refs, timeout=10)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong = requests.get(refs, auth=("x-token-auth", "not-a-token"), timeout=10)
    assert wrong.status_code == 401
    if flavor == "cloud":
        token = cloud_login(emu)
        assert requests.get(refs, auth=("alice", token), timeout=10).status_code == 401  # only x-token-auth
        assert requests.get(refs, auth=("x-token-auth", token), timeout=10).status_code == 200
        assert requests.get(refs, headers=bearer(token), timeout=10).status_code == 401
        # carol is no member of globex: its private repository does not exist for her.
        carol = cloud_login(emu, user="carol")
        hidden = f"{base}/globex/docs.git/info/refs?service=git-upload-pack"
        assert requests.get(hidden, auth=("x-token-auth", carol), timeout=10).status_code == 404
    else:
        token = dc_login(emu)
        assert requests.get(refs, headers=bearer(token), timeout=10).status_code == 200
        assert requests.get(refs, auth=("placeholder", token), timeout=10).status_code == 200
        carol = dc_login(emu, user="carol")  # carol may read PLAT, not WEB
        assert requests.get(refs, headers=bearer(carol), timeout=10).status_code == 404
        control(emu, "POST", "tokens/revoke", json={"token": token})
        assert requests.get(refs, headers=bearer(token), timeout=10).status_code == 401
    with pytest.raises((HTTPUnauthorized, HangupException)):
        _dulwich_fetch(base, path, tmp_path / "refused", username="x-token-auth", password="wrong")


def test_a_token_without_the_read_scope_is_refused(emu):
    token = cloud_login(emu, scopes=["account"])
    refs = f"{emu.cloud_url}/acme/api-service.git/info/refs?service=git-upload-pack"
    resp = requests.get(refs, auth=("x-token-auth", token), timeout=10)
    assert resp.status_code == 403


def test_public_cloud_repositories_clone_without_credentials(emu, tmp_path):
    heads = _dulwich_fetch(emu.cloud_url, "/acme/infra.git", tmp_path / "public")
    assert {k.removeprefix("refs/heads/"): v for k, v in heads.items()} == _rest_heads(emu, "cloud", "acme/infra")


def test_git_requests_are_counted_per_repository_under_their_own_endpoints(emu, tmp_path):
    control(emu, "DELETE", "requests")
    _dulwich_fetch(
        emu.cloud_url, "/acme/api-service.git", tmp_path / "c", username="x-token-auth", password=cloud_login(emu)
    )
    stats = control(emu, "GET", "requests").json()["flavors"]["cloud"]
    assert stats["endpoints"]["GET /{workspace}/{repo_slug}.git/info/refs"] == 1
    assert stats["endpoints"]["POST /{workspace}/{repo_slug}.git/{service}"] == 1
    assert stats["repositories"]["acme/api-service"] >= 2
    assert json.dumps(stats).count("git") >= 2


# ---------------------------------------- the object model against dulwich's own (generated inputs)
_names = st.text(alphabet="ab.-_Z09", min_size=1, max_size=4).filter(lambda n: n not in (".", "..", ".git"))
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)
_trees = st.dictionaries(_paths, st.binary(max_size=20), min_size=1, max_size=12).filter(
    lambda files: not any(other.startswith(path + "/") for path in files for other in files)
)


@settings(max_examples=150, deadline=None)
@given(files=_trees, extra=_trees)
def test_trees_commits_and_merges_match_dulwichs_object_model(files, extra):
    from dulwich.index import commit_tree
    from dulwich.object_store import MemoryObjectStore
    from dulwich.objects import Blob

    from infra.emulator.git import Signature

    git = GitRepo()
    sig = Signature("A", "a@example.com")
    base = git.commit_files([], git.apply(None, write=files), "base", sig, 1_700_000_000)
    # The same content built by dulwich's own tree writer has the same id.
    reference = MemoryObjectStore()
    blobs = []
    for path, content in files.items():
        blob = Blob.from_string(content)
        reference.add_object(blob)
        blobs.append((path.encode(), blob.id, 0o100644))
    assert git.tree_of(base).decode() == commit_tree(reference, blobs).decode()
    parsed = git.commit(base)  # dulwich parses what we wrote, and it hashes to the same id
    assert parsed.id.decode() == base and parsed.message == b"base\n"
    # A one-file change and a merge, made incrementally, equal the flat computation.
    path, content = next(iter(extra.items()))
    if any(path.startswith(p + "/") or p.startswith(path + "/") for p in files):
        return
    side = git.write_commit(git.with_file(base, path, content), [base.encode()], "side", sig, 1_700_000_001)
    assert git.files(side) == {**git.files(base), path: (0o100644, git.write_blob(content))}
    deleted = next(iter(files))
    ours = git.commit_files([base], git.apply(base, delete=[deleted]), "ours", sig, 1_700_000_002)
    if path == deleted and git.files(side).get(path) != git.files(base).get(path):
        with pytest.raises(MergeConflict):  # one side deleted what the other changed: git stops there too
            git.merge(ours, side)
        return
    merged = git.merge(ours, side)
    expected = git.files(ours)
    if git.files(side).get(path) != git.files(base).get(path):  # only what the side changed is merged in
        expected[path] = (0o100644, git.write_blob(content))
    assert _flat_of(git, merged) == expected


def _flat_of(git: GitRepo, tree: bytes) -> dict:
    from infra.emulator.git import Signature

    commit = git.write_commit(tree, [], "probe", Signature("P", "p@example.com"), 0)
    return git.files(commit)


def test_the_default_seed_makes_the_same_commits_every_time():
    from infra.emulator.models import Backend
    from infra.emulator.seed import seed_default

    def heads() -> dict:
        backend = Backend()
        seed_default(backend)
        return {
            (r.full_name, name): ref.target
            for r in backend.repos.values()
            for name, ref in (*r.branches.items(), *r.tags.items())
        }

    first = heads()
    assert first == heads() and len(set(first.values())) > 100


def test_seeded_commits_depend_on_the_repository_not_on_what_was_seeded_before():
    from infra.emulator.models import Backend
    from infra.emulator.seed import DEMO_USERS, apply_spec, seed_default

    spec = {
        "users": DEMO_USERS,
        "cloud": {
            "workspaces": [{"slug": "acme", "repositories": [{"slug": "late", "branches": 3, "pull_requests": 9}]}]
        },
    }
    alone, after_others = Backend(), Backend()
    apply_spec(alone, spec)
    seed_default(after_others)
    apply_spec(after_others, spec)
    first, second = (b.get_repo("cloud", "acme", "late") for b in (alone, after_others))
    assert {n: r.target for n, r in first.branches.items()} == {n: r.target for n, r in second.branches.items()}
    assert [p.merge_hash for p in first.pull_requests.values()] == [p.merge_hash for p in second.pull_requests.values()]
    assert first.created_on != second.created_on  # the model's dates still follow the seeding order
