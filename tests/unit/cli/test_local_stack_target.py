"""The CLI and `python -m infra.local tail` act on the local stack the admin means, say which, and refuse
to guess - for every command, read-only ones too - when several answer. Fake local helpers stand in for
running stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bitbridge import cli
from bitbridge.cli import local
from tests.conftest import REPO_ROOT


class _Console(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        stack = self.server.stack  # type: ignore[attr-defined]
        time.sleep(stack.get("busy_seconds", 0))
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/":
            body = {"api": stack["api"], "console": stack["console"], "events": stack["console"] + "/events"}
        elif self.path == "/env":
            body = {"BITBRIDGE_STAGE": stack["stage"], "BITBRIDGE_PROVIDERS_TABLE": f"providers-{stack['stage']}"}
        elif self.path.startswith("/events"):
            body = {"events": [], "next": 0}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def consoles(tmp_path, monkeypatch) -> Iterator[list[ThreadingHTTPServer]]:
    servers = []
    for stage in ("alpha", "beta"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Console)
        url = f"http://127.0.0.1:{server.server_port}"
        server.stack = {"console": url, "api": f"http://127.0.0.1:{server.server_port + 1}", "stage": stage}
        server.hits = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    monkeypatch.setattr(local, "READY_DIR", tmp_path)
    variables = [name for names in local.PORT_VARIABLES.values() for name in names]
    for name in ("BITBRIDGE_LOCAL_HOST", "BITBRIDGE_PROVIDERS_TABLE", *variables):
        monkeypatch.delenv(name, raising=False)
    yield servers
    for server in servers:
        server.shutdown()


def _announce(server: ThreadingHTTPServer) -> None:
    local.ready_file(server.server_port).write_text(json.dumps(server.stack))


def _configured(args: list[str]) -> dict[str, str]:
    """The environment `bitbridge ARGS` configures (the test's own is restored)."""
    saved = dict(os.environ)
    try:
        cli.configure(cli.build_parser().parse_args(args))
        return dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_stacks_own_variables_pick_the_stack_and_it_is_named_on_stderr(consoles, monkeypatch, capsys):
    alpha, beta = consoles
    _announce(alpha)
    monkeypatch.setenv("BITBRIDGE_LOCAL_HELPER_PORT", str(beta.server_port))
    assert _configured(["providers", "list"])["BITBRIDGE_PROVIDERS_TABLE"] == "providers-beta"
    assert "/env" in beta.hits and "/env" not in alpha.hits
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"bitbridge: local stack: api {beta.stack['api']}, helper {beta.stack['console']}, stage beta"]


def test_the_old_helper_variable_still_works_for_one_release_and_says_so(consoles, monkeypatch, capsys):
    alpha, beta = consoles
    _announce(alpha)
    monkeypatch.setenv("BITBRIDGE_LOCAL_CONSOLE_PORT", str(beta.server_port))
    assert _configured(["hooks", "list"])["BITBRIDGE_PROVIDERS_TABLE"] == "providers-beta"
    err = capsys.readouterr().err
    assert "BITBRIDGE_LOCAL_CONSOLE_PORT is deprecated: set BITBRIDGE_LOCAL_HELPER_PORT instead" in err


# Read-only and changing commands alike: with two stacks answering, none may pick one.
EVERY_KIND = [
    ["providers", "list"],
    ["providers", "show", "x"],
    ["hooks", "list"],
    ["imports", "list"],
    ["clients", "list"],
    ["audit", "--client", "x"],
    ["events", "tail", "--once"],
    ["reconcile"],
    ["providers", "remove", "x", "--yes"],
    ["hooks", "remove", "sub-1"],
]


@pytest.mark.parametrize("command", EVERY_KIND, ids=" ".join)
def test_every_command_refuses_to_guess_when_several_stacks_answer(consoles, capsys, command):
    for server in consoles:
        _announce(server)
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "local stacks answer" in err and "--local URL" in err
    assert all(server.stack["console"] in err and server.stack["api"] in err for server in consoles)
    assert not any("/env" in server.hits for server in consoles)  # nothing was even configured


def test_an_explicit_target_is_never_ambiguous(consoles):
    for server in consoles:
        _announce(server)
    _, beta = consoles
    assert local.find(beta.stack["console"])[0] == beta.stack["console"]
    assert _configured(["--local", beta.stack["console"], "providers", "list"])["BITBRIDGE_PROVIDERS_TABLE"] == (
        "providers-beta"
    )


def test_another_port_variable_picks_the_stack_that_has_that_port(consoles, monkeypatch):
    for server in consoles:
        _announce(server)
    _, beta = consoles
    monkeypatch.setenv("BITBRIDGE_LOCAL_API_PORT", beta.stack["api"].rsplit(":", 1)[1])
    assert local.find(None)[0] == beta.stack["console"]
    monkeypatch.setenv("BITBRIDGE_LOCAL_API_PORT", "1")
    with pytest.raises(local.NoLocalStack, match="BITBRIDGE_LOCAL_API_PORT=1"):
        local.find(None)


def test_one_announced_stack_is_found_without_any_setting(consoles):
    alpha, _ = consoles
    _announce(alpha)
    try:
        local.find(None)
    except local.AmbiguousLocalStack:
        pytest.skip("another local stack answers on the default helper port :3001 on this machine")
    assert local.find(None)[0] == alpha.stack["console"]


def test_tail_refuses_to_guess_too(consoles, tmp_path):
    for server in consoles:
        _announce(server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITBRIDGE_LOCAL_")}
    env["BITBRIDGE_LOCAL_READY_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "infra.local", "tail"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("tail: ") and "local stacks answer" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_tail_follows_the_variables_and_names_the_stack(consoles, tmp_path):
    _, beta = consoles
    env = {
        **os.environ,
        "BITBRIDGE_LOCAL_HELPER_PORT": str(beta.server_port),
        "BITBRIDGE_LOCAL_READY_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "tail"], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        first = process.stderr.readline()
    finally:
        process.kill()
        process.wait()
    assert first.strip() == f"tail: local stack: api {beta.stack['api']}, helper {beta.stack['console']}, stage beta"


def test_a_busy_stack_whose_console_answers_slowly_is_still_found(consoles):
    # A stack importing a large repository answers its console late on a loaded machine: a CLI command
    # run then must act on it, not say that no stack answers.
    alpha, _ = consoles
    alpha.stack["busy_seconds"] = 3
    console, urls = local.find(alpha.stack["console"])
    assert console == alpha.stack["console"] and urls["api"] == alpha.stack["api"]
