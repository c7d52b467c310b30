"""Imports with review depth (issue 27), end to end on the local stack and the emulator over real HTTP, both
flavors: a repository of the test's own with known review data (an inline comment and its reply, a general
comment edited, a deleted comment, an approval, changes requested, two pull requests with their commits) is
imported with every option; each entity's count and shape is checked against what the test made, every person
named anywhere is in people.jsonl once, and a resumed import under faults (dropped connections, 429s, 5xx on the
nested reads) writes byte-identical files."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import pytest
import requests

from bitbridge.client import Client, ServiceAPIError
from tests.e2e.service_support import ALL_SCOPES, add_client, connect, new_bitbucket_user
from tests.e2e.support import (
    PROVIDERS,
    api_session,
    control,
    emulator_repo,
    entity_files,
    lines,
    manifest,
    people_named,
    snapshot,
    start_imports,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLAVORS = ["cloud", "datacenter"]
OWNER = {"cloud": "acme", "datacenter": "PLAT"}
EVERYTHING = ["comments", "activity", "commits"]
NESTED = ["pull_request_comments", "pull_request_activity", "pull_request_reviews", "pull_request_commits"]


class Reviewed:
    """A repository with two pull requests and their review, made through the emulator's control API."""

    def __init__(self, stack, flavor: str) -> None:
        self.stack, self.flavor = stack, flavor
        self.owner, self.slug = OWNER[flavor], f"review-{uuid.uuid4().hex[:8]}"
        self.full_name = f"{self.owner}/{self.slug}"
        control(stack, flavor, "POST", f"{flavor}/repos", {"owner": self.owner, "slug": self.slug})
        self.push({"files": {"CHANGES.md": "one\ntwo\nthree\n"}})
        self.push({"branch": "feature/a", "files": {"CHANGES.md": "one\n2\nthree\n"}})
        self.push({"branch": "feature/a", "files": {"CHANGES.md": "2\nthree\nfour\n"}})
        self.pr = self.call("POST", "pullrequests", {"source": "feature/a", "reviewers": ["bob"]})["id"]
        self.general = self.comment({"user": "bob", "text": "Looks right overall."})
        self.inline = self.comment({"user": "carol", "text": "Why four?", "inline": {"path": "CHANGES.md", "to": 3}})
        self.reply = self.comment({"user": "alice", "text": "Because.", "parent": self.inline})
        self.old_side = self.comment({"user": "bob", "text": "Gone?", "inline": {"path": "CHANGES.md", "from": 1}})
        time.sleep(1.2)  # Cloud marks no edit: an edit is an updated_on more than a second after created_on
        self.call("PUT", f"pullrequests/{self.pr}/comments/{self.general}", {"user": "bob", "text": "Looks right."})
        self.call("DELETE", f"pullrequests/{self.pr}/comments/{self.old_side}?user=bob")
        self.call("POST", f"pullrequests/{self.pr}/approve", {"user": "bob"})
        self.call("POST", f"pullrequests/{self.pr}/request-changes", {"user": "carol"})
        self.declined = self.call("POST", "pullrequests", {"source": "feature/b"})["id"]
        self.call("POST", f"pullrequests/{self.declined}/decline", {"user": "alice"})

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return control(self.stack, self.flavor, method, f"{self.flavor}/repos/{self.owner}/{self.slug}/{path}", body)

    def push(self, body: dict[str, Any]) -> None:
        self.call("POST", "push", body)

    def comment(self, body: dict[str, Any]) -> int:
        return int(self.call("POST", f"pullrequests/{self.pr}/comments", body)["id"])

    def nested_path(self, read: str) -> str:
        """Where the emulator serves one nested read of the reviewed pull request (for fault rules)."""
        if self.flavor == "cloud":
            return f"/2.0/repositories/{self.full_name}/pullrequests/{self.pr}/{read}"
        read = "activities" if read in ("comments", "activity") else read
        return f"/rest/api/1.0/projects/{self.owner}/repos/{self.slug}/pull-requests/{self.pr}/{read}"


def _import(stack, flavor: str, name: str, **body: Any) -> dict[str, Any]:
    session = api_session(stack, flavor, "alice")
    started = start_imports(session, stack, flavor, [name], **body)[0]
    done = wait_for(session, stack, [started["id"]], timeout=120)[started["id"]]
    assert done["state"] == "completed", done
    return done


@pytest.fixture(scope="module")
def reviewed(stack) -> dict[str, Reviewed]:
    return {flavor: Reviewed(stack, flavor) for flavor in FLAVORS}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_option_writes_the_review_with_exact_counts_and_one_record_per_person(stack, reviewed, flavor):
    repo = reviewed[flavor]
    done = _import(stack, flavor, repo.full_name, include=EVERYTHING)
    files = snapshot(stack, done["snapshot"]["prefix"])
    man = manifest(files)
    assert {part: man["options"][part] for part in EVERYTHING} == dict.fromkeys(EVERYTHING, True)
    assert set(NESTED) | {"people"} <= set(man["entities"])
    for entry in man["files"]:  # checksums are the files'
        assert hashlib.sha256(files[entry["key"]]).hexdigest() == entry["sha256"]
        if entry["key"].endswith(".jsonl"):  # records; the rest (repository.json, the git bundle) is one whole
            assert entry["count"] == len(files[entry["key"]].decode().splitlines())

    comments = {c["id"]: c for c in lines(files, "pull_request_comments")}
    # Cloud keeps a deleted comment, marked; Data Center removes it.
    kept = [repo.general, repo.inline, repo.reply] + ([repo.old_side] if flavor == "cloud" else [])
    assert sorted(comments) == sorted(kept) and man["counts"]["pull_request_comments"] == len(kept)
    assert all(c["pull_request_id"] == repo.pr for c in comments.values())
    inline = comments[repo.inline]["inline"]
    assert (inline["path"], inline["line"], inline["side"]) == ("CHANGES.md", 3, "new")
    assert comments[repo.reply]["parent_id"] == repo.inline and comments[repo.inline]["parent_id"] is None
    assert comments[repo.general]["text"] == "Looks right." and comments[repo.general]["edited"] is True
    assert comments[repo.inline]["edited"] is False
    if flavor == "cloud":
        assert comments[repo.old_side]["deleted"] is True
        assert (comments[repo.old_side]["inline"]["line"], comments[repo.old_side]["inline"]["side"]) == (1, "old")
    else:
        assert inline["commit"] and inline["outdated"] is False  # written on the source's head, which it still is

    people = [json.loads(line) for line in files["people.jsonl"].decode().splitlines()]
    ids = [p["id"] for p in people]
    assert len(ids) == len(set(ids)) and man["counts"]["people"] == len(ids)
    by_name = {p["nickname"] if flavor == "cloud" else p["slug"]: p["id"] for p in people}
    assert {"alice", "bob", "carol"} <= set(by_name)
    assert comments[repo.inline]["author"] == by_name["carol"] and comments[repo.reply]["author"] == by_name["alice"]

    reviews = {(r["pull_request_id"], r["person"]): r for r in lines(files, "pull_request_reviews")}
    assert reviews[(repo.pr, by_name["bob"])]["status"] == "APPROVED"
    assert reviews[(repo.pr, by_name["bob"])]["role"] == "reviewer"
    assert reviews[(repo.pr, by_name["carol"])]["status"] == "CHANGES_REQUESTED"
    assert reviews[(repo.pr, by_name["carol"])]["role"] == "participant"
    assert len(reviews) == man["counts"]["pull_request_reviews"] == 2  # nobody else reviewed either

    commits = lines(files, "pull_request_commits")
    assert sorted((c["pull_request_id"]) for c in commits) == sorted([repo.pr, repo.pr, repo.declined])
    assert all(len(c["id"]) == 40 and c["date"] for c in commits)

    activity = [a for a in lines(files, "pull_request_activity") if a["pull_request_id"] == repo.pr]
    kinds = [a["kind"] for a in activity]
    assert {"opened", "approved", "changes_requested"} <= set(kinds), kinds
    commented = {a["comment_id"] for a in activity if a["kind"] == "commented"}
    # Cloud logs each comment (replies and the deleted one too); Data Center logs each thread once.
    logged = (
        [repo.general, repo.inline, repo.reply, repo.old_side] if flavor == "cloud" else [repo.general, repo.inline]
    )
    assert commented == set(logged)
    declined = [a["kind"] for a in lines(files, "pull_request_activity") if a["pull_request_id"] == repo.declined]
    assert "declined" in declined

    # Every person any entity names is in people.jsonl, exactly once.
    named: set[str] = set()
    for key, body in files.items():
        if key.endswith(".jsonl") and key != "people.jsonl":
            named |= people_named(flavor, [json.loads(line) for line in body.decode().splitlines()])
    assert named - {None} <= set(ids), named - set(ids)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_resumed_import_under_faults_writes_the_same_bytes(stack, reviewed, flavor):
    repo = reviewed[flavor]
    clean = _import(stack, flavor, repo.full_name, include=EVERYTHING, reimport=True)
    rules = [
        {"drop_connection": True, "count": 4, "path_prefix": repo.nested_path("comments")},
        {"status": 429, "retry_after": 1, "count": 2, "path_prefix": repo.nested_path("commits")},
        {"status": 503, "count": 4, "path_prefix": repo.nested_path("activity")},
    ]
    for rule in rules:
        control(stack, flavor, "POST", "faults", {"flavor": flavor, **rule})
    try:
        resumed = _import(stack, flavor, repo.full_name, include=EVERYTHING, reimport=True)
        fired = control(stack, flavor, "GET", "faults")
    finally:
        control(stack, flavor, "DELETE", "faults")
    rules_seen = fired if isinstance(fired, list) else fired["faults"]
    assert all(rule["fired"] >= 1 for rule in rules_seen), rules_seen
    assert resumed["id"] != clean["id"]
    assert entity_files(snapshot(stack, resumed["snapshot"]["prefix"])) == entity_files(
        snapshot(stack, clean["snapshot"]["prefix"])
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_default_seeds_review_imports_with_exact_counts(stack, flavor):
    name = {"cloud": "acme/web-app", "datacenter": "PLAT/core"}[flavor]
    done = _import(stack, flavor, name, include=["comments", "activity"], reimport=True)
    files = snapshot(stack, done["snapshot"]["prefix"])
    counts = manifest(files)["counts"]
    expected = emulator_repo(stack, flavor, name)
    assert counts["pull_request_comments"] == len(lines(files, "pull_request_comments"))
    assert counts["pull_request_comments"] == expected["pull_request_comments"] > 0
    assert counts["pull_request_reviews"] == len(lines(files, "pull_request_reviews"))
    assert counts["pull_request_reviews"] == expected["pull_request_reviews"] > 0
    assert "pull_request_commits" not in counts  # only what was asked
    if flavor == "cloud":
        assert counts["issue_comments"] == len(lines(files, "issue_comments"))
        assert counts["issue_comments"] == expected["issue_comments"] > 0
        assert {c["issue_id"] for c in lines(files, "issue_comments")} <= {i["id"] for i in lines(files, "issues")}
    else:
        assert "issue_comments" not in counts


def test_without_include_an_import_is_as_before(stack, reviewed):
    done = _import(stack, "cloud", reviewed["cloud"].full_name, reimport=True)
    files = snapshot(stack, done["snapshot"]["prefix"])
    man = manifest(files)
    assert not [k for k in files if k.split("/")[0] in NESTED or k.startswith("issue_comments/")]
    assert man["options"]["comments"] is False and not set(NESTED) & set(man["counts"])
    assert "people.jsonl" in files  # the people the pull requests name, even so


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"include": ["comments", "reactions"]}, "'reactions'"),
        ({"include": "comments"}, "must be a list of names"),
        ({"comments": True}, '"include": ["comments"]'),
    ],
)
def test_unknown_options_are_a_400_naming_them_on_both_apis(stack, body, says):
    session = api_session(stack, "cloud", "alice")
    response = session.post(
        f"{stack.api}/api/imports",
        json={"provider": PROVIDERS["cloud"], "repositories": ["acme/infra"], **body},
        timeout=30,
    )
    assert response.status_code == 400 and says in response.json()["error"]["message"], response.text

    _, key = add_client(stack, ALL_SCOPES)
    bb = Client(stack.api, key)
    name = new_bitbucket_user(stack)
    control(stack, "cloud", "PUT", "cloud/repos/acme/infra/permissions", {name: "read"})
    connect(stack, bb, "cloud", f"eu-{name}", name)
    url = f"{stack.api}/service/v1/imports"
    payload = {"provider": PROVIDERS["cloud"], "end_user_id": f"eu-{name}", "repositories": ["acme/infra"], **body}
    answer = requests.post(url, json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 400 and says in answer.json()["error"]["message"], answer.text
    with pytest.raises(ServiceAPIError) as refused:
        bb.imports.start(PROVIDERS["cloud"], f"eu-{name}", ["acme/infra"], include=["comments", "tasks"])
    assert refused.value.status == 400 and "'tasks'" in refused.value.message
