"""What to tell a user who runs server code with the SDK alone installed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

INSTALL_SERVER = "pip install 'asyncflow[server]'"


@contextmanager
def needs_server(what: str) -> Iterator[None]:
    """Turn a missing server dependency into an ImportError that says what to install."""
    try:
        yield
    except ImportError as missing:
        raise ImportError(
            f"{what} needs the asyncflow server, whose dependencies are not installed"
            f" ({missing.name or missing}): {INSTALL_SERVER}",
            name=missing.name,
        ) from missing
