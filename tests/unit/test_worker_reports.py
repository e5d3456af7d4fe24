"""The worker's Reporter and LeaseKeeper: reports outlast outages, leases are renewed."""

from __future__ import annotations

from worker_fakes import (
    DEADLINE,
    NOW,
    FakeClock,
    FakeLeases,
    FakeStream,
    FakeTransport,
    Ticker,
    task,
    until,
)

from asyncflow._sdk.job import release_report
from asyncflow._sdk.leases import LeaseKeeper
from asyncflow._sdk.reporter import Reporter
from asyncflow._sdk.stream import Request, StreamConnection, coalesce
from asyncflow.errors import (
    InvalidArgument,
    LeaseLost,
    PermissionDenied,
    RateLimited,
    TaskNotProcessing,
    TaskTypeNotAllowed,
    Unauthenticated,
    Unavailable,
)
from asyncflow.v1 import task_service_pb2 as pb

DOWN = Unavailable("MySQL unavailable", field="")


def success(task_id: str) -> pb.SetTaskRequest:
    report = pb.SetTaskRequest(task_id=task_id, lease_token=f"token-{task_id}")
    report.success.SetInParent()
    return report


def reporter(
    transport: FakeTransport, leases: FakeLeases | None = None
) -> tuple[Reporter, FakeClock, FakeLeases]:
    clock, leases = FakeClock(), leases or FakeLeases()
    transport.clock = clock
    parts = Reporter(transport, leases, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    return parts, clock, leases


async def test_a_report_outlasts_an_outage_longer_than_a_few_attempts() -> None:
    """A 5.6 s store outage: the report lands once the store is back (the old
    worker gave up after 5 attempts, about 3 s)."""
    transport = FakeTransport()
    transport.set_task_results = [DOWN] * 8 + [None]
    parts, clock, leases = reporter(transport)
    parts.send(task("a"), success("a"))
    await parts.settled()
    assert len(transport.set_task_calls) == 9
    assert clock.now - NOW > 5.6
    assert leases.released == ["a"]  # settled: the lease keeper may stop


async def test_a_report_is_sent_again_until_the_lease_deadline_and_not_after() -> None:
    transport = FakeTransport()
    transport.set_task_results = [DOWN]
    parts, clock, leases = reporter(transport)
    parts.send(task("a", deadline=int(NOW) + 30), success("a"))
    await parts.settled()
    times = [at for at, _ in transport.set_task_calls]
    assert times[-1] == NOW + 30  # the last attempt is at the deadline...
    assert all(at < NOW + 30 for at in times[:-1])  # ...none after it
    assert max(clock.sleeps) <= 12.0  # back-off capped at 10 s, ±20 %
    assert leases.released == ["a"]


async def test_a_renewed_lease_keeps_the_report_going() -> None:
    transport = FakeTransport()
    transport.set_task_results = [DOWN]
    leases = FakeLeases(deadlines={"a": int(NOW) + 60})  # renewed since the push
    parts, _, _ = reporter(transport, leases)
    parts.send(task("a", deadline=int(NOW) + 30), success("a"))
    await parts.settled()
    assert transport.set_task_calls[-1][0] == NOW + 60


async def test_a_refusal_that_cannot_change_settles_at_once() -> None:
    for refusal in (
        TaskNotProcessing("already SUCCESS"),
        LeaseLost("recovered"),
        InvalidArgument("context too long", field="context"),
        TaskTypeNotAllowed("a-only may not work on task type 'b'", field="task_id"),
        PermissionDenied("reader may not call SetTask"),
        Unauthenticated("unknown token"),
    ):
        transport = FakeTransport()
        transport.set_task_results = [refusal]
        parts, clock, leases = reporter(transport)
        parts.send(task("a"), success("a"))
        await parts.settled()
        assert len(transport.set_task_calls) == 1, refusal
        assert clock.now == NOW
        assert leases.released == ["a"]


async def test_a_rate_limited_report_waits_the_delay_the_server_asked_for() -> None:
    transport = FakeTransport()
    transport.set_task_results = [RateLimited("over the rate", retry_delay=3.0), None]
    parts, clock, leases = reporter(transport)
    parts.send(task("a"), success("a"))
    await parts.settled()
    assert len(transport.set_task_calls) == 2
    assert clock.sleeps == [3.0]
    assert leases.released == ["a"]


async def test_reports_go_on_the_open_stream_and_by_set_task_once_it_ends() -> None:
    transport = FakeTransport()
    transport.stream = stream = FakeStream()
    transport.set_task_results = [None]
    parts, clock, leases = reporter(transport)
    parts.send(task("a"), success("a"))
    parts.send(task("b"), release_report(task("b")))
    await until(lambda: len(stream.answers) == 2, what="both sent on the stream")
    assert transport.set_task_calls == []

    stream.answer(DOWN)  # a refused for now: sent again after a back-off, on the stream
    await until(lambda: len(stream.answers) == 3, what="a sent again")
    assert stream.answers[2][0].task_id == "a"
    assert clock.now > NOW

    sleeps = len(clock.sleeps)
    stream.end()  # b and the second a: unanswered, maybe applied; sent again at once
    await parts.settled()
    assert sorted(r.task_id for _, r in transport.set_task_calls) == ["a", "b"]
    assert len(clock.sleeps) == sleeps  # no back-off after a stream end
    assert sorted(leases.released) == ["a", "b"]


async def test_an_accepted_stream_report_is_settled() -> None:
    transport = FakeTransport()
    transport.stream = stream = FakeStream()
    parts, _, leases = reporter(transport)
    parts.send(task("a"), success("a"))
    await until(lambda: len(stream.answers) == 1, what="sent")
    assert parts.pending == 1
    stream.answer()
    await parts.settled()
    assert (parts.pending, leases.released) == (0, ["a"])


# -- LeaseKeeper ----------------------------------------------------------------


def keeper(transport: FakeTransport) -> tuple[LeaseKeeper, Ticker, list[str]]:
    ticker, lost = Ticker(), []
    transport.clock = ticker
    parts = LeaseKeeper(transport, lost.append, clock=ticker, sleep=ticker.sleep)  # type: ignore[arg-type]
    return parts, ticker, lost


async def test_leases_are_renewed_every_third_of_their_length() -> None:
    transport = FakeTransport()
    transport.extend_results = [DEADLINE + 10, DEADLINE + 20]
    parts, ticker, lost = keeper(transport)
    parts.keep(task("a"))  # deadline in 30 s
    parts.keep(task("a"))  # kept once
    await until(lambda: len(ticker.sleeps) == 1, what="first wait")
    assert ticker.sleeps == [10.0]
    ticker.tick()
    await until(lambda: parts.deadline("a") == DEADLINE + 10, what="first renewal")
    ticker.tick()
    await until(lambda: parts.deadline("a") == DEADLINE + 20, what="second renewal")
    assert transport.extend_calls == ["a", "a"]
    parts.close()
    assert "a" not in parts
    assert lost == []


async def test_on_an_open_stream_the_renewal_goes_on_the_stream() -> None:
    transport = FakeTransport()
    transport.stream = stream = FakeStream()
    parts, ticker, _ = keeper(transport)
    parts.keep(task("a"))
    await until(lambda: len(ticker.sleeps) == 1, what="first wait")
    ticker.tick()
    await until(lambda: stream.extended == ["a"], what="renewal on the stream")
    parts.renewed("a", DEADLINE + 5)  # the stream's answer
    assert parts.deadline("a") == DEADLINE + 5
    assert transport.extend_calls == []
    parts.close()


async def test_a_lost_lease_stops_renewing_and_is_told() -> None:
    transport = FakeTransport()
    transport.extend_results = [DOWN, LeaseLost("recovered", field="lease_token")]
    parts, ticker, lost = keeper(transport)
    parts.keep(task("a"))
    await until(lambda: len(ticker.sleeps) == 1, what="first wait")
    ticker.tick()  # the store is down: try again next time
    await until(lambda: len(ticker.sleeps) == 2, what="second wait")
    ticker.tick()  # the task was recovered meanwhile
    await until(lambda: lost == ["a"], what="the loss told")
    assert transport.extend_calls == ["a", "a"]  # a failed renewal is not a loss
    assert "a" not in parts


async def test_release_stops_the_renewals() -> None:
    transport = FakeTransport()
    transport.extend_results = [DEADLINE + 10]
    parts, ticker, _ = keeper(transport)
    parts.keep(task("a"))
    await until(lambda: len(ticker.sleeps) == 1, what="first wait")
    parts.release("a")
    await until(lambda: ticker.cancelled == 1, what="the wait cancelled")
    assert transport.extend_calls == []
    assert parts.deadline("a") is None


async def test_leases_held_together_share_one_renewal_until_the_last_is_released() -> None:
    transport = FakeTransport()
    transport.stream = stream = FakeStream()
    parts, ticker, _ = keeper(transport)
    parts.keep_all([task("a"), task("b"), task("c")])
    parts.keep_all([task("a")])  # kept once
    await until(lambda: len(ticker.sleeps) == 1, what="one wait for the three")
    parts.release("b")
    ticker.tick()
    await until(lambda: stream.extended == ["a", "c"], what="the two still held renewed")
    await until(lambda: len(ticker.sleeps) == 2, what="the next wait")
    parts.release("a")
    assert ticker.cancelled == 0  # c is still held
    parts.release("c")
    await until(lambda: ticker.cancelled == 1, what="the wait cancelled with the last")
    assert "c" not in parts


# -- the stream's outgoing batches -------------------------------------------------


def test_a_batch_folds_its_reports_and_start_acks_up_to_a_window_change() -> None:
    def started(*ids: str) -> Request:
        return Request(started=Request.Started(task_ids=list(ids)))

    def reports(*ids: str) -> Request:
        return Request(reports=Request.Reports(reports=[success(i) for i in ids]))

    window = Request(set_window=Request.SetWindow(window=0))
    out = coalesce([started("a"), reports("a"), started("b"), reports("b"), window,
                    reports("c"), started("c"), None])  # fmt: skip
    assert out == [started("a", "b"), reports("a", "b"), window, reports("c"), started("c"), None]


async def test_reports_and_start_acks_join_the_waiting_message_up_to_a_window_change() -> None:
    connection = StreamConnection(None, None)  # type: ignore[arg-type]
    connection.started("a")
    connection.report(success("a"))
    connection.started("b")
    connection.report(success("b"))
    connection.set_window(3)
    connection.report(success("c"))
    connection.started("c")
    queued = []
    while not connection._outbox.empty():
        queued.append(connection._outbox.get_nowait())
    assert queued == [
        Request(started=Request.Started(task_ids=["a", "b"])),
        Request(reports=Request.Reports(reports=[success("a"), success("b")])),
        Request(set_window=Request.SetWindow(window=3)),
        Request(reports=Request.Reports(reports=[success("c")])),
        Request(started=Request.Started(task_ids=["c"])),
    ]
    assert sorted(connection.unacked) == ["a", "b", "c"]
