"""docs/service-api.md's example runs as written against the local stack: the `bitbridge clients add`
command and the variables the page says to export, the Python example (a subprocess, as a reader would run
it) on a stack whose ports are not the defaults, the EventBridge bus, pattern and handler."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests
from moto.events.models import EventPattern

from tests.conftest import REPO_ROOT
from tests.e2e.service_support import follow_connect_url, wait_for_event
from tests.e2e.support import cli, control, emulator

DOC = REPO_ROOT / "docs" / "service-api.md"
DEFAULT_API = "http://127.0.0.1:3000"  # `make dev`'s api URL, which the page tells readers to export


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def _setup_lines() -> list[str]:
    return _blocks("bash")[0].split("\n")


def _clients_add_args() -> list[str]:
    command = [line for line in _setup_lines() if not line.startswith("export")]
    args = shlex.split(" ".join(part.rstrip("\\").strip() for part in command))
    assert args[:3] == [".venv/bin/bitbridge", "clients", "add"], args
    return args[1:]


def _exports() -> dict[str, str]:
    """NAME -> value of each `export NAME=value  # comment` line of the setup block."""
    found = (re.match(r"export (\w+)=(\S+)", line) for line in _setup_lines())
    return {m.group(1): m.group(2) for m in found if m}


def _run(script: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=script.parent,
        env={"PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_documented_example_runs_as_written(stack, tmp_path: Path):
    # Not make dev's ports: what the reader must change is only what the page says to export.
    assert urlsplit(stack.api).port != urlsplit(DEFAULT_API).port
    exports = _exports()
    assert exports.get("BITBRIDGE_URL") == DEFAULT_API and "BITBRIDGE_KEY" in exports, exports
    added = cli(stack, *_clients_add_args())
    assert added.returncode == 0, added.stderr
    key = re.search(r"^\s+(bbk_[0-9a-f]{16}\.\S+)$", added.stdout, re.M)
    assert key, added.stdout
    example, handler = _blocks("python")[0], _blocks("python")[1]
    script = tmp_path / "example.py"
    script.write_text(example)

    # Without BITBRIDGE_URL it stops at once, naming the variable (it never guesses a stack).
    missing = _run(script, {"BITBRIDGE_KEY": key.group(1)})
    _, err = missing.communicate(timeout=30)
    assert missing.returncode != 0 and "BITBRIDGE_URL" in err, err

    process = _run(script, {"BITBRIDGE_URL": stack.api, "BITBRIDGE_KEY": key.group(1)})
    try:
        assert process.stdout is not None
        calling = process.stdout.readline()
        failed = process.stderr.read() if process.poll() else ""
        assert calling == f"Calling bitbridge at {stack.api}\n", calling + failed
        first = process.stdout.readline()
        assert first.startswith("Send your user to: "), first + (process.stderr.read() if process.poll() else "")
        # The end user: open the URL, pick alice, grant; bitbridge sends them back to the product, as the
        # page warns (nothing serves that URL in the example).
        landed = follow_connect_url(first.split(": ", 1)[1].strip(), "alice")
        assert landed.headers["Location"] == "http://localhost:8000/connected"
        assert "http://localhost:8000/connected" in DOC.read_text().split("After *Grant*", 1)[1][:300]
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.startswith("connected as alice\ntoken for alice expires at ")
    printed = {int(n): state for n, state in re.findall(r"^pull request #(\d+) \((\w+)\): ", out, re.M)}

    # "Every page of the pull requests": every state, as Bitbucket itself lists them when asked for each.
    everything = requests.get(
        f"{emulator(stack, 'cloud')}/2.0/repositories/acme/web-app/pullrequests",
        params={"pagelen": 50, "state": ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"]},
        headers={"Authorization": "Bearer " + _token(stack, key.group(1))},
        timeout=10,
    ).json()
    assert everything.get("next") is None  # one page of 50 holds them all
    assert printed == {pr["id"]: pr["state"] for pr in everything["values"]}
    assert {"OPEN", "MERGED", "DECLINED"} <= set(printed.values()) and len(printed) > 10  # more than one page
    assert f"{len(printed)} pull requests" in DOC.read_text()  # as many as the page says the reader sees

    # The bus the page names is the stack's.
    bus = requests.get(f"{stack.urls['console']}/env", timeout=5).json()["BITBRIDGE_EVENT_BUS_NAME"]
    assert f"`{bus}` under `make dev`" in DOC.read_text()

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

    # "Report back", with the same client and end user, run twice as a CI would on two builds.
    report = tmp_path / "report_back.py"
    report.write_text(_report_back_block())
    for run in (1, 2):
        ci = _run(report, {"BITBRIDGE_URL": stack.api, "BITBRIDGE_KEY": key.group(1)})
        out, err = ci.communicate(timeout=60)
        assert ci.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == "status ci/unit-tests successful", out
        number, comment = re.fullmatch(r"summary comment (\d+) on pull request #(\d+)", lines[1]).group(2, 1)
        if run == 1:
            first_comment = comment
    assert comment == first_comment  # the second build edited the same comment
    pr = control(stack, "cloud", "GET", f"cloud/repos/acme/web-app/pullrequests/{number}")
    summaries = [c for c in pr["comments"] if "(bitbridge:ci-summary 1/1)" in c["text"] and not c["deleted"]]
    assert [c["id"] for c in summaries] == [int(comment)]
    assert summaries[0]["text"].endswith("[Build 42](https://ci.example.com/builds/42)")
    source = requests.get(
        f"{emulator(stack, 'cloud')}/2.0/repositories/acme/web-app/pullrequests/{number}",
        headers={"Authorization": "Bearer " + _token(stack, key.group(1))},
        timeout=10,
    ).json()["source"]["commit"]["hash"]
    statuses = control(stack, "cloud", "GET", f"cloud/repos/acme/web-app/statuses/{source}")["statuses"]
    assert [(s["key"], s["state"], s["url"]) for s in statuses] == [
        ("ci/unit-tests", "SUCCESSFUL", "https://ci.example.com/builds/42")
    ]


def _report_back_block() -> str:
    section = DOC.read_text().split("\n## Report back\n", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


def _token(stack, key: str) -> str:
    from bitbridge.client import Client

    return Client(stack.api, key).token("bitbucket-cloud", "user-42").access_token


def test_docs_and_readme_point_at_each_other():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "docs/service-api.md" in readme
    assert "bitbridge.client" in readme


def _read_the_code_block() -> str:
    section = DOC.read_text().split("## Read the code", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_read_the_code_runs_as_written(stack, tmp_path: Path):
    """The "Read the code" example, as a reader runs it after the first one: a client with the documented
    scopes, end user user-42 connected as alice; what it prints is what Bitbucket holds."""
    from bitbridge.client import Client
    from tests.e2e.service_support import add_client, connect

    scopes = _clients_add_args()[_clients_add_args().index("--scopes") + 1]
    assert "files:read" in scopes.split(",")
    _, key = add_client(stack, scopes=scopes)
    connect(stack, Client(stack.api, key), "cloud", "user-42", "alice")
    script = tmp_path / "read_the_code.py"
    script.write_text(_read_the_code_block())
    process = _run(script, {"BITBRIDGE_URL": stack.api, "BITBRIDGE_KEY": key})
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err

    api = f"{emulator(stack, 'cloud')}/2.0/repositories/acme/web-app"
    auth = {"Authorization": "Bearer " + Client(stack.api, key).token("bitbucket-cloud", "user-42").access_token}
    root = requests.get(f"{api}/src/main/", params={"pagelen": 100}, headers=auth, timeout=10).json()["values"]
    kinds = {"commit_file": "file", "commit_directory": "directory"}
    listed = [line.split() for line in out.splitlines() if line.startswith(("file ", "directory "))]
    assert sorted((k, p) for k, p in listed) == sorted((kinds[e["type"]], e["path"]) for e in root)
    readme = requests.get(f"{api}/src/v1.0.1/README.md", headers=auth, timeout=10).content
    assert f"README.md at v1.0.1: {len(readme)} bytes of text/markdown\n" in out
    assert readme.decode().splitlines()[0] + "\n" in out
    diffstat = requests.get(f"{api}/diffstat/main..v1.0.1", params={"pagelen": 5000}, headers=auth, timeout=10).json()
    assert f"{len(diffstat['values'])} files changed since v1.0.1, e.g.:" in out
    clone = re.search(r"^git clone (http\S+) # TOKEN: token.access_token$", out, re.M)
    assert clone and clone.group(1).startswith("http") and "x-token-auth:$TOKEN@" in clone.group(1)
