"""A worker running out of Lambda time saves its place and re-enqueues itself; the resumed import's
output is byte for byte a clean run's. Poison messages end in the dead-letter queue. Its own stack: the
worker's Timeout and the queue's visibility timeout are overridden (test only)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from bitbridge.imports.worker import SAFETY_MS
from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.support import api_session, control, entity_files, lines, snapshot, start_imports, wait_for

pytestmark = pytest.mark.e2e
WORKER_TIMEOUT_SECONDS = 20
assert WORKER_TIMEOUT_SECONDS * 1000 < SAFETY_MS, "each invocation must stop after one page"

SEED = {
    "cloud": {
        "workspaces": [
            {
                "slug": "timews",
                "name": "timews",
                "members": {"alice": "owner"},
                "repositories": [{"slug": "slow", "branches": 3, "tags": 1, "pull_requests": 180, "issues": 0}],
            }
        ]
    }
}


@pytest.fixture(scope="module")
def short_stack(tmp_path_factory):
    # Under the worker's safety margin (SAFETY_MS, 25 s) from the start: every invocation does one page,
    # saves, and continues in a new message - the path a long import takes near the real 300 s limit. The
    # local stack enforces Timeout, so a page that outlasts it is abandoned, and its message waits out the
    # lease before the job resumes: 20 s (not less) so that a loaded machine's slow page is not.
    # A 1 s visibility timeout lets poison messages be redelivered (and dead-lettered) within the test.
    running = start_stack(
        tmp_path_factory.mktemp("short"),
        "--override",
        f"ImportWorkerFunction.Timeout={WORKER_TIMEOUT_SECONDS}",
        "--override",
        "ImportQueue.VisibilityTimeout=1",
    )
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def clean_stack(tmp_path_factory):
    # A fresh stack for the clean run too: the shared one's emulator holds whatever users other test
    # files seeded, and pull-request authors are drawn from them.
    running = start_stack(tmp_path_factory.mktemp("clean"))
    yield running
    stop_stack(running)


_TIMESTAMP = re.compile(rb'"\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)"')


def _normalised(stack, files: dict[str, bytes]) -> dict[str, bytes]:
    """The two stacks' emulators serve the same seed at a different port, and date it by how many
    repositories were seeded before it: replace those two, compare everything else byte for byte.
    (test_imports.py compares a resumed import with a clean one on one emulator without any of this.)
    The git data is left out: its objects hash those dates (tests/e2e/test_git_data.py checks it on its own)."""
    host = stack.urls["bitbucket_cloud"].encode()
    entities = {k: v for k, v in entity_files(files).items() if not k.startswith("git/")}
    return {k: _TIMESTAMP.sub(b'"T"', v.replace(host, b"EMULATOR")) for k, v in entities.items()}


def test_time_limit_continues_in_new_invocations_with_a_clean_runs_output(clean_stack, short_stack):
    snapshots = []
    for target in (clean_stack, short_stack):
        control(target, "cloud", "POST", "seed", SEED)
        session = api_session(target, "cloud", "alice")
        job = start_imports(session, target, "cloud", ["timews/slow"])[0]
        done = wait_for(session, target, [job["id"]], timeout=180)[job["id"]]
        assert done["state"] == "completed", done
        snapshots.append((done, snapshot(target, done["snapshot"]["prefix"])))
    (clean, clean_files), (resumed, resumed_files) = snapshots
    assert clean["continuations"] == 0
    # repository, 1 branch page, 1 tag page, 4 pull request pages, webhook, manifest: one unit each.
    assert resumed["continuations"] >= 6
    assert len(lines(resumed_files, "pull_requests")) == 180
    assert _normalised(short_stack, resumed_files) == _normalised(clean_stack, clean_files)


def test_poison_message_reaches_the_dead_letter_queue(short_stack):
    env = requests.get(f"{short_stack.urls['console']}/env", timeout=5).json()
    sqs = short_stack.aws("sqs")
    dlq = sqs.get_queue_url(QueueName="bitbridge-local-ImportDeadLetterQueue")["QueueUrl"]
    sqs.send_message(QueueUrl=env["BITBRIDGE_IMPORT_QUEUE_URL"], MessageBody="this is not an import")
    deadline = time.monotonic() + 30
    others = []  # an import another test left behind is not this test's business
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", [])
        if any(m["Body"] == "this is not an import" for m in messages):
            return
        others += [m["Body"] for m in messages]
    raise AssertionError(f"the poison message never reached the dead-letter queue (it holds {others})")
