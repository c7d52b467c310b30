"""Which local stack the CLI (and `python -m infra.local tail`) acts on.

A running local stack (`python -m infra.local`, `make dev`) writes a ready file into ``READY_DIR`` with its
URLs. The target is, in order: ``--local URL`` (the stack's local helper); the helper the ``BITBRIDGE_LOCAL_*``
variables name (the same ones the stack reads); the one running stack whose ports match the other port
variables that are set; the one running stack. When more than one answers and nothing says which, every
command refuses to guess, read-only ones too: acting on the wrong stack and saying so afterwards helps no one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HELPER_PORT = 3001
# A port nobody listens on is refused at once; a stack busy with an import can take seconds to answer
# on a loaded machine, and a command run then must still find it.
PROBE_TIMEOUT_SECONDS = 15  # also the wait for its /env
#: Where running local stacks announce themselves (one JSON file per stack, removed when it stops).
READY_DIR = Path(
    os.environ.get("BITBRIDGE_LOCAL_READY_DIR") or Path(tempfile.gettempdir()) / f"bitbridge-local-{os.getuid()}"
)
#: The stack's port variables (infra/local/ports.py) by the URL they set; the old names still work this release.
PORT_VARIABLES = {
    "console": ("BITBRIDGE_LOCAL_HELPER_PORT", "BITBRIDGE_LOCAL_CONSOLE_PORT"),
    "api": ("BITBRIDGE_LOCAL_API_PORT",),
    "aws": ("BITBRIDGE_LOCAL_AWS_PORT",),
    "bitbucket_cloud": ("BITBRIDGE_LOCAL_BITBUCKET_CLOUD_PORT", "BITBRIDGE_EMULATOR_CLOUD_PORT"),
    "bitbucket_datacenter": ("BITBRIDGE_LOCAL_BITBUCKET_DC_PORT", "BITBRIDGE_EMULATOR_DC_PORT"),
}


class NoLocalStack(Exception):
    pass


class AmbiguousLocalStack(Exception):
    pass


def ready_file(helper_port: int) -> Path:
    return READY_DIR / f"stack-{helper_port}.json"


def _variable(url_key: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(name, value) of the variable that sets this URL's port, when one is set."""
    for name in PORT_VARIABLES[url_key]:
        if environ.get(name, "").strip():
            if name != PORT_VARIABLES[url_key][0]:
                print(f"{name} is deprecated: set {PORT_VARIABLES[url_key][0]} instead", file=sys.stderr)
            return name, environ[name].strip()
    return None


def console_from_variables(environ: Mapping[str, str] = os.environ) -> str | None:
    """The local helper the stack's own variables point at, when the host or the helper port is set."""
    host, port = environ.get("BITBRIDGE_LOCAL_HOST", "").strip(), _variable("console", environ)
    if not host and not port:
        return None
    return f"http://{host or DEFAULT_HOST}:{port[1] if port else DEFAULT_HELPER_PORT}"


def ports_from_variables(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """URL key -> port, for the other port variables that are set (they pick among running stacks)."""
    found = {key: _variable(key, environ) for key in PORT_VARIABLES if key != "console"}
    return {key: value[1] for key, value in found.items() if value is not None}


def _port(url: str | None) -> str:
    try:
        return str(urllib.parse.urlsplit(url or "").port or "")
    except ValueError:
        return ""


def _answers(console: str) -> dict[str, str] | None:
    """The stack's URLs if its local helper answers, else None."""
    try:
        with urllib.request.urlopen(f"{console.rstrip('/')}/", timeout=PROBE_TIMEOUT_SECONDS) as response:  # noqa: S310
            urls = json.load(response)
    except (OSError, ValueError):
        return None
    return urls if isinstance(urls, dict) else None


def _ready_consoles() -> list[str]:
    consoles = []
    for path in sorted(READY_DIR.glob("stack-*.json")):
        try:
            console = json.loads(path.read_text()).get("console")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(console, str) and console not in consoles:
            consoles.append(console)
    return consoles


def _listed(answering: dict[str, dict[str, str]]) -> str:
    return "; ".join(f"helper {console} (api {urls.get('api', '?')})" for console, urls in answering.items())


def find(explicit: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, dict[str, str]]:
    """(local helper URL, the stack's URLs) of the one local stack to act on; raises NoLocalStack or
    AmbiguousLocalStack (one sentence, saying what to do)."""
    named = explicit or console_from_variables(environ)
    if named:
        urls = _answers(named)
        if urls is None:
            raise NoLocalStack(f"no local stack answers at {named} (start one with `make dev`)")
        return named.rstrip("/"), urls
    default = f"http://{DEFAULT_HOST}:{DEFAULT_HELPER_PORT}"
    answering: dict[str, dict[str, str]] = {}
    for console in dict.fromkeys([*_ready_consoles(), default]):
        urls = _answers(console)
        if urls is not None:
            answering[urls.get("console", console)] = urls
    if not answering:
        raise NoLocalStack("no local stack is running (start one with `make dev`, or pass --local URL)")
    wanted = ports_from_variables(environ)
    if wanted:
        answering = {c: u for c, u in answering.items() if all(_port(u.get(k)) == p for k, p in wanted.items())}
        if not answering:
            settings = ", ".join(f"{PORT_VARIABLES[k][0]}={p}" for k, p in wanted.items())
            raise NoLocalStack(f"no running local stack matches {settings}")
    if len(answering) > 1:
        raise AmbiguousLocalStack(
            f"{len(answering)} local stacks answer ({_listed(answering)}): say which with --local URL "
            "(its helper URL) or BITBRIDGE_LOCAL_HELPER_PORT"
        )
    return next(iter(answering.items()))


def stage(console: str) -> str | None:
    """The stack's stage, from its local helper (None when it does not say)."""
    try:
        with urllib.request.urlopen(f"{console.rstrip('/')}/env", timeout=PROBE_TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.load(response).get("BITBRIDGE_STAGE")
    except (OSError, ValueError, AttributeError):
        return None


def describe(urls: dict[str, Any], stage: str | None) -> str:
    """The one stderr line saying which stack a command acts on."""
    return f"local stack: api {urls.get('api', '?')}, helper {urls.get('console', '?')}, stage {stage or '?'}"
