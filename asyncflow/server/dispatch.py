"""Running WorkTasks streams: the parts that move messages for one WorkSession.

A stream is three pieces of work around one session, each with one job:

- the RequestReader reads the worker's messages and hands each to the Answerer,
  until the worker half-closes or the session closes (a message that cannot
  be decoded ends the stream with INVALID_ARGUMENT, as a protocol error);
- the Answerer applies a request to the session and puts the answer in the
  Outbox (report and extend batches concurrently, so one batch's round trips do
  not hold up the next); a request that fails ends the stream with its error;
- the pusher (WorkSession.push_loop) holds due tasks whenever the window has
  room and puts them in the Outbox, which closes when the session does.

The Dispatcher opens a session per stream, sends the Outbox's responses in
order, and, once the stream ends, answers the batches already read (a worker
must not lose an outcome it sent) and gives back the tasks the worker never
started.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator

from asyncflow.core.service import TaskCore
from asyncflow.errors import InvalidArgument, MalformedRequest
from asyncflow.server.auth.scope import CALLER
from asyncflow.server.session import Response, WorkSession
from asyncflow.server.wakeup import WakeHub
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger(__name__)

CONCURRENT = ("reports", "extend")
"""Requests answered concurrently: their batches touch disjoint tasks."""


class Outbox:
    """Responses waiting to be sent to the worker, in order, until closed."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Response | None] = asyncio.Queue()

    async def put(self, response: Response) -> None:
        await self._queue.put(response)

    def notify(self, response: Response) -> None:
        """put() for callers outside the stream's tasks (the queue is unbounded)."""
        self._queue.put_nowait(response)

    def close(self) -> None:
        """No more pushes: the responses already in the outbox are still sent."""
        self._queue.put_nowait(None)

    async def until_closed(self) -> AsyncIterator[Response]:
        while (response := await self._queue.get()) is not None:
            yield response

    def leftovers(self) -> list[Response]:
        """What was put after the close (late answers), without waiting."""
        left = []
        while not self._queue.empty():
            if (response := self._queue.get_nowait()) is not None:
                left.append(response)
        return left


class Answerer:
    """Applies a stream's requests to its session and puts the answers in the outbox."""

    def __init__(self, session: WorkSession, outbox: Outbox) -> None:
        self._session = session
        self._outbox = outbox
        self._answering: set[asyncio.Task[None]] = set()
        self.failure: Exception | None = None
        """The first request that failed: the stream ends with its error."""

    async def answer(self, request: pb.WorkTasksRequest) -> None:
        try:
            response = await self._session.handle(request)
        except Exception as failure:  # a protocol error, the store, or a bug: end the stream
            self.fail(failure)
            return
        if response is not None:
            await self._outbox.put(response)

    def fail(self, failure: Exception) -> None:
        """End the stream with `failure`'s status (the first failure wins)."""
        self.failure = self.failure or failure
        self._session.close()

    def answer_soon(self, request: pb.WorkTasksRequest) -> None:
        """Answer in the background (see CONCURRENT)."""
        answering = asyncio.create_task(self.answer(request))
        self._answering.add(answering)
        answering.add_done_callback(self._answering.discard)

    async def settle(self) -> None:
        """Wait until every request taken so far is answered."""
        await asyncio.gather(*self._answering, return_exceptions=True)


class RequestReader:
    """Reads the worker's requests after subscribe and hands them to the answerer."""

    def __init__(self, session: WorkSession, answerer: Answerer) -> None:
        self._session = session
        self._answerer = answerer

    async def run(self, requests: AsyncIterator[pb.WorkTasksRequest]) -> None:
        try:
            async for request in requests:
                if request.WhichOneof("request") in CONCURRENT:
                    self._answerer.answer_soon(request)
                else:
                    await self._answerer.answer(request)
                if self._session.closed:
                    return
        except MalformedRequest as undecodable:  # from asyncflow.server.decoding
            self._answerer.fail(undecodable)
        finally:
            self._session.close()  # the worker half-closed, or the session ended


async def push(session: WorkSession, outbox: Outbox) -> None:
    """Push due tasks into the outbox until the session closes, then close it."""
    try:
        await session.push_loop(outbox.put)
    finally:
        outbox.close()


class Dispatcher:
    """Owns the hub and every open stream of this server."""

    def __init__(self, core: TaskCore, hub: WakeHub) -> None:
        self.core = core
        self.hub = hub
        self.sessions: dict[str, WorkSession] = {}
        self.outboxes: dict[str, Outbox] = {}
        """Of the open streams, by session key (for cancel notices)."""
        self.all_sessions: weakref.WeakSet[WorkSession] = weakref.WeakSet()
        """Open streams and streams still cleaning up."""

    async def serve(self, requests: AsyncIterator[pb.WorkTasksRequest]) -> AsyncIterator[Response]:
        """Run one WorkTasks stream, yielding what to send to the worker."""
        first = await anext(requests, None)
        if first is None or not first.HasField("subscribe"):
            raise InvalidArgument("the first message must be subscribe", field="subscribe")
        session = await WorkSession.open(self.core, self.hub, first.subscribe)
        self.sessions[session.key] = session
        self.all_sessions.add(session)
        caller = CALLER.get()
        log.info(
            "stream %s opened by %s%s for %s (window %d)",
            session.key, session.worker_id or "a worker",
            f" ({caller.via} {caller.name})" if caller and caller.via != "anonymous" else "",
            ",".join(session.task_types), session.window,
        )  # fmt: skip
        outbox = Outbox()
        self.outboxes[session.key] = outbox
        session.notify = outbox.notify
        answerer = Answerer(session, outbox)
        reader = asyncio.create_task(RequestReader(session, answerer).run(requests))
        pusher = asyncio.create_task(push(session, outbox))
        try:
            yield Response(
                subscribed=Response.Subscribed(stream_id=session.key, window=session.window)
            )
            async for response in outbox.until_closed():
                yield response
            # The session is closed (the worker half-closed, a request failed, or
            # the server shuts down): read nothing more, but apply and answer the
            # batches already taken: a worker must not lose an outcome it sent.
            await pusher
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await answerer.settle()
            for response in outbox.leftovers():
                yield response
            if answerer.failure is not None:
                raise answerer.failure
        finally:
            session.close()
            self.sessions.pop(session.key, None)
            self.outboxes.pop(session.key, None)
            # Shielded: the RPC may be cancelled again while we clean up, and the
            # un-started tasks must go back to the queue regardless.
            await asyncio.shield(self._finish(session, reader, pusher))

    def cancelled(self, held: list[tuple[str, str]], reason: str) -> int:
        """Tell each stream holding one of these (task_id, lease_token) that an
        operator cancelled it (asyncflow.server.cancels); returns how many were told."""
        told = 0
        for key, session in list(self.sessions.items()):
            task_ids = session.drop_cancelled(held)
            if task_ids and key in self.outboxes:
                cancelled = Response.Cancelled(task_ids=task_ids, reason=reason)
                self.outboxes[key].notify(Response(cancelled=cancelled))
                told += len(task_ids)
        return told

    @staticmethod
    async def _finish(session: WorkSession, *tasks: asyncio.Task[None]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            released = await session.release_unstarted()
            log.info("stream %s closed; %d un-started tasks released", session.key, released)
        finally:
            session.finished.set()

    async def shutdown(self, grace: float) -> None:
        """End every stream and wait (up to `grace` seconds) until each has released its
        un-started tasks; workers reconnect elsewhere."""
        waiting = [s for s in self.all_sessions if not s.finished.is_set()]
        for session in waiting:
            session.close()
        if waiting:
            await asyncio.wait([asyncio.ensure_future(s.finished.wait()) for s in waiting],
                               timeout=grace)  # fmt: skip
