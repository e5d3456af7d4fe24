"""Client methods from the call builders of asyncflow._sdk.calls, run async or sync.

    class Client:
        get = AsyncMethod(calls.get)     # async def get(task_id: str) -> TaskInfo
    class SyncClient:
        get = SyncMethod(calls.get)      # def get(task_id: str) -> TaskInfo

A method is a descriptor: on a client it is a function with the builder's
parameters (and docstring) that builds the Call and runs it with the client's
runner, on the client's gRPC channels (grpc.aio for Client, grpc's thread-safe
blocking channels for SyncClient). Failed statuses become asyncflow errors.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

import grpc

from asyncflow._sdk.calls import Call, Pages
from asyncflow._sdk.channel import ChannelSettings, aio_works_here, open_aio, open_sync
from asyncflow._sdk.channels import Channels, this_loop
from asyncflow._sdk.errors import call as checked
from asyncflow._sdk.errors import from_rpc_error

P = ParamSpec("P")
T = TypeVar("T")


class AsyncRunner:
    """Runs calls on grpc.aio channels (this process's, opened on first use).

    In a process forked from one that had used grpc.aio, where grpc.aio cannot
    work, each call runs on a blocking channel in a thread instead."""

    def __init__(self, address: str, settings: ChannelSettings, timeout: float) -> None:
        self.channels = Channels(address, settings, open_aio, scope=this_loop)
        self.timeout = timeout
        self._blocking: SyncRunner | None = None

    async def run(self, call: Call[T]) -> T:
        if not aio_works_here():
            if self._blocking is None:
                self._blocking = SyncRunner(self.channels.address, self.channels.settings,
                                            self.timeout)  # fmt: skip
            return await asyncio.to_thread(self._blocking.run, call)
        if self.channels.target is None:  # a list of names: look them up off the loop
            await asyncio.to_thread(self.channels.resolve)
        rpc = getattr(self.channels.stub(call.route), call.method)
        reply = await checked(lambda: rpc(call.request, timeout=self.timeout))
        return call.convert(reply)

    async def pages(self, pages: Pages[T]) -> AsyncIterator[T]:
        token = ""
        while True:
            items, token = await self.run(pages.page(token))
            for item in items:
                yield item
            if not token:
                return

    async def close(self) -> None:
        for channel in self.channels.close():
            await channel.close()
        if self._blocking is not None:
            self._blocking.close()


class SyncRunner:
    """Runs calls on grpc's blocking channels, which any thread may share."""

    def __init__(self, address: str, settings: ChannelSettings, timeout: float) -> None:
        self.channels = Channels(address, settings, open_sync)
        self.timeout = timeout

    def run(self, call: Call[T]) -> T:
        stub = self.channels.stub(call.route)
        try:
            reply = getattr(stub, call.method)(call.request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return call.convert(reply)

    def pages(self, pages: Pages[T]) -> Iterator[T]:
        token = ""
        while True:
            items, token = self.run(pages.page(token))
            yield from items
            if not token:
                return

    def close(self) -> None:
        for channel in self.channels.close():
            channel.close()


class AsyncClientBase(Protocol):
    runner: AsyncRunner


class SyncClientBase(Protocol):
    runner: SyncRunner


B = TypeVar("B")
R = TypeVar("R")


def _bind(build: Callable[P, B], run: Callable[[B], R]) -> Callable[P, R]:
    """A function with the builder's parameters that runs what the builder returns."""

    def method(*args: P.args, **kwargs: P.kwargs) -> R:
        return run(build(*args, **kwargs))

    return method


class _Descriptor(Generic[P, B]):
    """Binds once per client: the bound function is kept in the client's __dict__,
    which Python looks in before a descriptor without __set__ (like
    functools.cached_property), so later calls cost a plain attribute lookup."""

    def __init__(self, build: Callable[P, B]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.name = build.__name__
        self._signature = inspect.signature(build).replace(
            return_annotation=inspect.Signature.empty
        )

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    def _keep(self, client: object, method: Callable[..., Any]) -> Any:
        """`method` named and documented as the builder (for help()), kept on `client`."""
        method.__name__ = method.__qualname__ = self.name
        method.__doc__ = self.build.__doc__
        setattr(method, "__signature__", self._signature)  # noqa: B010  (not declared)
        vars(client)[self.name] = method
        return method


class AsyncMethod(_Descriptor[P, Call[T]]):
    """A Client method: `await client.name(...)` runs the call `build(...)`."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> AsyncMethod[P, T]: ...
    @overload
    def __get__(
        self, client: AsyncClientBase, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: AsyncClientBase | None, owner: type[Any]) -> Any:
        return self if client is None else self._keep(client, _bind(self.build, client.runner.run))


class SyncMethod(_Descriptor[P, Call[T]]):
    """A SyncClient method: `client.name(...)` runs the call `build(...)` and waits."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> SyncMethod[P, T]: ...
    @overload
    def __get__(self, client: SyncClientBase, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, client: SyncClientBase | None, owner: type[Any]) -> Any:
        return self if client is None else self._keep(client, _bind(self.build, client.runner.run))


class AsyncListing(_Descriptor[P, Pages[T]]):
    """A Client listing: `async for item in client.name(...)` fetches page after page."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> AsyncListing[P, T]: ...
    @overload
    def __get__(
        self, client: AsyncClientBase, owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: AsyncClientBase | None, owner: type[Any]) -> Any:
        return (
            self if client is None else self._keep(client, _bind(self.build, client.runner.pages))
        )


class SyncListing(_Descriptor[P, Pages[T]]):
    """A SyncClient listing: `for item in client.name(...)` fetches page after page."""

    @overload
    def __get__(self, client: None, owner: type[Any]) -> SyncListing[P, T]: ...
    @overload
    def __get__(self, client: SyncClientBase, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    def __get__(self, client: SyncClientBase | None, owner: type[Any]) -> Any:
        return (
            self if client is None else self._keep(client, _bind(self.build, client.runner.pages))
        )
