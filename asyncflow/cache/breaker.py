"""Circuit breaker for the Redis cache: stop paying timeouts for a Redis that is gone.

Closed: every cache operation tries Redis. After `threshold` failures in a
row it opens: operations stop trying (reads are misses at once, writes wait
for their entries to be delivered or for the replica's lease to lapse, see
asyncflow/cache/redis.py). While open, only the cache's heartbeat tries
Redis, once per probe interval (the half-open probe); its first success
closes the breaker.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Breaker:
    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self.attempts = 0
        """Round trips tried by cache operations, successful or not."""
        self.probes = 0
        """Round trips tried by the heartbeat while open."""
        self._failures = 0
        self.open = False

    def allows(self) -> bool:
        """May a foreground operation try Redis now?"""
        return not self.open

    def trying(self) -> None:
        if self.open:
            self.probes += 1
        else:
            self.attempts += 1

    def succeeded(self) -> None:
        self._failures = 0
        if self.open:
            self.open = False
            log.warning("redis cache reachable again: circuit closed")

    def failed(self, reason: BaseException) -> None:
        self._failures += 1
        if not self.open and self._failures >= self.threshold:
            self.open = True
            log.warning(
                "redis cache unavailable (%s): circuit open, reading from the store"
                " and probing redis in the background",
                reason,
            )
