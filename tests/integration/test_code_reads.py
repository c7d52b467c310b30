"""bitbridge.bitbucket.code against the emulator over HTTP, both flavors, through a real `calls.Caller`: the
same changed files, commits, file bytes and listings from Cloud's and Data Center's answers, and each read in
its rate-limit class (Cloud: `repositories` for diffstat and commits, `raw` for `src`)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bitbridge.bitbucket.api import code_for
from bitbridge.bitbucket.code import (
    ADDED,
    MODIFIED,
    REMOVED,
    RENAMED,
    ChangedFile,
    Diff,
    list_entries,
    read_changes,
)
from bitbridge.calls import Caller
from bitbridge.store.providers import ProviderRecord
from bitbridge.webhooks.enrich import reader
from infra.emulator import Emulator
from tests.emulator.conftest import cloud_login, dc_login

REPOS = {"cloud": "acme/api-service", "datacenter": "PLAT/tools"}
BINARY = bytes(range(256)) * 3


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator(cloud_port=0, dc_port=0, seed=True)
    emulator.start()
    yield emulator
    emulator.stop()


def control(emu: Emulator, method: str, path: str, body: Any = None) -> Any:
    answer = requests.request(method, f"{emu.cloud_url}/_emulator/{path}", json=body, timeout=30)
    assert answer.status_code < 300, answer.text
    return answer.json()


def caller(emu: Emulator, flavor: str) -> Caller:
    token = cloud_login(emu) if flavor == "cloud" else dc_login(emu)
    api = f"{emu.cloud_url}/2.0" if flavor == "cloud" else f"{emu.dc_url}/rest/api/1.0"
    provider = ProviderRecord(pk=f"p-{flavor}", flavor=flavor, label="x", web_url=api, api_url=api)
    return Caller.with_token(provider, token)


def push(emu: Emulator, flavor: str, **body: Any) -> str:
    return str(control(emu, "POST", f"{flavor}/repos/{REPOS[flavor]}/push", body)["head"])


def spent(emu: Emulator, flavor: str) -> dict[str, int]:
    rows = control(emu, "GET", f"rate-limits?flavor={flavor}")["limits"]
    return {r["class"]: r["admitted"] for r in rows if r["user"] == "alice"}


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_changes_commits_files_and_listings_read_the_same_from_both_flavors(emu: Emulator, flavor: str) -> None:
    bb, code = caller(emu, flavor), code_for(flavor)
    read, api, repo = reader(bb, "test"), bb.api, REPOS[flavor]
    branch = f"code-{flavor}"
    base = push(emu, flavor, branch=branch, files={"keep.txt": "a\n", "gone.txt": "x\n", "old/name.md": "same\n"})
    head = push(
        emu,
        flavor,
        branch=branch,
        files={
            "new/added.py": "print(1)\n",
            "keep.txt": "b\n",
            "img/logo.bin": {"base64": base64.b64encode(BINARY).decode()},
        },
        delete=["gone.txt"],
        rename={"old/name.md": "new/name.md"},
        message="Four kinds of change\n\nbody text",
    )

    changes = read_changes(code, read, api, repo, Diff(head, base), max_pages=5)
    assert changes.complete
    by_path = sorted(changes.files, key=lambda f: f.path)
    assert by_path == [
        ChangedFile("gone.txt", REMOVED),
        ChangedFile("img/logo.bin", ADDED),
        ChangedFile("keep.txt", MODIFIED),
        ChangedFile("new/added.py", ADDED),
        ChangedFile("new/name.md", RENAMED, "old/name.md"),
    ]
    # One commit alone (against its parent) is the same change.
    alone = read_changes(code, read, api, repo, Diff(head), max_pages=5)
    assert sorted(alone.files, key=lambda f: f.path) == by_path

    page = code.commits_page(read, api, repo, head, base, 10)
    assert [(c.id, c.message) for c in page.items] == [(head, "Four kinds of change")]
    assert page.items[0].author is not None and page.items[0].author["name"]
    assert "@" not in str(page.items[0].author)  # never an e-mail address
    assert page.next is None

    request = code.file_request(api, repo, "img/logo.bin", branch)
    got = bb.call("GET", request.url, "test", params=request.params, resource=request.resource)
    assert got.content == BINARY and code.is_file_answer(got.headers)

    entries, truncated = list_entries(code, read, api, repo, "new", head, recursive=False, limit=100)
    assert [(e.path, e.type, e.size) for e in entries] == [("new/added.py", "file", 9), ("new/name.md", "file", 5)]
    assert not truncated
    everything, _ = list_entries(code, read, api, repo, "", head, recursive=True, limit=10_000)
    paths = [e.path for e in everything]
    assert {"img/logo.bin", "keep.txt", "new/added.py", "new/name.md"} <= set(paths)
    assert all(e.type != "directory" for e in everything) and paths == sorted(paths)
    capped, cut = list_entries(code, read, api, repo, "", head, recursive=True, limit=3)
    assert len(capped) == 3 and cut


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_pull_requests_changes_are_three_dot_from_the_merge_base(emu: Emulator, flavor: str) -> None:
    bb, code = caller(emu, flavor), code_for(flavor)
    read, api, repo = reader(bb, "test"), bb.api, REPOS[flavor]
    topic = push(emu, flavor, branch=f"topic-{flavor}", files={"topic.txt": "t\n"})
    main = push(emu, flavor, branch="main", files={f"main-{flavor}.txt": "m\n"})  # main moves on after the fork
    found = read_changes(code, read, api, repo, Diff(topic, main, three_dot=True), max_pages=5)
    assert found.files == [ChangedFile("topic.txt", ADDED)]
    assert code.default_branch(read, api, repo) == "main"
    if code.needs_commit_for(f"topic-{flavor}/x"):
        assert code.resolve(read, api, repo, f"topic-{flavor}") == topic


def test_cloud_reads_spend_their_own_classes(emu: Emulator) -> None:
    bb, code = caller(emu, "cloud"), code_for("cloud")
    read, api, repo = reader(bb, "test"), bb.api, REPOS["cloud"]
    head = push(emu, "cloud", branch="classes", files={"a.txt": "a\n"})
    before = spent(emu, "cloud")
    read_changes(code, read, api, repo, Diff(head), max_pages=1)
    code.commits_page(read, api, repo, head, None, 10)
    request = code.file_request(api, repo, "a.txt", head)
    bb.call("GET", request.url, "test", params=request.params, resource=request.resource)
    list_entries(code, read, api, repo, "", head, recursive=False, limit=10)
    after = spent(emu, "cloud")
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert grew == {"repositories": 2, "raw": 2, **{k: 0 for k in grew if k not in ("repositories", "raw")}}


def test_a_cloud_push_delivery_lists_at_most_five_commits() -> None:
    code = code_for("cloud")
    commits = [
        {"hash": f"{n:040x}", "message": f"c{n}\n", "author": {"raw": "Ann <ann@example.com>"}} for n in range(5)
    ]
    head = commits[0]["hash"]
    moved = {"new": {"type": "branch", "name": "main", "target": {"hash": head}}, "commits": commits, "truncated": True}
    payload = {"push": {"changes": [moved]}}
    listed, cut = code.payload_commits(payload, "main", head) or ([], False)
    assert cut and [c.message for c in listed] == ["c0", "c1", "c2", "c3", "c4"]
    assert listed[0].author == {"id": None, "name": "Ann", "username": None}
    assert code.payload_commits(payload, "main", "f" * 40) is None  # another move of that ref: not this one
    assert code_for("datacenter").payload_commits(payload, "main", head) is None
