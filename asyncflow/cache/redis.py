"""Redis task cache shared by every replica.

Entries are "<version>:<json>" strings written by a Lua script that keeps the
higher version, so concurrent writers and late readers across replicas converge
on the newest state. Redis errors are logged (at most once per interval) and
read as misses: Redis down costs speed, never correctness.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from asyncflow.cache import codec
from asyncflow.core.model import Task

log = logging.getLogger(__name__)

PUT_IF_NEWER = """
for i, key in ipairs(KEYS) do
    local version = tonumber(ARGV[2 * i - 1])
    local current = redis.call('GET', key)
    local current_version = current and tonumber(string.match(current, '^(%d+):'))
    if not current_version or current_version < version then
        redis.call('SET', key, ARGV[2 * i - 1] .. ':' .. ARGV[2 * i], 'EX', ARGV[#ARGV])
    end
end
return 0
"""

WARN_EVERY_SECONDS = 30.0


class RedisTaskCache:
    def __init__(self, client: aioredis.Redis, *, key_prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._prefix = key_prefix + "task:"
        self._ttl = ttl_seconds
        self._put_script = client.register_script(PUT_IF_NEWER)
        self._last_warning = 0.0

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str, ttl_seconds: int) -> RedisTaskCache:
        # Short timeouts: a slow or dead Redis must not hold up requests.
        client = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        return cls(client, key_prefix=key_prefix, ttl_seconds=ttl_seconds)

    def _degraded(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("redis cache unavailable, reading from the store: %s", exc)

    async def get(self, task_id: str) -> Task | None:
        try:
            raw = await self._redis.get(self._prefix + task_id)
        except (RedisError, OSError) as exc:
            self._degraded(exc)
            return None
        if raw is None:
            return None
        if isinstance(raw, str):
            raw = raw.encode()
        _, _, payload = raw.partition(b":")
        return codec.decode(payload)

    async def put(self, tasks: list[Task]) -> None:
        if not tasks:
            return
        args: list[str | int] = []
        for task in tasks:
            args += [task.version, codec.encode(task)]
        args.append(self._ttl)
        try:
            await self._put_script(keys=[self._prefix + t.task_id for t in tasks], args=args)
        except (RedisError, OSError) as exc:
            self._degraded(exc)

    async def close(self) -> None:
        await self._redis.aclose()
