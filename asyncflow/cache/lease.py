"""A replica's presence lease in Redis, seen from the replica's own clock.

Every cache round trip renews the replica's entry in the members set with an
expiry on Redis's clock (see scripts.CACHE_CALL). Whoever runs a script after
an entry has expired bumps the cache generation, so every entry written before
is ignored from then on. A replica whose write could not reach Redis relies
on that: it returns the write only once its own entry has certainly expired
(`lapsed`), so that no read started afterwards can be served the older entry.

Two clocks meet here: Redis's (TIME, milliseconds) and this process's
monotonic clock. Each reply gives a sample of the offset between them, exact
to within the round trip; the expiry a renewal asks for is computed here from
the send time, never from when Redis runs it, so a command that Redis runs late
(it was stalled, the client gave up) cannot extend the lease past what this
side assumed. The one assumption: Redis's clock does not step backwards by
more than `SLACK_MS` while a lease runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SLACK_MS = 20.0
"""Rounding of Redis TIME to milliseconds, float error, clock rate drift."""
SAMPLE_MAX_AGE_MS = 10_000.0
"""A tighter offset sample is preferred, but none older than this."""


@dataclass(frozen=True)
class _Sample:
    low: float
    """Redis ms minus local ms, lower bound (Redis answered before we read the reply)."""
    high: float
    """Upper bound (Redis answered after we sent)."""
    taken: float

    @property
    def spread(self) -> float:
        return self.high - self.low


class Lease:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.ms = seconds * 1000.0
        self._clock = clock
        self._sample: _Sample | None = None
        self._lapse_at: float | None = None
        """Local ms after which Redis certainly holds no live entry for us."""
        self._renewed = -float("inf")
        """Local ms when the last renewal was sent."""

    def now(self) -> float:
        return self._clock() * 1000.0

    def renewal(self, sent: float) -> int:
        """The Redis-clock expiry to ask for in a call sent at local ms `sent`
        (0: no renewal, because the offset is not known yet or the last one is
        recent: a renewal makes the script write). Counted as granted at once:
        the call may reach Redis even if we never see its reply."""
        if self._sample is None or sent - self._renewed < self.ms / 4:
            return 0
        self._renewed = sent
        expiry = sent + self._sample.high + self.ms
        lapse = expiry - self._sample.low + SLACK_MS
        self._lapse_at = lapse if self._lapse_at is None else max(self._lapse_at, lapse)
        return int(expiry)

    def observe(self, sent: float, received: float, redis_ms: int) -> None:
        """A reply to a call sent at `sent`, read at `received`, run at Redis time `redis_ms`."""
        sample = _Sample(low=redis_ms - received, high=redis_ms + 1 - sent, taken=received)
        current = self._sample
        if (
            current is None
            or sample.spread <= current.spread
            or received - current.taken > SAMPLE_MAX_AGE_MS
        ):
            self._sample = sample

    def lapsed(self) -> bool:
        """True once Redis holds no live entry for this replica (or never had one)."""
        return self._lapse_at is None or self.now() >= self._lapse_at

    def until_lapse(self) -> float:
        """Seconds until `lapsed()` turns true (0 if it is)."""
        if self._lapse_at is None:
            return 0.0
        return max(0.0, (self._lapse_at - self.now()) / 1000.0)
