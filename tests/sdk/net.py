"""Ports for tests that need to know a port before a server listens on it."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free now on 127.0.0.1 (the OS may hand it out again: use it at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
