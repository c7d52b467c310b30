"""Which local stack the CLI (and `python -m infra.local tail`) acts on.

A running local stack (`python -m infra.local`, `make dev`) writes a ready file into ``READY_DIR``
with its URLs. The target is, in order: ``--local URL``; the console the ``BITBRIDGE_LOCAL_*`` variables
name (the same ones the stack reads); the one ready stack that answers; the default console. When more
than one local stack answers and none was named, destructive commands refuse to guess.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONSOLE_PORT = 3001
# A port nobody listens on is refused at once; a stack busy with an import can take seconds to answer
# on a loaded machine, and a command run then must still find it.
PROBE_TIMEOUT_SECONDS = 15  # also the wait for its /env
#: Where running local stacks announce themselves (one JSON file per stack, removed when it stops).
READY_DIR = Path(
    os.environ.get("BITBRIDGE_LOCAL_READY_DIR") or Path(tempfile.gettempdir()) / f"bitbridge-local-{os.getuid()}"
)


class NoLocalStack(Exception):
    pass


class AmbiguousLocalStack(Exception):
    pass


def ready_file(console_port: int) -> Path:
    return READY_DIR / f"stack-{console_port}.json"


def console_from_variables(environ: Any = os.environ) -> str | None:
    """The console the stack's own variables point at, when any is set."""
    host, port = environ.get("BITBRIDGE_LOCAL_HOST"), environ.get("BITBRIDGE_LOCAL_CONSOLE_PORT")
    if not host and not port:
        return None
    return f"http://{host or DEFAULT_HOST}:{port or DEFAULT_CONSOLE_PORT}"


def _answers(console: str) -> dict[str, str] | None:
    """The stack's URLs if its console answers, else None."""
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


def find(explicit: str | None, *, destructive: bool) -> tuple[str, dict[str, str]]:
    """(console URL, the stack's URLs) of the local stack to act on."""
    named = explicit or console_from_variables()
    if named:
        urls = _answers(named)
        if urls is None:
            raise NoLocalStack(f"no local stack answers at {named} (start it with `make dev`)")
        return named, urls
    default = f"http://{DEFAULT_HOST}:{DEFAULT_CONSOLE_PORT}"
    candidates = [*_ready_consoles(), default]
    answering: dict[str, dict[str, str]] = {}
    for console in dict.fromkeys(candidates):
        urls = _answers(console)
        if urls is not None:
            answering[urls.get("console", console)] = urls
    if not answering:
        raise NoLocalStack(f"no local stack answers at {default} (start it with `make dev`, or pass --local URL)")
    if len(answering) > 1 and destructive:
        raise AmbiguousLocalStack(
            f"{len(answering)} local stacks answer ({', '.join(answering)}): name one with --local URL "
            "or BITBRIDGE_LOCAL_CONSOLE_PORT before changing anything"
        )
    console = default if default in answering else next(iter(answering))
    return console, answering[console]


def stage(console: str) -> str | None:
    """The stack's stage, from its console (None when it does not say)."""
    try:
        with urllib.request.urlopen(f"{console.rstrip('/')}/env", timeout=PROBE_TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.load(response).get("BITBRIDGE_STAGE")
    except (OSError, ValueError, AttributeError):
        return None


def describe(urls: dict[str, str], stage: str | None) -> str:
    """The one stderr line saying which stack a command acts on."""
    return f"local stack: api {urls.get('api', '?')}, console {urls.get('console', '?')}, stage {stage or '?'}"
