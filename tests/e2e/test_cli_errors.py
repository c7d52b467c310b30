"""Every `bitbridge` subcommand, given a wrong provider, repository, id or value, answers as an admin can act on:
exit status 2, the stack it acted on, then one line saying what is wrong - never a traceback, and nothing
changed. The table must cover every subcommand the parser has (a new one without cases fails here). The table
runs `bitbridge.cli.main` in this process against the local stack (an exception escaping it fails the test as
a traceback would); the issue's own example runs as a real process."""

from __future__ import annotations

import argparse
import io
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest

from bitbridge import cli as bitbridge_cli
from bitbridge.aws import reset_caches
from tests.e2e.support import api_session, cli, user_id

# {subcommand: [arguments after it, ...]}; USER stands for a real signed-in user's id.
WRONG: dict[str, list[list[str]]] = {
    "providers add": [
        ["Not An Id!", "--flavor", "cloud", "--key", "k", "--secret", "s"],
        ["dc-x", "--flavor", "datacenter", "--key", "k", "--secret", "s", "--url", "not a url"],
        ["dc-x", "--flavor", "nope", "--key", "k", "--secret", "s"],
    ],
    "providers list": [["--bogus"]],
    "providers show": [["nope"]],
    "providers verify": [["nope", "--no-wait"], ["bitbucket-cloud", "--timeout", "0"]],
    "providers set": [["nope", "--label", "x"], ["bitbucket-cloud", "--web-url", "ftp://x"], ["bitbucket-cloud"]],
    "providers rotate-secret": [["nope", "--secret", "x"]],
    "providers remove": [["nope", "--yes"]],
    "providers set-limits": [["nope", "--window-seconds", "60"], ["bitbucket-cloud", "--class", "repositories"]],
    "providers set-deploy-key": [["nope", "--key-file", "/nonexistent.pub"], ["bitbucket-cloud", "--key-file", "/"]],
    "hooks install": [
        ["--provider", "nope", "--repo", "acme/infra", "--user", "USER"],
        ["--provider", "bitbucket-cloud", "--repo", "acme", "--user", "USER"],
        ["--provider", "bitbucket-cloud", "--repo", "acme/does-not-exist", "--user", "USER"],
        ["--provider", "bitbucket-cloud", "--repo", "acme/infra", "--user", "nope"],
        ["--provider", "bitbucket-cloud", "--repo", "acme/infra", "--repository-id", "1"],
    ],
    "hooks list": [["--bogus"]],
    "hooks remove": [["nope"], ["nope", "--user", "nope"]],
    "hooks test": [["nope"]],
    "events replay": [["--since", "2h", "--provider", "nope"], ["--since", "the other day"]],
    "events tail": [["--bogus"]],
    "imports list": [["--user", "nope"], ["--state", "nope"], ["--limit", "0"]],
    "imports show": [["nope"], ["../x"]],
    "imports retry": [["nope"]],
    "imports cancel": [["nope"]],
    "reconcile": [["--repo", "acme/does-not-exist"], ["--repo", "nope"], ["--budget", "-1"]],
    "clients add": [
        ["Not An Id", "--scopes", "proxy"],
        ["prod-x", "--scopes", "nope"],
        ["prod-x", "--scopes", "proxy", "--origin", "not an origin"],
    ],
    "clients list": [["--bogus"]],
    "clients rotate": [["nope"], ["nope", "--overlap", "a while"]],
    "clients revoke": [["nope"], ["nope", "--key", "nope"]],
    "budget": [["--provider", "nope"], ["--bogus"]],
    "audit": [["--client", "nope"], ["--client", "nope", "--since", "last week"]],
}


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for action in parser._actions:  # argparse keeps its subparsers here, nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _subcommands(sub, f"{prefix} {name}".strip()) or {f"{prefix} {name}".strip()}
    return found


def test_the_table_covers_every_subcommand():
    assert set(WRONG) == _subcommands(bitbridge_cli.build_parser())


@pytest.fixture(scope="module")
def alice(stack) -> str:
    return user_id(stack, api_session(stack, "cloud", "alice"))


def _main(stack, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `bitbridge --local HELPER ARGS`, run as a fresh process would: no
    AWS or bitbridge settings but the ones the command reads from the stack."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith(("AWS_", "BITBRIDGE_"))]:
        del os.environ[name]
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                status = bitbridge_cli.main(["--local", stack.urls["console"], *args])
            except SystemExit as exc:  # argparse's usage errors
                status = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()
    return status, out.getvalue(), err.getvalue()


def test_every_subcommand_answers_wrong_arguments_in_one_line_with_status_2(stack, alice):
    before = _main(stack, "providers", "list", "--json")[1]
    stack_line = f"bitbridge: local stack: api {stack.api}, helper {stack.urls['console']}, stage local"
    failures = []
    for command, cases in WRONG.items():
        for args in cases:
            args = [alice if a == "USER" else a for a in args]
            status, out, err = _main(stack, *command.split(), *args)
            lines = err.splitlines()
            if lines and lines[0] == stack_line:  # the command ran: it said where, first
                lines = lines[1:]
            if not (status == 2 and len(lines) == 1 and not out):
                failures.append(f"bitbridge {command} {' '.join(args)} -> {status}\n{out}{err}")
    assert not failures, "\n\n".join(failures)
    assert _main(stack, "providers", "list", "--json")[1] == before  # nothing was changed on the way


def test_a_wrong_provider_id_for_hooks_install_is_one_line_in_a_real_process(stack, alice):
    done = cli(stack, "hooks", "install", "--provider", "nope", "--repo", "acme/infra", "--user", alice)
    assert done.returncode == 2 and "Traceback" not in done.stderr and not done.stdout
    assert done.stderr.splitlines()[1:] == ["bitbridge: No provider 'nope' is registered."]
