"""A local stack whose parent dies stops by itself: killed test runs left stacks running for hours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO_ROOT

# A parent that starts the stack with every port ephemeral, prints the stack's pid, then waits to be killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-m", "infra.local", "--ready-file", sys.argv[1], "--no-schedules", "--no-emulator",
     "--api-port", "0", "--console-port", "0", "--aws-port", "0"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_a_stack_whose_parent_was_killed_stops_within_seconds(tmp_path):
    ready = tmp_path / "ready.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BITBRIDGE_"))}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(ready)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    stack_pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert time.monotonic() < deadline, "the stack did not start"
            time.sleep(0.2)
        parent.send_signal(signal.SIGKILL)  # as when a test run is killed: no chance to stop its stack
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(stack_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(stack_pid), "the orphaned stack is still running"
    finally:
        if _alive(stack_pid):
            os.kill(stack_pid, signal.SIGKILL)
