"""The local stack's ports: one variable per service (``BITBRIDGE_LOCAL_<SERVICE>_PORT``), and a check that
every one is free before anything starts, so a taken port ends `make dev` at once with a sentence naming the
service, the port and the variable to set.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PortSetting:
    attribute: str  # the StackConfig field
    service: str  # what listens there, in the ready banner's words
    variable: str
    default: int
    flag: str
    old_variable: str | None = None  # the old name: still read for one release, with a deprecation line


PORTS = (
    PortSetting("api_port", "API and web console", "BITBRIDGE_LOCAL_API_PORT", 3000, "--api-port"),
    PortSetting(
        "helper_port",
        "local helper and event log",
        "BITBRIDGE_LOCAL_HELPER_PORT",
        3001,
        "--helper-port",
        old_variable="BITBRIDGE_LOCAL_CONSOLE_PORT",
    ),
    PortSetting("aws_port", "AWS (moto server)", "BITBRIDGE_LOCAL_AWS_PORT", 4566, "--aws-port"),
    PortSetting(
        "cloud_port",
        "Bitbucket Cloud emulator",
        "BITBRIDGE_LOCAL_BITBUCKET_CLOUD_PORT",
        8990,
        "--cloud-port",
        old_variable="BITBRIDGE_EMULATOR_CLOUD_PORT",
    ),
    PortSetting(
        "dc_port",
        "Bitbucket Data Center emulator",
        "BITBRIDGE_LOCAL_BITBUCKET_DC_PORT",
        7990,
        "--dc-port",
        old_variable="BITBRIDGE_EMULATOR_DC_PORT",
    ),
)
EMULATOR_PORTS = ("cloud_port", "dc_port")


class PortError(Exception):
    """A port setting that cannot work; the message says which and what to do."""


def _parse(name: str, text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise PortError(f"{name}={text!r} is not a port number (0-65535; 0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise PortError(f"{name}={port} is not a port number (0-65535; 0 picks a free one)")
    return port


def from_environment(setting: PortSetting, environ: Mapping[str, str], warn: bool = True) -> int:
    """The port a variable sets (the new name wins over the deprecated one), else the default."""
    if environ.get(setting.variable, "").strip():
        return _parse(setting.variable, environ[setting.variable].strip())
    if setting.old_variable and environ.get(setting.old_variable, "").strip():
        if warn:
            print(
                f"{setting.old_variable} is deprecated and will stop working in the next release: "
                f"set {setting.variable} instead",
                file=sys.stderr,
                flush=True,
            )
        return _parse(setting.old_variable, environ[setting.old_variable].strip())
    return setting.default


def in_use(host: str, port: int) -> bool:
    """True when something listens on host:port (binding as the servers do, with SO_REUSEADDR, so a port
    in TIME_WAIT after a restart counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise PortError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return False


def problem(setting: PortSetting, port: int, host: str, what: str = "is in use") -> str:
    suggestion = port + 1 if 0 < port < 65535 else 0
    return (
        f"{setting.service}: port {port} on {host} {what}; set {setting.variable} to a free port, "
        f"e.g. `{setting.variable}={suggestion} make dev`"
    )


def check(host: str, wanted: Iterable[tuple[PortSetting, int]]) -> list[str]:
    """One sentence per port that cannot be used (taken, or given to two services); [] when all are free.
    Port 0 (pick a free one) always works."""
    problems: list[str] = []
    seen: dict[int, PortSetting] = {}
    for setting, port in wanted:
        if port == 0:
            continue
        if port in seen:
            problems.append(problem(setting, port, host, f"is also the {seen[port].service}'s port"))
            continue
        seen[port] = setting
        if in_use(host, port):
            problems.append(problem(setting, port, host))
    return problems


def setting_for(attribute: str) -> PortSetting:
    return next(s for s in PORTS if s.attribute == attribute)
