"""The local stack's settings: ports, emulator and schedules have an environment variable and a default that
just works; the state folder is a flag (`make dev` passes it). Light on imports, so `make dev` checks its
ports before loading anything heavy."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local import ports
from infra.local.template import TEMPLATE_PATH

# A port picked for port 0 stays bound (not listening) until its server binds it: outgoing connections take
# their local ports from the same ephemeral range, and on a machine running many stacks a picked port was
# taken by a connection before its server got to it ("Port … is in use").
_held: dict[tuple[str, int], socket.socket] = {}
_held_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A free port, held for this process until `release` (its server's bind) takes it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    with _held_lock:
        _held[(host, port)] = sock
    return port


def held(host: str, port: int) -> bool:
    with _held_lock:
        return (host, port) in _held


def release(host: str, port: int) -> None:
    """Let go of a held port, just before its server binds it (a no-op for any other port)."""
    with _held_lock:
        sock = _held.pop((host, port), None)
    if sock is not None:
        sock.close()


def _port(attribute: str) -> Any:
    return field(default_factory=lambda: ports.from_environment(ports.setting_for(attribute), os.environ))


class PortsTaken(Exception):
    """Ports the stack cannot listen on; one sentence per port, each naming the variable to set."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class StackConfig:
    """Every setting has an environment variable and a default that just works."""

    host: str = field(default_factory=lambda: os.environ.get("BITBRIDGE_LOCAL_HOST", "127.0.0.1"))
    api_port: int = _port("api_port")
    helper_port: int = _port("helper_port")
    aws_port: int = _port("aws_port")
    cloud_port: int = _port("cloud_port")
    dc_port: int = _port("dc_port")
    emulator: bool = field(default_factory=lambda: os.environ.get("BITBRIDGE_LOCAL_EMULATOR", "1") != "0")
    # Schedule events (the reconciler, every minute) run as on AWS; tests that drive them by hand turn them off.
    schedules: bool = field(default_factory=lambda: os.environ.get("BITBRIDGE_LOCAL_SCHEDULES", "1") != "0")
    stage: str = "local"
    # Per-resource property overrides (tests shorten timeouts); empty for `make dev`.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Tests run a modified copy of the template (a removed permission, an added limit).
    template_path: Path = TEMPLATE_PATH
    # Where the state is kept across restarts (`make dev`: .local/state); None keeps it in memory only.
    state_dir: Path | None = None
    # Start clean: delete the saved state first (`make dev-reset`).
    fresh: bool = False

    def port_settings(self) -> list[tuple[ports.PortSetting, int]]:
        return [
            (setting, getattr(self, setting.attribute))
            for setting in ports.PORTS
            if self.emulator or setting.attribute not in ports.EMULATOR_PORTS
        ]

    def resolve_ports(self) -> StackConfig:
        """Replace port 0 with a free port, so parallel test runs don't collide."""
        for setting, port in self.port_settings():
            if port == 0:
                setattr(self, setting.attribute, free_port(self.host))
        return self

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def helper_url(self) -> str:
        return f"http://{self.host}:{self.helper_port}"


# What each URL is for, in the words the README uses (the ready banner's labels; keys are stable names for
# the ready file, the helper's `/` and tests).
LABELS = {
    "web_console": "web console",
    "api": "API",
    "health": "health check",
    "aws": "AWS (moto server)",
    "console": "local helper (local only)",
    "events": "event log (local only)",
    "bitbucket_cloud": "Bitbucket Cloud emulator",
    "bitbucket_datacenter": "Bitbucket Data Center emulator",
}
