"""`bitbridge` - the admin command line.

It works against a deployed stack (`--stack NAME`, with the admin's AWS credentials) or the
local stack (`--local`, the default when no stack is named): either way it learns the table,
queue and bus names from the functions' own environment, so it never needs a second copy.

    bitbridge providers add|list|show|verify|set|set-limits|rotate-secret|remove
    bitbridge budget [--provider ID] [--user USER_ID]
    bitbridge hooks install|list|remove|test
    bitbridge events replay|tail
    bitbridge imports list|show|retry|cancel
    bitbridge reconcile [--repo OWNER/SLUG]
    bitbridge clients add|list|rotate|revoke
    bitbridge audit --client ID --since 24h
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import NoReturn

LOCAL_CONSOLE = "http://127.0.0.1:3001"

# Each command group lives in its own module with `register(subparsers)`.
GROUPS = ("providers", "hooks", "events", "imports", "reconcile", "clients", "audit", "budget")


class CliError(Exception):
    """A problem the admin can fix; printed without a traceback."""


class Parser(argparse.ArgumentParser):
    """Usage mistakes in one line (which command, what is wrong, where the help is), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _environment_from_stack(stack: str) -> dict[str, str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        function = boto3.client("cloudformation").describe_stack_resource(
            StackName=stack, LogicalResourceId="ApiFunction"
        )["StackResourceDetail"]["PhysicalResourceId"]
        config = boto3.client("lambda").get_function_configuration(FunctionName=function)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read the configuration of stack {stack!r}: {exc}") from None
    print(f"bitbridge: stack {stack} (function {function})", file=sys.stderr)
    return dict(config["Environment"]["Variables"])


def _environment_from_local(args: argparse.Namespace) -> dict[str, str]:
    from bitbridge.cli import local

    try:
        console, urls = local.find(args.local)
        args.local = console
        with urllib.request.urlopen(f"{console}/env", timeout=local.PROBE_TIMEOUT_SECONDS) as response:  # noqa: S310
            env = dict(json.load(response))
    except (local.NoLocalStack, local.AmbiguousLocalStack) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"the local stack at {console} did not answer: {exc}") from exc
    print(f"bitbridge: {local.describe(urls, env.get('BITBRIDGE_STAGE'))}", file=sys.stderr)
    return env


def configure(args: argparse.Namespace) -> None:
    """Point this process at the stack's resources, as the functions see them."""
    # Metrics (the budget's, on calls the command line makes) are CloudWatch's from a Lambda's log only.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    if os.environ.get("BITBRIDGE_PROVIDERS_TABLE"):
        args.local = args.local or LOCAL_CONSOLE
        return  # already configured (e.g. inside a function or a test)
    env = _environment_from_stack(args.stack) if args.stack else _environment_from_local(args)
    os.environ.update(env)
    from bitbridge.aws import reset_caches

    reset_caches()


def stack_outputs(stack: str) -> dict[str, str]:
    """A deployed stack's Outputs by key (ApiUrl, CallbackUrlPattern, ...)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read the outputs of stack {stack!r}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for s in found[:1] for o in s.get("Outputs", [])}


def public_base_url(args: argparse.Namespace) -> str:
    """The API's public URL: --base-url, else the stack's PublicBaseUrl parameter, else (a stack
    deployed without a custom domain) its ApiUrl output - so it is known right after the first deploy."""
    from bitbridge.config import settings

    base = getattr(args, "base_url", None) or settings().public_base_url
    if not base and getattr(args, "stack", None):
        base = stack_outputs(args.stack).get("ApiUrl", "")
    if not base:
        raise CliError("the API's public URL is unknown: pass --base-url (the stack's ApiUrl output)")
    parsed = urllib.parse.urlparse(str(base))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"the API's public URL must be an absolute http(s) URL, got {base!r}")
    return str(base).rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bitbridge", description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--stack", help="CloudFormation stack name of a deployed bitbridge")
    target.add_argument(
        "--local",
        metavar="URL",
        help="the local stack's helper URL, e.g. http://127.0.0.1:3001 (default: the BITBRIDGE_LOCAL_* variables, "
        "else the one running stack; with several running, say which)",
    )
    groups = parser.add_subparsers(dest="group", required=True)
    for name in GROUPS:
        if importlib.util.find_spec(f"bitbridge.cli.{name}") is not None:
            importlib.import_module(f"bitbridge.cli.{name}").register(groups)
    return parser


def positive_int(text: str) -> int:
    """argparse type for counts and limits: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no detail)"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever goes wrong ends in one line on stderr, never a traceback: 2 for what the
    admin can fix (a wrong argument, an unknown id, a stack that does not answer), 1 for anything else."""
    from bitbridge.bitbucket.http import BitbucketError
    from bitbridge.errors import Problem

    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        configure(args)
        return run(args)
    except (CliError, Problem, BitbucketError) as exc:
        print(f"bitbridge: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("BITBRIDGE_DEBUG"):
            raise
        print(
            f"bitbridge: failed: {type(exc).__name__}: {_one_line(str(exc))} (BITBRIDGE_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
