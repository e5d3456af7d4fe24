"""Cancel notices: the core's CancelListener.

When an operator cancels a task that was held, the stream that pushed it must
tell its worker to stop the stage. The stream may be on any replica: the notice
goes to this replica's dispatcher, and to the others through the Redis relay
(`<cache.key_prefix>cancel`). A notice names each task with the lease token it
was held under, so that it can never reach a later holder of the same task (a
retried task held again). A worker that misses the notice (its stream ended, a
replica did not hear it) learns of the cancel at its next lease renewal, which
is refused with TASK_CANCELLED.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Protocol

from asyncflow.server.relay import RedisRelay

log = logging.getLogger(__name__)


class Streams(Protocol):
    """Where the streams of this replica are (asyncflow.server.dispatch.Dispatcher)."""

    def cancelled(self, held: list[tuple[str, str]], reason: str) -> int: ...


class CancelNotices:
    def __init__(
        self, streams: Streams, relay: RedisRelay | None = None, channel: str = ""
    ) -> None:
        self._streams = streams
        self._relay = relay
        self._channel = channel
        self._publishing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Take the other replicas' notices (before the relay starts)."""
        if self._relay is not None:
            self._relay.listen(self._channel, self._received)

    def tasks_cancelled(self, held: list[tuple[str, str]], reason: str) -> None:
        self._streams.cancelled(held, reason)
        if self._relay is not None:
            text = json.dumps({"held": held, "reason": reason})
            publishing = asyncio.ensure_future(self._relay.publish(self._channel, text))
            self._publishing.add(publishing)
            publishing.add_done_callback(self._publishing.discard)

    def _received(self, text: str) -> None:
        try:
            notice = json.loads(text)
            held = [(str(task_id), str(token)) for task_id, token in notice["held"]]
            reason = str(notice["reason"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed cancel notice: %.200r", text)
            return
        self._streams.cancelled(held, reason)

    async def close(self) -> None:
        """Let the notices on their way go (the relay is the server's to close)."""
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
