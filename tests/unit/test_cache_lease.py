"""The cache's presence lease and circuit breaker, on a clock the test moves."""

from __future__ import annotations

from asyncflow.cache.breaker import Breaker
from asyncflow.cache.lease import SLACK_MS, Lease


class Clock:
    def __init__(self) -> None:
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds


REDIS_AHEAD_MS = 5_000_000.0  # Redis's clock and ours have nothing in common


def lease_after_a_reply(rtt_ms: float = 2.0) -> tuple[Lease, Clock]:
    clock = Clock()
    lease = Lease(2.0, clock)
    sent = lease.now()
    clock.seconds += rtt_ms / 1000
    lease.observe(sent, lease.now(), int(sent + rtt_ms / 2 + REDIS_AHEAD_MS))
    return lease, clock


def test_without_a_renewal_a_replica_counts_as_lapsed() -> None:
    clock = Clock()
    lease = Lease(2.0, clock)
    assert lease.renewal(lease.now()) == 0  # the clocks are not calibrated yet
    assert lease.lapsed()
    assert lease.until_lapse() == 0


def test_a_renewal_asks_for_an_expiry_on_redis_time_and_lapses_after_it() -> None:
    lease, clock = lease_after_a_reply(rtt_ms=2.0)
    sent = lease.now()
    expiry = lease.renewal(sent)
    # The expiry is computed from the send time: Redis running the command late
    # (it was stalled) cannot stretch it.
    assert abs(expiry - (sent + REDIS_AHEAD_MS + 2000)) <= 2 + 1
    assert not lease.lapsed()
    # Lapsed only once Redis's clock has certainly passed the expiry: the lease
    # plus the uncertainty of the clock offset (the sample's round trip) and slack.
    clock.seconds += (2000 + 2 + 1 + SLACK_MS - 1) / 1000
    assert not lease.lapsed()
    clock.seconds += 2 / 1000
    assert lease.lapsed()


def test_the_latest_renewal_counts_even_unanswered() -> None:
    lease, clock = lease_after_a_reply()
    lease.renewal(lease.now())
    clock.seconds += 1.5
    lease.renewal(lease.now())  # sent; its reply may never come, Redis may still run it
    clock.seconds += 1.0
    assert not lease.lapsed()
    clock.seconds += 1.1
    assert lease.lapsed()


def test_a_tighter_offset_sample_replaces_a_looser_one() -> None:
    lease, clock = lease_after_a_reply(rtt_ms=200.0)
    sent = lease.now()
    clock.seconds += 0.001
    lease.observe(sent, lease.now(), int(sent + REDIS_AHEAD_MS))
    lease.renewal(lease.now())
    clock.seconds += (2000 + 1 + 1 + SLACK_MS + 1) / 1000
    assert lease.lapsed()  # the loose sample's 200 ms no longer widen the wait


def test_the_breaker_opens_after_failures_in_a_row_and_closes_on_success() -> None:
    breaker = Breaker(threshold=3)
    for _ in range(2):
        breaker.trying()
        breaker.failed(OSError("refused"))
    breaker.trying()
    breaker.succeeded()  # a success resets the count
    for _ in range(2):
        breaker.trying()
        breaker.failed(OSError("refused"))
    assert breaker.allows()
    breaker.trying()
    breaker.failed(OSError("refused"))
    assert not breaker.allows()
    breaker.trying()  # a heartbeat probe while open
    assert (breaker.attempts, breaker.probes) == (6, 1)
    breaker.succeeded()
    assert breaker.allows()


def test_a_recent_renewal_is_not_repeated() -> None:
    """Renewing makes the script write; under load every call would."""
    lease, clock = lease_after_a_reply()
    assert lease.renewal(lease.now()) > 0
    clock.seconds += 0.4
    assert lease.renewal(lease.now()) == 0  # within a quarter of the lease
    clock.seconds += 0.2
    assert lease.renewal(lease.now()) > 0
