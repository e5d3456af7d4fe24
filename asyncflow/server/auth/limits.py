"""Limits per caller on one replica: a call rate (token bucket) and open streams.

Counted in this process only: with N replicas behind a balancer, a caller may
make up to N times as many calls (documented in docs/security.md). Callers are
few (one entry per token or certificate; per peer address when anonymous), and
a bucket that has refilled is dropped, so the maps stay small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from asyncflow.config import QuotaConfig
from asyncflow.errors import RateLimited, TooManyStreams


@dataclass
class _Bucket:
    tokens: float
    updated: float


class CallRate:
    """A token bucket per caller: `burst` calls at once, `rate` a second sustained."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, round(rate)))
        self._now = now
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str) -> None:
        """Count one call, or raise RateLimited with the wait until the next one fits."""
        now = self._now()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.rate
            raise RateLimited(
                f"{caller} made more than {self.rate:g} calls a second (burst"
                f" {self.burst:g}); call again in {wait:.2f}s",
                retry_delay=wait,
            )
        bucket.tokens -= 1
        if len(self._buckets) > 1024:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they are as good as new ones."""
        for caller, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[caller]


class OpenStreams:
    """How many WorkTasks streams each caller has open on this replica."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, caller: str) -> None:
        count = self._open.get(caller, 0)
        if count >= self.limit:
            raise TooManyStreams(
                f"{caller} already has {count} open WorkTasks streams on this server"
                f" (the limit is {self.limit})",
            )
        self._open[caller] = count + 1

    def close(self, caller: str) -> None:
        count = self._open.get(caller, 0) - 1
        if count > 0:
            self._open[caller] = count
        else:
            self._open.pop(caller, None)

    def count(self, caller: str) -> int:
        return self._open.get(caller, 0)


@dataclass(frozen=True)
class Quotas:
    """The limits in force (None: that limit is off)."""

    rate: CallRate | None
    streams: OpenStreams | None

    @classmethod
    def from_config(cls, config: QuotaConfig, now: Callable[[], float] = time.monotonic) -> Quotas:
        return cls(
            CallRate(config.calls_per_second, config.burst, now)
            if config.calls_per_second > 0 else None,
            OpenStreams(config.streams) if config.streams > 0 else None,
        )  # fmt: skip

    @property
    def any(self) -> bool:
        return self.rate is not None or self.streams is not None
