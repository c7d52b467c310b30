"""`make dev`'s stack boots from nothing, serves /health over HTTP and stops cleanly; a taken port ends it at
once with what to do; Ctrl-C and SIGTERM end it within seconds, whatever it is doing; its state survives a
restart (and `make dev-reset` clears it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from bitbridge.client import Client, ServiceAPIError, Unauthenticated
from infra.local import ports
from infra.local.__main__ import STOP_SECONDS
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import start_stack, stop_stack
from tests.e2e.service_support import add_client
from tests.e2e.support import api_session, control, start_imports, user_id, wait_for


def test_health_reports_ready_through_the_real_handler(stack):
    response = requests.get(f"{stack.api}/health", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["stage"] == "local"
    assert body["checks"]["dynamodb"]["ok"] is True


def test_only_template_routes_are_served(stack):
    assert requests.get(f"{stack.api}/nope", timeout=5).status_code == 404
    assert requests.delete(f"{stack.api}/health", timeout=5).status_code == 404


def test_stack_tables_are_the_templates(stack):
    names = stack.aws("dynamodb").list_tables()["TableNames"]
    assert "bitbridge-local-DeliveriesTable" in names
    assert "bitbridge-local-ProvidersTable" in names


def test_health_is_503_when_dynamodb_is_unreachable(tmp_path):
    running = start_stack(tmp_path)
    try:
        running.aws("dynamodb").delete_table(TableName="bitbridge-local-ProvidersTable")
        response = requests.get(f"{running.api}/health", timeout=10)
        assert response.status_code == 503
        assert response.json()["checks"]["dynamodb"]["ok"] is False
    finally:
        assert stop_stack(running) == 0
    assert "stopped." in running.log()


def test_stack_starts_the_seeded_bitbucket_emulator(stack):
    for flavor in ("bitbucket_cloud", "bitbucket_datacenter"):
        state = requests.get(f"{stack.urls[flavor]}/_emulator/state", timeout=5)
        assert state.status_code == 200
    # Cloud's REST API demands a token, exactly like bitbucket.org.
    assert requests.get(f"{stack.urls['bitbucket_cloud']}/2.0/user", timeout=5).status_code == 401


# ------------------------------------------------------------------------------------------------ ports


def _env(**variables: str) -> dict[str, str]:
    """`make dev`'s environment: nothing inherited from the test run, every port free unless set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BITBRIDGE_"))}
    env.update({setting.variable: "0" for setting in ports.PORTS})
    env.update(variables)
    return env


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on (LocalStack on 4566, another `make dev`, ...)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("setting", ports.PORTS, ids=lambda s: s.variable)
def test_a_taken_port_ends_the_start_within_5_s_naming_the_service_port_and_variable(tmp_path, taken_port, setting):
    ready = tmp_path / "ready.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "infra.local", "--ready-file", str(ready)],
        cwd=REPO_ROOT,
        env=_env(**{setting.variable: str(taken_port)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert done.stderr.splitlines() == [
        f"cannot start: {setting.service}: port {taken_port} on 127.0.0.1 is in use; set {setting.variable} "
        f"to a free port, e.g. `{setting.variable}={taken_port + 1} make dev`"
    ]
    assert "Traceback" not in done.stdout and not ready.exists()


def test_the_old_port_variables_still_work_for_one_release_and_say_so(tmp_path, taken_port):
    done = subprocess.run(
        [sys.executable, "-m", "infra.local"],
        cwd=REPO_ROOT,
        env=_env(BITBRIDGE_EMULATOR_DC_PORT=str(taken_port), BITBRIDGE_LOCAL_BITBUCKET_DC_PORT=""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "BITBRIDGE_EMULATOR_DC_PORT is deprecated and will stop working in the next release: "
        "set BITBRIDGE_LOCAL_BITBUCKET_DC_PORT instead"
    )
    assert f"Bitbucket Data Center emulator: port {taken_port}" in lines[1]


# ------------------------------------------------------------------------------------------------ signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_ctrl_c_and_sigterm_end_it_within_seconds_while_starting_and_once_running(tmp_path, signum):
    # While starting: the signal lands as soon as the process says it is starting (imports, moto, the
    # emulator and the resources take seconds after that).
    log_path = tmp_path / "starting.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", "--no-schedules"],
            cwd=REPO_ROOT,
            env=_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while "starting the local stack" not in log_path.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log_path.read_text()
                time.sleep(0.02)
            process.send_signal(signum)
            sent = time.monotonic()
            assert process.wait(timeout=STOP_SECONDS + 10) == 128 + signum
            assert time.monotonic() - sent < STOP_SECONDS
        finally:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert "interrupted while starting" in log and "Traceback" not in log

    # Running: it stops, says so, exits 0.
    running = start_stack(tmp_path)
    running.process.send_signal(signum)
    sent = time.monotonic()
    assert running.process.wait(timeout=STOP_SECONDS + 10) == 0
    assert time.monotonic() - sent < STOP_SECONDS
    assert "stopped." in running.log()


# ------------------------------------------------------------------------------------------------ state


def _ports(stack) -> list[str]:
    """The port flags that start a stack on the same ports as `stack` (as `make dev` does every time)."""
    port = {name: str(urlsplit(url).port) for name, url in stack.urls.items() if name != "state"}
    return [
        *("--api-port", port["api"], "--helper-port", port["console"], "--aws-port", port["aws"]),
        *("--cloud-port", port["bitbucket_cloud"], "--dc-port", port["bitbucket_datacenter"]),
    ]


def _run(tmp_path, name: str, *args: str):
    (tmp_path / name).mkdir()
    return start_stack(tmp_path / name, *args)


def _stop(stack) -> None:
    assert stop_stack(stack) == 0, stack.log()[-3000:]


def _key_works(stack, key: str) -> bool:
    """True when the API accepts the service key (an unknown end user is a 404/409, not a 401)."""
    try:
        Client(stack.api, key).connection("bitbucket-cloud", "nobody")
    except Unauthenticated:
        return False
    except ServiceAPIError:
        return True
    return True


def test_a_restart_keeps_the_session_an_import_and_a_service_key_and_dev_reset_clears_them(tmp_path):
    state_dir = str(tmp_path / "state")
    first = _run(tmp_path, "1", "--state", state_dir)
    try:
        assert first.urls["state"] == "fresh" and "state: fresh (no saved state in" in first.log()
        session = api_session(first, "cloud", "alice")
        me = user_id(first, session)
        (job,) = start_imports(session, first, "cloud", ["acme/infra"])
        assert wait_for(session, first, [job["id"]])[job["id"]]["state"] == "completed"
        _, key = add_client(first)
        assert _key_works(first, key)
    finally:
        _stop(first)
    assert "state saved in" in first.log()

    # `make dev` again: same ports, everything is still there.
    second = _run(tmp_path, "2", "--state", state_dir, *_ports(first))
    try:
        assert second.urls["state"] == "kept" and "state: kept (restored from" in second.log()
        assert user_id(second, session) == me  # the browser's session cookie still signs alice in
        listed = session.get(f"{second.api}/api/imports", timeout=30).json()["imports"]
        assert [j["state"] for j in listed if j["id"] == job["id"]] == ["completed"]
        assert _key_works(second, key)
        _, cursor = second.events()
        pushed = control(second, "cloud", "POST", "cloud/repos/acme/infra/push", {"branch": "main"})
        assert _event(second, cursor, "repository.push", "acme/infra")["ref_changes"][0]["new"] == pushed["head"]
    finally:
        _stop(second)

    # On other ports (a port variable changed): still kept; sign-in, hooks and the key follow the new ports.
    third = _run(tmp_path, "3", "--state", state_dir)
    try:
        assert third.urls["state"] == "kept" and third.api != second.api
        assert user_id(third, session) == me
        assert _key_works(third, key)
        assert user_id(third, api_session(third, "datacenter", "alice"))  # a new sign-in through the moved emulator
        _, cursor = third.events()
        pushed = control(third, "cloud", "POST", "cloud/repos/acme/infra/push", {"branch": "main"})
        assert _event(third, cursor, "repository.push", "acme/infra")["ref_changes"][0]["new"] == pushed["head"]
    finally:
        _stop(third)

    # `make dev-reset`: nothing of it is left.
    fresh = _run(tmp_path, "4", "--state", state_dir, "--fresh", *_ports(first))
    try:
        assert fresh.urls["state"] == "fresh" and "state: fresh (the saved state was deleted)" in fresh.log()
        assert session.get(f"{fresh.api}/api/me", timeout=10).status_code == 401
        assert not _key_works(fresh, key)
        again = api_session(fresh, "cloud", "alice")
        assert again.get(f"{fresh.api}/api/imports", timeout=30).json()["imports"] == []
    finally:
        _stop(fresh)


def _event(stack, cursor: int, detail_type: str, full_name: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events, _ = stack.events(cursor)
        for envelope in events:
            detail = envelope.get("detail", {})
            if (
                envelope.get("detail-type") == detail_type
                and detail.get("repository", {}).get("full_name") == full_name
            ):
                return dict(detail)
        time.sleep(0.2)
    raise AssertionError(f"no {detail_type} event for {full_name} in {timeout} s:\n{stack.log()[-3000:]}")
