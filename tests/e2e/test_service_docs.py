"""docs/service-api.md's example runs as written against the local stack: the `bitbridge clients add`
command, the Python example (a subprocess, as a reader would run it), the EventBridge pattern and handler."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import requests
from moto.events.models import EventPattern

from tests.conftest import REPO_ROOT
from tests.e2e.service_support import follow_connect_url, wait_for_event
from tests.e2e.support import cli, emulator

DOC = REPO_ROOT / "docs" / "service-api.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def _clients_add_args() -> list[str]:
    command = _blocks("bash")[0].split("\n")
    line = " ".join(part.rstrip("\\").strip() for part in command if not part.startswith("export"))
    args = shlex.split(line)
    assert args[:3] == [".venv/bin/bitbridge", "clients", "add"], args
    return args[1:]


def test_the_documented_example_runs_as_written(stack, tmp_path: Path):
    added = cli(stack, *_clients_add_args())
    assert added.returncode == 0, added.stderr
    key = re.search(r"^\s+(bbk_[0-9a-f]{16}\.\S+)$", added.stdout, re.M)
    assert key, added.stdout
    example, handler = _blocks("python")[0], _blocks("python")[1]
    script = tmp_path / "example.py"
    script.write_text(example)
    env = {"PATH": "/usr/bin:/bin", "BITBRIDGE_URL": stack.api, "BITBRIDGE_KEY": key.group(1)}
    process = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Send your user to: "), first + (process.stderr.read() if process.poll() else "")
        # The end user: open the URL, pick alice, grant; bitbridge sends them back to the product.
        landed = follow_connect_url(first.split(": ", 1)[1].strip(), "alice")
        assert landed.headers["Location"] == "http://localhost:8000/connected"
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.startswith("connected as alice\ntoken for alice expires at ")
    titles = re.findall(r"^pull request #(\d+): ", out, re.M)

    direct = requests.get(
        f"{emulator(stack, 'cloud')}/2.0/repositories/acme/web-app/pullrequests",
        params={"pagelen": 50},
        headers={"Authorization": "Bearer " + _token(stack, key.group(1))},
        timeout=10,
    ).json()
    assert sorted(int(t) for t in titles) == sorted(pr["id"] for pr in direct["values"])
    assert len(titles) > 10  # more than one page of 10

    # The EventBridge rule pattern matches the event that really arrived, and the handler reads it.
    event = wait_for_event(stack, "connection.created", {"client_id": "my-product", "end_user_id": "user-42"})
    pattern = _blocks("json")[0]
    envelope = {
        "id": event.get("id", "1"),
        "source": event["source"],
        "detail-type": event["detail-type"],
        "detail": event["detail"],
        "account": event.get("account", "123456789012"),
        "region": event.get("region", "us-east-1"),
        "time": event.get("time", "2026-01-01T00:00:00Z"),
        "resources": event.get("resources", []),
    }
    # moto's EventBridge matcher (its server does not implement TestEventPattern).
    matcher = EventPattern.load(pattern)
    assert matcher.matches_event(envelope)
    assert not matcher.matches_event(dict(envelope, detail={**envelope["detail"], "client_id": "someone-else"}))
    namespace: dict = {}
    exec(compile(handler, "docs/service-api.md", "exec"), namespace)  # the doc's own code
    namespace["on_connection_created"](event, None)


def _token(stack, key: str) -> str:
    from bitbridge.client import Client

    return Client(stack.api, key).token("bitbucket-cloud", "user-42").access_token


def test_docs_and_readme_point_at_each_other():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "docs/service-api.md" in readme
    assert "bitbridge.client" in readme
