"""The rate-limited log of client errors."""

from __future__ import annotations

import logging

import pytest

from asyncflow.clock import ManualClock
from asyncflow.logs import ClientErrorLog


def test_client_error_log_budgets_each_reason_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="test.clients")
    clock = ManualClock(1_000)
    client_log = ClientErrorLog(logging.getLogger("test.clients"), clock, limit=2, interval=10)
    for _ in range(5):
        client_log.warning("A", "a")
    client_log.warning("B", "b")  # its own budget
    clock.advance(9)
    client_log.warning("A", "a")  # still the first interval: suppressed
    clock.advance(1)
    client_log.warning("A", "a")
    client_log.warning("A", "a")
    client_log.warning("A", "a")
    lines = [(r.reason, r.suppressed) for r in caplog.records]  # type: ignore[attr-defined]
    assert lines == [("A", 0), ("A", 0), ("B", 0), ("A", 4), ("A", 0)]
