"""An import that meets more people than its job item holds (issue 27: past PEOPLE_ON_JOB the people move to
chunk items), end to end on a stack of its own (its emulator has 230 more users, which would change who authors
what in the shared stack's seeds), both flavors: people.jsonl lists every person any page names, exactly once."""

from __future__ import annotations

import json

import pytest

from bitbridge.store.imports import PEOPLE_ON_JOB
from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.support import api_session, control, people_named, snapshot, start_imports, wait_for

pytestmark = pytest.mark.e2e

PEOPLE = 230  # past PEOPLE_ON_JOB: the job's people move to a chunk item on the way
REPO = {"slug": "crowd", "branches": 1, "tags": 0, "pull_requests": {"OPEN": PEOPLE}, "review": False}
SEED = {
    "users": [{"name": f"person{n:03d}", "display_name": f"Person {n:03d}"} for n in range(PEOPLE)],
    "cloud": {
        "workspaces": [{"slug": "crowdws", "name": "Crowd", "members": {"alice": "owner"}, "repositories": [REPO]}]
    },
    "datacenter": {
        "projects": [{"key": "CROWD", "name": "Crowd", "permissions": {"alice": "admin"}, "repositories": [REPO]}]
    },
}
NAME = {"cloud": "crowdws/crowd", "datacenter": "CROWD/crowd"}


@pytest.fixture(scope="module")
def crowd_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("crowd"))
    try:
        control(stack, "cloud", "POST", "seed", SEED)  # each pull request by a user of its own, in turn
        yield stack
    finally:
        stop_stack(stack)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_more_people_than_the_job_holds_are_each_in_people_jsonl_once(crowd_stack, flavor):
    session = api_session(crowd_stack, flavor, "alice")
    started = start_imports(session, crowd_stack, flavor, [NAME[flavor]], exclude=["git"])[0]
    done = wait_for(session, crowd_stack, [started["id"]], timeout=180)[started["id"]]
    assert done["state"] == "completed", done
    files = snapshot(crowd_stack, done["snapshot"]["prefix"])
    people = [json.loads(line) for line in files["people.jsonl"].decode().splitlines()]
    ids = [p["id"] for p in people]
    assert len(ids) == len(set(ids)) > PEOPLE_ON_JOB  # each once, and more than the job item holds
    named: set[str] = set()
    for key, body in files.items():
        if key.endswith(".jsonl") and key != "people.jsonl":
            named |= people_named(flavor, [json.loads(line) for line in body.decode().splitlines()])
    assert named == set(ids)  # everyone a page names, and nobody else
    assert json.loads(files["manifest.json"])["counts"]["people"] == len(ids)
