"""End-to-end: the local stack exactly as `make dev` runs it, in a subprocess, over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import REPO_ROOT


@dataclass
class RunningStack:
    process: subprocess.Popen
    urls: dict[str, str]
    log_path: Path

    @property
    def api(self) -> str:
        return self.urls["api"]

    def aws(self, service: str):
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.urls["aws"])

    def events(self, since: int = 0) -> tuple[list[dict], int]:
        page = requests.get(f"{self.urls['console']}/events", params={"since": since}, timeout=5).json()
        return page["events"], page["next"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_stack(tmp_dir: Path, *extra_args: str, timeout: float = 60.0) -> RunningStack:
    ready = tmp_dir / "ready.json"
    log_path = tmp_dir / "stack.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BITBRIDGE_"))}
    # Every port ephemeral, so test runs never collide with each other or with `make dev`.
    args = [
        sys.executable,
        "-m",
        "infra.local",
        "--ready-file",
        str(ready),
        "--api-port",
        "0",
        "--console-port",
        "0",
        "--aws-port",
        "0",
        "--cloud-port",
        "0",
        "--dc-port",
        "0",
        # Tests reconcile by hand (`bitbridge reconcile`); a scheduled run racing them would make counts vary.
        "--no-schedules",
        *extra_args,
    ]
    log_file = log_path.open("w")
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while (urls := _ready_urls(ready)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"local stack did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return RunningStack(process, urls, log_path)


def _ready_urls(ready: Path) -> dict[str, str] | None:
    """The stack's URLs once its ready file is complete: the stack creates the file, then writes it, and a
    loaded machine can show the file in between (empty or half written)."""
    try:
        return dict(json.loads(ready.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def stop_stack(stack: RunningStack) -> int:
    stack.process.send_signal(signal.SIGINT)
    try:
        return stack.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        return -9


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def stack(shared_stack: RunningStack) -> RunningStack:
    """The worker's stack, shared by its modules, with a fresh hour of Bitbucket's limits for each: a person's
    allowance is hourly and the suite is shorter than an hour, so what earlier modules on the same worker spent
    as alice (which ones depends on how files fall to workers) would otherwise be this module's to inherit."""
    from tests.e2e.support import control, forget_budgets

    forget_budgets(shared_stack)
    control(shared_stack, "cloud", "DELETE", "rate-limits")  # one backend counts both flavors
    return shared_stack
