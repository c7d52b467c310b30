"""A port the local stack picks for port 0 is held until its server binds it: in between, nothing else
(another stack, an outgoing connection's local port) can take it."""

from __future__ import annotations

import errno
import socket

import pytest

from infra.local import ports
from infra.local.config import StackConfig, free_port, held, release


def _bind(port: int) -> None:
    """Bind as the servers do (werkzeug sets SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_picked_port_is_held_until_released_then_free_for_its_server():
    port = free_port()
    assert held("127.0.0.1", port)
    with pytest.raises(OSError) as taken:
        _bind(port)  # what took ports from stacks on a loaded machine, before they were held
    assert taken.value.errno == errno.EADDRINUSE
    release("127.0.0.1", port)
    assert not held("127.0.0.1", port)
    _bind(port)
    release("127.0.0.1", port)  # releasing twice is harmless


def test_every_port_zero_of_a_stack_is_held_and_not_reported_as_taken():
    config = StackConfig(api_port=0, helper_port=0, aws_port=0, cloud_port=0, dc_port=0).resolve_ports()
    picked = [port for _, port in config.port_settings()]
    assert all(held(config.host, port) for port in picked) and len(set(picked)) == len(picked)
    wanted = [(setting, port) for setting, port in config.port_settings() if not held(config.host, port)]
    assert ports.check(config.host, wanted) == []
    for port in picked:
        release(config.host, port)
