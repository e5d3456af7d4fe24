"""A client's channels, opened on first use: one per route in each process (and,
for grpc.aio channels, in each event loop, since one is bound to the loop that
opened it: a script may call asyncio.run twice, Django runs async code in
loops of its own).

Why per process: gRPC's own fork support (GRPC_ENABLE_FORK_SUPPORT) needs an
environment variable set before grpc is imported and a particular polling
engine, and even then the parent's channels cannot be used in the child.
Pre-forking servers (gunicorn --preload, uWSGI, Celery prefork) fork after the
application was imported, often after it made calls. So each process opens its
own channels the first time it makes a call, keyed by os.getpid(): a forked
child never uses its parent's channels (it leaves them alone, it does not close
them) and opens new connections (gRPC's global subchannel pool is not used:
see channel.channel_options).

No lock: two threads racing to open the same route each build a channel and
`setdefault` keeps one; the other was never used, so it never connected. A
lock held by another thread at fork() would stay held forever in the child.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from asyncflow._sdk.channel import ChannelSettings, Route, grpc_target, is_list

C = TypeVar("C")
S = TypeVar("S")
Opener = Callable[[str, Route, ChannelSettings], tuple[C, S]]
"""(target, route, settings) -> a new channel and its stub."""


def this_process() -> Hashable:
    return os.getpid()


def this_loop() -> Hashable:
    return os.getpid(), asyncio.get_running_loop()


class Channels(Generic[C, S]):
    def __init__(
        self,
        address: str,
        settings: ChannelSettings,
        opener: Opener[C, S],
        scope: Callable[[], Hashable] = this_process,
    ) -> None:
        self.address = address
        self.settings = settings
        self._opener = opener
        self._scope = scope
        self.target: str | None = None if is_list(address) else grpc_target(address)
        """The gRPC target; None until a list's names are looked up (resolve())."""
        self._by_scope: dict[Hashable, dict[Route, tuple[C, S]]] = {}
        self.closed = False

    def resolve(self) -> str:
        """Look up the replicas of a list (blocking, once)."""
        if self.target is None:
            self.target = grpc_target(self.address)
        return self.target

    def stub(self, route: Route) -> S:
        """The stub of this scope's channel for `route`, opened if need be."""
        if self.closed:
            raise RuntimeError("the client is closed")
        scope = self._scope()
        opened = self._by_scope.get(scope)
        if opened is None:
            self._forget_closed_loops()
            opened = self._by_scope.setdefault(scope, {})
        found = opened.get(route)
        if found is None:
            found = opened.setdefault(route, self._opener(self.resolve(), route, self.settings))
        return found[1]

    def close(self) -> list[C]:
        """Forget this scope's channels and return them, for the caller to close.
        Calls made afterwards raise RuntimeError."""
        self.closed = True
        return [channel for channel, _ in self._by_scope.pop(self._scope(), {}).values()]

    def _forget_closed_loops(self) -> None:
        """Channels of an event loop that is closed can be neither used nor closed."""
        for scope in list(self._by_scope):
            if isinstance(scope, tuple) and scope[1].is_closed():
                del self._by_scope[scope]
