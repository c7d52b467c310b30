"""Files for products end to end (local stack + emulator over real HTTP, both flavors), through the SDK:
a file's bytes equal the git blob a clone holds, byte for byte (text, binary, a subdirectory; at a branch,
a tag and a commit); listings; changes in the events' shape; a clone with a token the service API vends
has the REST listing's heads and a wrong token is refused; refusals are clear, scoped and audited."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3
from dulwich import porcelain
from dulwich.client import HttpGitClient, HTTPUnauthorized

from bitbridge.client import ChangedFile, Client, Forbidden, NotFound, ServiceAPIError
from tests.e2e.service_support import PROVIDERS, add_client, connect
from tests.e2e.support import cli, control, emulator

pytestmark = pytest.mark.e2e
OWNER = {"cloud": "acme", "datacenter": "PLAT"}
SCOPES = "connections:read,connections:write,tokens:read,proxy,files:read"
TEXT = "# Grüße\n\nA readme with non-ASCII text: ✓ — and no trailing newline".encode()
BINARY = bytes(range(256)) * 16 + b"\x00\xff\xfe"  # NUL bytes and invalid UTF-8
NESTED = b"def deep():\n    return 42\n"
CHANGED = b"# Changed after the tag\n"


class Code:
    """A fresh repository an end user of a new service client can read, with content at a tag, a
    commit and the branch moved on after them."""

    def __init__(self, stack, flavor: str, tmp: Path) -> None:
        self.stack, self.flavor, self.tmp = stack, flavor, tmp
        self.provider = PROVIDERS[flavor]
        self.slug = f"files-{uuid.uuid4().hex[:8]}"
        self.full_name = f"{OWNER[flavor]}/{self.slug}"
        self.user = f"f{uuid.uuid4().hex[:8]}"
        control(stack, "cloud", "POST", "users", {"name": self.user, "email": f"{self.user}@example.com"})
        body = {"owner": OWNER[flavor], "slug": self.slug, "permissions": {self.user: "read"}}
        control(stack, flavor, "POST", f"{flavor}/repos", body)
        self.client_id, key = add_client(stack, scopes=SCOPES)
        self.bb = Client(stack.api, key)
        self.end_user = f"eu-{uuid.uuid4().hex[:6]}"
        connect(stack, self.bb, flavor, self.end_user, self.user)
        files = {
            "docs/readme.md": {"base64": base64.b64encode(TEXT).decode()},
            "assets/logo.bin": {"base64": base64.b64encode(BINARY).decode()},
            "src/deep/nested/mod.py": NESTED.decode(),
        }
        self.tagged = self.push(branch="main", files=files, message="content")
        control(stack, flavor, "POST", f"{flavor}/repos/{self.full_name}/tags", {"name": "v1.0", "target": "main"})
        self.head = self.push(branch="main", files={"docs/readme.md": CHANGED.decode()}, message="changed")

    def push(self, **body: Any) -> str:
        return str(control(self.stack, self.flavor, "POST", f"{self.flavor}/repos/{self.full_name}/push", body)["head"])

    def clone(self, token: str, target: Path) -> tuple[dict[str, str], Any]:
        """Fetch over git smart HTTP as each flavor takes an OAuth token: (branch heads, the local repo)."""
        root = emulator(self.stack, self.flavor)
        if self.flavor == "cloud":
            client = HttpGitClient(root, username="x-token-auth", password=token)
            path = f"/{self.full_name}.git"
        else:
            # Bearer, as Data Center takes it (dulwich sends its pool's headers on every request).
            bearer = urllib3.PoolManager(headers={"Authorization": f"Bearer {token}", "User-Agent": "git/dulwich"})
            client = HttpGitClient(root, pool_manager=bearer)
            path = f"/scm/{self.full_name}.git"
        local = porcelain.init(str(target))
        result = client.fetch(path, local)
        heads = {
            k.decode().removeprefix("refs/heads/"): v.decode()
            for k, v in result.refs.items()
            if k.startswith(b"refs/heads/")
        }
        return heads, local

    def rest_heads(self) -> dict[str, str]:
        if self.flavor == "cloud":
            pages = self.bb.proxy.pages(self.provider, self.end_user, f"repositories/{self.full_name}/refs/branches")
            return {b["name"]: b["target"]["hash"] for b in pages}
        found = self.bb.proxy.get(
            self.provider,
            self.end_user,
            f"projects/{OWNER['datacenter']}/repos/{self.slug}/branches",
            params={"limit": 1000},
        ).json()
        return {b["displayId"]: b["latestCommit"] for b in found["values"]}


@pytest.fixture(scope="module", params=["cloud", "datacenter"])
def code(request, stack, tmp_path_factory) -> Code:
    return Code(stack, request.param, tmp_path_factory.mktemp(request.param))


def _blob(local: Any, commit: str, path: str) -> bytes:
    tree = local[local[commit.encode()].tree]
    *dirs, name = path.encode().split(b"/")
    for part in dirs:
        tree = local[tree[part][1]]
    return bytes(local[tree[name][1]].data)


def test_a_clone_with_a_vended_token_has_the_rest_listings_heads_and_a_wrong_token_is_refused(code: Code):
    token = code.bb.token(code.provider, code.end_user).access_token
    heads, _ = code.clone(token, code.tmp / "clone")
    assert heads == code.rest_heads() and heads["main"] == code.head
    with pytest.raises(HTTPUnauthorized):
        code.clone(token[:-4] + "oops", code.tmp / "refused")


@pytest.mark.parametrize("path", ["docs/readme.md", "assets/logo.bin", "src/deep/nested/mod.py"])
def test_a_file_read_equals_the_git_blob_byte_for_byte_at_a_branch_a_tag_and_a_commit(code: Code, path: str):
    token = code.bb.token(code.provider, code.end_user).access_token
    target = code.tmp / f"blobs-{path.replace('/', '-')}"
    _, local = code.clone(token, target)
    for ref, commit in (
        ("main", code.head),
        ("v1.0", code.tagged),
        (code.tagged, code.tagged),
        (code.head[:12], code.head),
    ):
        got = code.bb.files.get(code.provider, code.end_user, code.full_name, path, ref)
        expected = _blob(local, commit, path)
        assert got.content == expected, (path, ref)
        assert (got.size, got.path, got.ref) == (len(expected), path, ref)
    binary = code.bb.files.get(code.provider, code.end_user, code.full_name, "assets/logo.bin", "main")
    assert binary.type == "application/octet-stream"
    assert (
        code.bb.files.get(code.provider, code.end_user, code.full_name, "docs/readme.md", "v1.0").text()
        == TEXT.decode()
    )


def test_listings_changes_and_refusals(code: Code):
    bb, p, u, repo = code.bb, code.provider, code.end_user, code.full_name
    root = bb.files.list(p, u, repo, "", "main")
    assert [(e.path, e.type) for e in root] == [
        ("README.md", "file"),  # a new repository's first commit
        ("assets", "directory"),
        ("docs", "directory"),
        ("src", "directory"),
    ]
    deep = bb.files.list(p, u, repo, "src", "v1.0", recursive=True)
    assert [(e.path, e.type, e.size) for e in deep] == [("src/deep/nested/mod.py", "file", len(NESTED))]
    assert not deep.truncated

    changes = bb.changes(p, u, repo, base="v1.0", head="main")
    assert changes.changed_files == [ChangedFile("docs/readme.md", "modified")]
    assert (changes.count, changes.truncated) == (1, False)

    with pytest.raises(NotFound) as missing:
        bb.files.get(p, u, repo, "docs/nothing-here.md", "main")
    assert "docs/nothing-here.md" in missing.value.message
    with pytest.raises(NotFound):
        bb.files.get(p, u, repo, "docs", "main")  # a directory is not a file
    with pytest.raises(ServiceAPIError) as unsafe:
        bb.files.get(p, u, repo, "../etc/passwd", "main")
    assert (unsafe.value.status, unsafe.value.code) == (400, "path_not_allowed")
    with pytest.raises(ServiceAPIError) as bad_ref:
        bb.files.list(p, u, repo, "", "main..v1.0")
    assert (bad_ref.value.status, bad_ref.value.code) == (400, "invalid_request")

    _, narrow = add_client(code.stack, scopes="connections:read")
    with pytest.raises(Forbidden) as scope:
        Client(code.stack.api, narrow).files.get(p, u, repo, "docs/readme.md", "main")
    assert (scope.value.code, scope.value.details.get("required_scope")) == ("insufficient_scope", "files:read")


def test_a_file_over_the_limit_is_a_clear_413(code: Code):
    big = base64.b64encode(b"\x01" * (4 * 1024 * 1024 + 1)).decode()
    code.push(branch="big", files={"huge.bin": {"base64": big}}, message="too big to serve")
    with pytest.raises(ServiceAPIError) as refused:
        code.bb.files.get(code.provider, code.end_user, code.full_name, "huge.bin", "big")
    assert (refused.value.status, refused.value.code) == (413, "file_too_large")
    assert "4,194,304" in refused.value.message and "clone" in refused.value.message


def test_file_reads_are_audited(code: Code):
    bb, p, u, repo = code.bb, code.provider, code.end_user, code.full_name
    bb.files.get(p, u, repo, "docs/readme.md", "main")
    bb.files.list(p, u, repo, "docs", "main")
    bb.changes(p, u, repo, base="v1.0", head="main")

    # The module's earlier tests read files with this client too (some 404s), and rows arrive through a queue:
    # wait for this read's own row, not for any file_read row.
    def this_read(row: dict) -> bool:
        where = row["path"] + row.get("query", "")
        return row["action"] == "file_read" and "docs%2Freadme.md" in where and "main" in where

    wanted, deadline, rows = {"file_read", "file_list", "file_changes"}, time.monotonic() + 30, []
    while not (wanted <= {r["action"] for r in rows} and any(map(this_read, rows))) and time.monotonic() < deadline:
        time.sleep(1)
        done = cli(code.stack, "audit", "--client", code.client_id, "--since", "1h", "--json")
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    read = [r for r in rows if this_read(r)]
    assert wanted <= {r["action"] for r in rows} and read, rows
    assert read[0]["status"] == 200 and read[0]["end_user_id"] == u, read[0]
