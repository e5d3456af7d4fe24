"""Redis task cache shared by every replica, correct even when Redis is partly reachable.

The rules (docs/semantics.md, "Cache", says what they guarantee):

- Entries carry the row version; a put only replaces an older version, so a
  slow reader cannot put back a state older than one a writer published.
- Entries belong to a generation (scripts.py). A put carries the generation
  the caller saw before it read or wrote the store; if the generation changed
  since, the row may be older than a write that was forgotten with the old
  generation, so it is stored as a tombstone (the version only), never served.
- A writer whose put fails keeps it pending and retries it; the write returns
  once the put (or a newer one of that task) is delivered, or once this
  replica's presence lease in Redis has certainly run out (lease.py): from
  then on, the first script anyone runs bumps the generation, so no read that
  starts after the write returned is served the entry the put would have
  replaced. A replica whose writes returned that way bumps the generation
  itself when it gets through to Redis again.
- A circuit breaker (breaker.py) stops foreground calls after repeated
  failures: reads are misses at once, at store speed. The heartbeat renews the
  lease when idle and, while the breaker is open, probes Redis.
- Every operation is one round trip (one script call) whatever the number of
  tasks; pending puts ride along with the next call. Concurrent gets share
  one (core/group.py): a get starts no later than the round trip it rides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from asyncflow.cache import codec, scripts
from asyncflow.cache.breaker import Breaker
from asyncflow.cache.connection import SharedPool, client
from asyncflow.cache.lease import Lease
from asyncflow.core.group import GroupCommit
from asyncflow.core.model import Task

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 30.0
GET_BATCH = 256
"""Most gets one round trip carries."""
GET_PATIENCE = 16
"""Most quiet turns of the event loop a round trip of gets waits for more gets
(core/group.py: adapted to the load; a lone caller waits 3). A round trip costs
far more CPU than a get (redis-py, two syscalls and the loopback's kernel
work): with 128 GetTask calls in flight, batches went from ~2 to ~10 gets and
the server's CPU per cache-hit GetTask from ~0.29 to ~0.20 ms
(docs/benchmarks.md). 32 gave batches of ~14 but could hold a get for twice
as many turns on a loop busy with other work."""
LAYOUT = "cache1:"
"""Key namespace of the layout in scripts.py."""


@dataclass(eq=False)
class _Put:
    key: str
    version: int
    generation: int
    payload: str
    sending: bool = False
    """Carried by a round trip in flight."""
    failed: bool = False
    """A round trip carrying it failed: any call may carry it from now on."""


class _Warning:
    """A warning logged at most once per interval, with the count of the rest."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = -WARN_EVERY_SECONDS
        self._suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last < WARN_EVERY_SECONDS:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" (and {self._suppressed} more since the last warning)"
        self._last, self._suppressed = now, 0
        log.warning(message, *args)


class RedisTaskCache:
    def __init__(
        self,
        pool: SharedPool,
        *,
        key_prefix: str,
        ttl_seconds: int,
        lease_seconds: float = 2.0,
        probe_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client(pool)
        root = key_prefix + LAYOUT
        self._generation_key = root + "generation"
        self._members_key = root + "members"
        self._server_key = root + "server"
        self._task_prefix = root + "task:"
        self._ttl = ttl_seconds
        self._field = f"c{codec.CODEC_VERSION}"
        self._member = uuid.uuid4().hex
        self._script = self._redis.register_script(scripts.CACHE_CALL)
        pool.checks.append(self._check_server)
        self.breaker = Breaker()
        self._lease = Lease(lease_seconds, clock)
        self._probe_seconds = probe_seconds
        self._generation = 0
        self._pending: dict[str, _Put] = {}
        self._abandoned = 0
        """Writes returned without their put delivered; the next call bumps the
        generation when it is higher than _covered."""
        self._covered = 0
        self._progress = asyncio.Event()
        """Set (and replaced) whenever a round trip ends."""
        self._last_sent = -float("inf")
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        self._unavailable = _Warning(clock)
        self._undecodable = _Warning(clock)
        self._gets: GroupCommit[str, Task | None] = GroupCommit(
            self._get_many, GET_BATCH, patience=GET_PATIENCE
        )

    async def start(self) -> None:
        """Join (learn the generation, take the lease), then start the heartbeat:
        lease renewal when idle, probes while Redis is away. Redis being away
        at start is left to the heartbeat."""
        # The first reply calibrates the clocks (lease.py), the second renews.
        if await self._round_trip([], [], carry_all=True) is not None:
            await self._round_trip([], [], carry_all=True)
        self._heartbeat = asyncio.create_task(self._beat(), name="asyncflow-cache-heartbeat")

    # -- the TaskCache protocol -------------------------------------------------

    def generation(self) -> int:
        return self._generation

    async def get(self, task_id: str) -> Task | None:
        if not self.breaker.allows():
            return None
        return await self._gets.submit_one(task_id)

    async def _get_many(self, task_ids: list[str]) -> list[Task | None]:
        reply = None
        if self.breaker.allows():
            reply = await self._round_trip([], [self._task_prefix + t for t in task_ids])
        if reply is None:
            return [None] * len(task_ids)
        return [
            self._decoded(t, p) if p is not None else None
            for t, p in zip(task_ids, reply, strict=True)
        ]

    def _decoded(self, task_id: str, payload: bytes | str) -> Task | None:
        try:
            return codec.decode(payload)
        except codec.UndecodablePayload as bad:
            # The put after the store read replaces it (same version or newer).
            self._undecodable(
                "cache entry of task %s is undecodable (%s): read as a miss", task_id, bad
            )
            return None

    async def fill(self, tasks: list[Task], generation: int) -> None:
        if tasks and self.breaker.allows():
            await self._round_trip([self._entry(task, generation) for task in tasks], [])

    async def put(self, tasks: list[Task], generation: int) -> None:
        if not tasks:
            return
        mine = [self._entry(task, generation) for task in tasks]
        for put in mine:
            current = self._pending.get(put.key)
            if current is None or current.version < put.version:
                self._pending[put.key] = put
        # Done once no put of these tasks is pending: each was delivered, or a
        # newer put of the same task was (or was covered by a generation bump).
        while any(put.key in self._pending for put in mine):
            own = [p for p in mine if self._pending.get(p.key) is p and not p.sending]
            if own and self.breaker.allows():
                await self._round_trip(own, [])
                continue
            if self._lease.lapsed():
                self._abandon(mine)
                return
            # Another call carries them (or a newer put of the task), or the
            # breaker is open and the heartbeat will: wait for it.
            progress = self._progress
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), self._lease.until_lapse())

    async def close(self) -> None:
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self.breaker.allows():
            if self._pending or self._abandoned > self._covered:
                await self._round_trip([], [], carry_all=True)
            if not self._pending and self._abandoned == self._covered:
                # Leaving cleanly: no generation bump for the others.
                with contextlib.suppress(RedisError, OSError):
                    await self._redis.zrem(self._members_key, self._member)
        await self._redis.aclose()

    # -- internals --------------------------------------------------------------

    def _entry(self, task: Task, generation: int) -> _Put:
        return _Put(self._task_prefix + task.task_id, task.version, generation, codec.encode(task))

    def _abandon(self, mine: list[_Put]) -> None:
        for put in mine:
            if self._pending.get(put.key) is put:
                del self._pending[put.key]
        self._abandoned += 1
        self._unavailable(
            "redis cache unavailable: a write returned without its cache update;"
            " the cache generation is bumped when redis is reachable again"
        )

    async def _round_trip(
        self, puts: list[_Put], gets: list[str], *, carry_all: bool = False
    ) -> list[Any] | None:
        """One script call with `puts`, the pending puts that failed before (all
        pending puts not in flight with `carry_all`), and `gets`; the payloads
        read (None: a miss), or None when the call failed."""
        pending = list(self._pending.values())
        abandoned = self._abandoned
        bump = abandoned > self._covered
        if bump:
            # Everything pending now committed before this bump: it covers them.
            puts = [p for p in puts if self._pending.get(p.key) is not p]
        else:
            extra = [p for p in pending if not p.sending and (carry_all or p.failed)]
            puts = list({id(p): p for p in [*puts, *extra]}.values())
        for put in puts:
            put.sending = True
        args: list[str | int] = [self._member, 0, int(bump), self._ttl, self._field, len(puts)]
        for put in puts:
            args += [put.version, put.generation, put.payload]
        keys = [self._generation_key, self._members_key, *(p.key for p in puts), *gets]
        self.breaker.trying()
        sent = self._last_sent = self._lease.now()
        # A probe renews nothing: while Redis is unreachable the lease must run
        # out, and a probe that fails could still have renewed it.
        args[1] = 0 if self.breaker.open else self._lease.renewal(sent)
        try:
            reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self.breaker.failed(exc)
            self._unavailable("redis cache unavailable, reading from the store: %s", exc)
            return None
        finally:
            # Not delivered (failed, or cancelled): any call may carry them now.
            for put in puts:
                put.failed, put.sending = put.sending, False
            self._progress.set()
            self._progress = asyncio.Event()
        self._lease.observe(sent, self._lease.now(), int(reply[1]))
        self._generation = int(reply[0])
        self.breaker.succeeded()
        # Delivered, or (with a bump) no longer needed.
        for put in pending if bump else puts:
            if self._pending.get(put.key) is put:
                del self._pending[put.key]
        if bump:
            self._covered = abandoned
            log.warning("redis cache: generation bumped for writes that missed it")
        return list(reply[2:])

    async def _beat(self) -> None:
        while not self._closing:
            if self.breaker.open:
                await asyncio.sleep(self._probe_seconds)
            elif not self._lease.lapsed():
                wait = (self._lease.ms / 3 - (self._lease.now() - self._last_sent)) / 1000
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
            try:
                await self._round_trip([], [], carry_all=True)
            except Exception:
                log.exception("redis cache heartbeat failed unexpectedly")

    async def _check_server(self, connection: AbstractConnection) -> None:
        """On every new connection: a Redis process other than the last one seen
        may have lost acknowledged puts (restarted from a snapshot, or a replica
        promoted), so its arrival starts a new generation."""
        try:
            await connection.send_command("INFO", "server")
            info = await connection.read_response()
            text = info.decode() if isinstance(info, bytes) else str(info)
            run_id = next(
                (line[7:].strip() for line in text.splitlines() if line.startswith("run_id:")), ""
            )
            await connection.send_command(
                "EVAL", scripts.CHECK_SERVER, 2, self._server_key, self._generation_key, run_id
            )
            reset = await connection.read_response()
        except BaseException:
            # Unchecked, the connection must not carry commands: the next use
            # connects (and checks) again. nowait: waiting for the close under
            # redis-py's timeout could turn a cancellation into a TimeoutError.
            await connection.disconnect(nowait=True)
            raise
        if reset == 1:
            log.warning("redis cache: another redis process (%s): new cache generation", run_id)
