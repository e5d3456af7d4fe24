"""The rules of asyncflow: what each operation does, independent of gRPC and SQL.

The servicer decodes and validates requests and calls one method here; this
module decides transitions (policy), talks to the store (the source of truth)
and keeps the cache coherent by publishing every row it writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace

from asyncflow.core import observe, policy
from asyncflow.core.group import GroupCommit
from asyncflow.core.ids import (
    MAX_POS,
    MAX_ROW_ID,
    check_idempotency_key,
    check_task_type,
    parse_task_id,
)
from asyncflow.core.model import (
    Claim,
    CreateRequest,
    Fail,
    NextStage,
    Outcome,
    PageCursor,
    Release,
    Report,
    Retry,
    RetryPolicy,
    RetryStrategy,
    Success,
    Task,
    TaskChange,
    TaskFilter,
    TaskInsert,
    TaskStatus,
    TaskTypeConfig,
    TypeSettings,
    from_fields,
)
from asyncflow.core.ports import (
    Clock,
    DueListener,
    HandOff,
    Metrics,
    NoMetrics,
    Taker,
    TaskCache,
    TaskStore,
)
from asyncflow.core.validate import (
    MAX_ERROR_CHARS,
    MAX_STAGE_CHARS,
    MAX_USER_ID_CHARS,
    Limits,
    check_context,
    check_lease_token,
    check_range,
    check_text,
)
from asyncflow.errors import (
    AsyncflowError,
    InvalidArgument,
    LeaseLost,
    TaskCancelled,
    TaskNotFound,
    TaskNotProcessing,
    TaskTypeNotFound,
)

log = logging.getLogger(__name__)

DEFAULT_TYPE = TaskTypeConfig(
    task_type="",
    schedule_limit=100,
    schedule_interval=10,
    max_processing_time=30,
    max_retry_num=3,
    retry=RetryPolicy(RetryStrategy.PROGRESSIVE, interval=5, max_interval=30),
)
"""Settings of a newly registered type, from the original's sample `lark` row."""

DAY = 86_400
CREATE_BATCH = 500
"""Most creates one group commit takes (one multi-row INSERT per type)."""
CREATE_PATIENCE = 16
"""Most quiet turns of the loop a create batch waits for more creates, after the
load (core/group.py; a lone caller waits 3). With 128 CreateTask calls in
flight on SQLite: server CPU per create 0.27 -> 0.24 ms; on MariaDB the
commit's wait already gathers large batches (no change measured), and a
one-by-one create's p50 did not move (docs/benchmarks.md)."""
HOLDS_PER_ROUND = 16
"""Holds claimed in one transaction at most (each up to limits.max_hold_limit tasks)."""
REPLY_ENVELOPE_BYTES = 64
"""A hold reply's bytes around its tasks (HoldTasksResponse / a pushed Tasks message)."""
LEASE_RACE_RETRIES = 3
MAX_PAGE_TOKEN_CHARS = 256


class NoListener:
    """No streaming dispatch to tell (tools and benchmarks that run the core alone)."""

    def tasks_due(self, task_type: str, when: int, count: int) -> None:
        return None


class NoHandOff:
    """No stream waits here (tools and benchmarks that run the core alone)."""

    def offer(self, task_type: str, count: int) -> list[Taker]:
        return []


class TaskCore:
    def __init__(
        self,
        store: TaskStore,
        cache: TaskCache,
        clock: Clock,
        limits: Limits | None = None,
        on_due: DueListener | None = None,
        metrics: Metrics | None = None,
        handoff: HandOff | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.clock = clock
        self.limits = limits or Limits()
        self.on_due: DueListener = on_due or NoListener()
        self.metrics: Metrics = metrics or NoMetrics()
        self._creates: GroupCommit[TaskInsert, Task | str | Exception] = GroupCommit(
            self._insert_batch, CREATE_BATCH, patience=CREATE_PATIENCE
        )
        self.handoff: HandOff = handoff or NoHandOff()
        self._reporting: GroupCommit[tuple[Report, Task | None], Task | AsyncflowError] = (
            GroupCommit(self._set_chunk, self.limits.max_hold_limit)
        )
        """Concurrent reports (every stream's, and SetTask's) share one transaction."""
        self._holding: GroupCommit[tuple[str, int], list[Task] | AsyncflowError] = GroupCommit(
            self._hold_round, HOLDS_PER_ROUND
        )
        """Concurrent holds share a claim transaction per type."""

    # -- task types -----------------------------------------------------------

    async def register_type(self, settings: TypeSettings) -> TaskTypeConfig:
        check_task_type(settings.task_type)
        current = await self.store.type_get(settings.task_type) or replace(
            DEFAULT_TYPE, task_type=settings.task_type
        )
        retry = current.retry
        config = replace(
            current,
            schedule_limit=check_range(
                _pick(settings.schedule_limit, current.schedule_limit),
                "schedule_limit",
                1,
                self.limits.max_hold_limit,
            ),
            schedule_interval=check_range(
                _pick(settings.schedule_interval, current.schedule_interval),
                "schedule_interval_seconds",
                1,
                DAY,
            ),
            max_processing_time=check_range(
                _pick(settings.max_processing_time, current.max_processing_time),
                "max_processing_time_seconds",
                1,
                7 * DAY,
            ),
            max_retry_num=check_range(
                _pick(settings.max_retry_num, current.max_retry_num), "max_retry_num", 0, 1000
            ),
            retry=RetryPolicy(
                strategy=settings.retry_strategy or retry.strategy,
                interval=check_range(
                    _pick(settings.retry_interval, retry.interval),
                    "retry_interval_seconds",
                    1,
                    30 * DAY,
                ),
                max_interval=check_range(
                    _pick(settings.max_retry_interval, retry.max_interval),
                    "max_retry_interval_seconds",
                    1,
                    30 * DAY,
                ),
            ),
        )
        stored = await self.store.type_upsert(config, self.clock.now())
        log.info("registered task type %s", stored.task_type)
        return stored

    async def list_types(self) -> list[TaskTypeConfig]:
        return await self.store.type_list()

    async def task_type(self, task_type: str, field: str = "task_type") -> TaskTypeConfig:
        check_task_type(task_type, field)
        config = await self.store.type_get(task_type)
        if config is None:
            raise TaskTypeNotFound(f"task type {task_type!r} is not registered", field=field)
        return config

    # -- producers ------------------------------------------------------------

    async def create_task(self, request: CreateRequest) -> tuple[Task, bool]:
        """Insert a task; with an idempotency key already used, return that task instead.

        Concurrent creates share one transaction (core/group.py): the task is
        committed when this returns, as with a transaction of its own.
        """
        result = await self._creates.submit_one(self._insertable(request))
        if isinstance(result, Exception):  # this create's own refusal (a type not registered)
            raise result
        if isinstance(result, str):  # an idempotency key already used: that task, as it is now
            task = await self.get_task(result)
            observe.tally(self.metrics, "created", observe.created([(task, False)]))
            return task, False
        return result, True

    async def create_tasks(self, requests: list[CreateRequest]) -> list[tuple[Task, bool]]:
        """Validate every request first (nothing is created if one is bad), then insert."""
        if len(requests) > self.limits.max_hold_limit:
            raise InvalidArgument(
                f"tasks has {len(requests)} items, over the limit of {self.limits.max_hold_limit}",
                field="tasks",
            )
        news = []
        now = self.clock.now()  # one instant for the batch, as for one transaction
        for index, request in enumerate(requests):
            try:
                news.append(self._insertable(request, now))
            except InvalidArgument as bad:
                raise InvalidArgument(
                    f"tasks[{index}]: {bad.message}", field=f"tasks[{index}].{bad.field}"
                ) from None
        try:
            return await self._insert(news)
        except TaskTypeNotFound as missing:
            registered = {config.task_type for config in await self.store.type_list()}
            index = next(i for i, r in enumerate(requests) if r.task_type not in registered)
            raise TaskTypeNotFound(
                f"tasks[{index}]: {missing.message}", field=f"tasks[{index}].task_type"
            ) from None

    def _insertable(self, request: CreateRequest, now: int | None = None) -> TaskInsert:
        if request.user_id:
            check_text(request.user_id, "user_id", MAX_USER_ID_CHARS)
        if request.task_stage:
            check_text(request.task_stage, "task_stage", MAX_STAGE_CHARS)
        if request.context:
            check_context(request.context, self.limits)
        check_range(request.priority, "priority", 0, policy.MAX_PRIORITY)
        key = check_idempotency_key(request.idempotency_key) if request.idempotency_key else None
        now = self.clock.now() if now is None else now
        check_range(request.run_at, "run_at", 0, now + policy.MAX_DELAY)
        # Without TaskInsert's __init__ (model.from_fields): a create_many builds 1,000.
        return from_fields(TaskInsert, {
            "task_type": check_task_type(request.task_type),
            "user_id": request.user_id,
            "task_stage": request.task_stage,
            "priority": request.priority,
            "context": request.context,
            "order_time": policy.order_time_for_create(now, request.priority, request.run_at),
            "idempotency_key": key,
            "lease_token": "",
        })  # fmt: skip

    async def _insert(self, news: list[TaskInsert]) -> list[tuple[Task, bool]]:
        results = await self._write(news)
        # An idempotency key already used: that task, as it is now.
        final = [
            (r, True) if isinstance(r, Task) else (await self.get_task(r), False) for r in results
        ]
        observe.tally(self.metrics, "created", observe.created([f for f in final if not f[1]]))
        return final

    async def _write(self, news: list[TaskInsert]) -> list[Task | str]:
        """Insert `news` in one transaction and wake the dispatcher once for them
        all; a Task per insert, or the task id its key already names.

        The cache is not written: a new task id never had an entry (ids carry
        their table position, which only grows), so there is no older state to
        hide, and the first GetTask fills it from the store. That spares every
        create a cache round trip.
        """
        news, takers = self._hand_off(news)
        try:
            results = await self.store.task_insert_many(news, self.clock.now())
        except BaseException:
            for taker in takers.values():
                taker.cancel()
            raise
        for index, taker in takers.items():
            result = results[index]
            if isinstance(result, Task) and result.status is TaskStatus.PROCESSING:
                taker.take(result)  # committed under its lease: push it now
            else:
                taker.cancel()
        created = [r for r in results if isinstance(r, Task)]
        self._announce([t for t in created if t.status is TaskStatus.PENDING])
        observe.tally(self.metrics, "created", observe.created([(t, True) for t in created]))
        return results

    async def _insert_batch(self, news: list[TaskInsert]) -> list[Task | str | Exception]:
        """The flush of the create batcher: a type that is not registered fails
        its own callers only; the others are inserted together."""
        try:
            return list(await self._write(news))
        except TaskTypeNotFound:
            pass
        registered = {config.task_type for config in await self.store.type_list()}
        good = [n for n in news if n.task_type in registered]
        written = iter(await self._write(good) if good else [])
        return [
            next(written)
            if n.task_type in registered
            else TaskTypeNotFound(f"task type {n.task_type!r} is not registered",
                                  field="task_type")
            for n in news
        ]  # fmt: skip

    def _hand_off(self, news: list[TaskInsert]) -> tuple[list[TaskInsert], dict[int, Taker]]:
        """Lease the tasks due now to streams of this replica that wait with room
        (HandOff): they are inserted PROCESSING, the store checking in the same
        transaction that the type is not paused. If the push then fails (the
        stream ends), the lease expires and stuck recovery returns the task; a
        late report under it is refused like any stale lease."""
        now = self.clock.now()
        takers: dict[int, Taker] = {}
        by_type: dict[str, list[int]] = {}
        for index, new in enumerate(news):
            if new.order_time <= now:
                by_type.setdefault(new.task_type, []).append(index)
        if not by_type:
            return news, takers
        news = list(news)
        for task_type, indices in by_type.items():
            offered = self.handoff.offer(task_type, len(indices))  # maybe fewer
            for index, taker in zip(indices, offered, strict=False):
                takers[index] = taker
                news[index] = replace(news[index], lease_token=taker.lease_token)
        return news, takers

    # -- readers --------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        task_type, pos = parse_task_id(task_id)
        task = await self.cache.get(task_id)
        self.metrics.cache_lookup(hit=task is not None)
        if task is None:
            generation = self.cache.generation()
            task = await self.store.task_get(task_type, pos, task_id)
            if task is None:
                raise TaskNotFound(f"task {task_id!r} does not exist", field="task_id")
            await self.cache.fill([task], generation)
        return task

    async def list_tasks(
        self, task_type: str, where: TaskFilter, page_size: int, page_token: str
    ) -> tuple[list[Task], str]:
        config = await self.task_type(task_type)
        if where.task_stage is not None:
            check_text(where.task_stage, "task_stage", MAX_STAGE_CHARS)
        if where.user_id is not None:
            check_text(where.user_id, "user_id", MAX_USER_ID_CHARS)
        limit = min(page_size or self.limits.default_page_size, self.limits.max_page_size)
        after = _decode_page_token(page_token, task_type) if page_token else None
        tasks = await self.store.task_list(config, where, after, limit)
        next_token = ""
        if len(tasks) == limit:
            next_token = _encode_page_token(task_type, PageCursor(tasks[-1].pos, tasks[-1].row_id))
        return tasks, next_token

    async def count_tasks(self, task_type: str) -> dict[TaskStatus, int]:
        return await self.store.task_count(await self.task_type(task_type))

    # -- workers --------------------------------------------------------------

    async def hold_tasks(self, task_type: str, limit: int) -> list[Task]:
        """Lease up to `limit` due tasks (0: the type's schedule_limit) to one holder,
        as many of the oldest as fit in one reply of limits.max_reply_bytes.

        Concurrent holds (streams, HoldTasks) share a round: one config read and
        one claim transaction per type, one cache write (GroupCommit)."""
        check_task_type(task_type)
        (held,) = await self._holding.submit([(task_type, limit)])
        if isinstance(held, AsyncflowError):
            raise held
        return held

    async def _hold_round(self, holds: list[tuple[str, int]]) -> list[list[Task] | AsyncflowError]:
        results: list[list[Task] | AsyncflowError] = [[] for _ in holds]
        by_type: dict[str, list[int]] = {}
        for index, (task_type, _) in enumerate(holds):
            by_type.setdefault(task_type, []).append(index)
        generation = self.cache.generation()
        held: list[Task] = []
        for task_type, indices in by_type.items():
            try:
                config = await self.task_type(task_type)
            except AsyncflowError as refused:  # not registered: those holds only
                for index in indices:
                    results[index] = refused
                continue
            if config.paused:  # PauseTaskType: nothing held until ResumeTaskType
                continue
            now = self.clock.now()
            claims = [
                (
                    min(holds[index][1] or config.schedule_limit, self.limits.max_hold_limit),
                    Claim(
                        token=secrets.token_hex(16),
                        deadline=now + config.max_processing_time,
                        now=now,
                        max_bytes=self.limits.max_reply_bytes - REPLY_ENVELOPE_BYTES,
                    ),
                )
                for index in indices
            ]
            shares = await self.store.task_claim_due_many(config, claims)
            for index, tasks in zip(indices, shares, strict=True):
                results[index] = tasks
                held += tasks
            self.metrics.tasks("held", task_type, "", sum(len(tasks) for tasks in shares))
        await self.cache.put(held, generation)
        return results

    async def set_task(
        self, task_id: str, lease_token: str, outcome: Outcome, context: str | None = None
    ) -> Task:
        """Apply a holder's report, only while its lease is the task's current one."""
        (result,) = await self.set_tasks([Report(task_id, lease_token, outcome, context)])
        if isinstance(result, AsyncflowError):
            raise result
        return result

    async def set_tasks(
        self, reports: list[Report], known: Mapping[str, Task] | None = None
    ) -> list[Task | AsyncflowError]:
        """Apply a batch of reports (a stream's Reports message), each exactly as
        set_task would, in chunks of at most limits.max_hold_limit reports.

        A message may hold any number of reports; chunks keep each transaction
        (and each statement's list of bound values, which SQLite limits) bounded.
        Concurrent calls share transactions (GroupCommit).

        `known`: tasks as the caller last saw them written (a stream keeps what
        it pushed), by id. A report whose token is that task's lease is decided
        on it without reading the row; the write is fenced by the row's version,
        so a task that changed since is read and decided again.
        """
        known = known or {}
        size = self.limits.max_hold_limit
        results: list[Task | AsyncflowError] = []
        for first in range(0, len(reports), size):
            chunk = reports[first : first + size]
            results.extend(await self._reporting.submit([(r, known.get(r.task_id)) for r in chunk]))
        return results

    async def _set_chunk(
        self, items: list[tuple[Report, Task | None]]
    ) -> list[Task | AsyncflowError]:
        """One read per table (none for the tasks known), one transaction, one cache write."""
        reports = [report for report, _ in items]
        results: list[Task | AsyncflowError | None] = [None] * len(reports)
        where: dict[int, tuple[str, int]] = {}
        # The row each report is decided on, by report: a task may be reported
        # twice in one batch (by a stale holder and the current one).
        rows: dict[int, Task | None] = {
            index: seen
            for index, (report, seen) in enumerate(items)
            if seen is not None and seen.lease_token == report.lease_token
        }
        for index, report in enumerate(reports):
            try:
                where[index] = parse_task_id(report.task_id)
                check_lease_token(report.lease_token)
                if report.context is not None:
                    check_context(report.context, self.limits)
                _check_outcome(report.outcome)
            except AsyncflowError as refused:
                results[index] = refused
        generation = self.cache.generation()
        for _ in range(LEASE_RACE_RETRIES):
            todo = [i for i, result in enumerate(results) if result is None]
            if not todo:
                break
            unread = [i for i in todo if i not in rows]
            if unread:
                read = await self.store.task_get_many(
                    [(*where[i], reports[i].task_id) for i in unread]
                )
                rows |= {i: read.get(reports[i].task_id) for i in unread}
            now = self.clock.now()
            changes: list[tuple[int, Task, TaskChange]] = []
            for i in todo:
                report = reports[i]
                try:
                    task = _leased(rows[i], report.task_id, report.lease_token)
                except AsyncflowError as refused:
                    results[i] = refused
                    continue
                context = task.context if report.context is None else report.context
                changes.append((i, task, _apply(task, report.outcome, now, context)))
            applied = await self.store.task_update_leased_many(
                [(task, reports[i].lease_token, change) for i, task, change in changes], now
            )
            for (i, _, _), updated in zip(changes, applied, strict=True):
                results[i] = updated  # None: the row moved under us; read it again
                if updated is None:
                    del rows[i]
        done = [r for r in results if isinstance(r, Task)]
        await self.cache.put(done, generation)
        self._announce([t for t in done if t.status is TaskStatus.PENDING])
        final = [
            LeaseLost(f"task {reports[i].task_id} kept changing under the report",
                      field="lease_token") if result is None else result
            for i, result in enumerate(results)
        ]  # fmt: skip
        observe.tally(self.metrics, "reported", observe.reported(reports, final))
        return final

    def _announce(self, pending: list[Task]) -> None:
        """Tell the dispatcher about tasks that are (or will be) due again: once per
        type and due time, so a retry reported with a task due now still gets its
        own wake-up when its back-off ends."""
        now = self.clock.now()
        due: dict[tuple[str, int | None], list[int]] = {}  # None: due now
        for task in pending:
            later = task.order_time if task.order_time > now else None
            due.setdefault((task.task_type, later), []).append(task.order_time)
        for (task_type, _), times in due.items():
            self.on_due.tasks_due(task_type, min(times), len(times))

    async def extend_lease(self, task_id: str, lease_token: str) -> Task:
        """Renew a held task's lease: deadline = now + the type's max_processing_time."""
        task_type, pos = parse_task_id(task_id)
        check_lease_token(lease_token)
        config: TaskTypeConfig | None = None
        generation = self.cache.generation()
        for _ in range(LEASE_RACE_RETRIES):
            task = _leased(await self.store.task_get(task_type, pos, task_id), task_id, lease_token)
            config = config or await self.task_type(task_type)
            now = self.clock.now()
            deadline = now + config.max_processing_time
            updated = await self.store.task_extend_lease(task, lease_token, deadline, now)
            if updated is not None:
                await self.cache.put([updated], generation)
                return updated
        raise LeaseLost(f"task {task_id} kept changing under the renewal", field="lease_token")

    # -- governance -----------------------------------------------------------

    async def recover_stuck(self, config: TaskTypeConfig, batch: int) -> list[Task]:
        """Return the type's expired leases to the queue, or fail them (policy.recover).

        At most `batch` per table. A holder's report or renewal that lands
        between the read and the write wins: that task is left as the holder
        wrote it (and, if its lease is still expired, found again next pass).
        """
        now = self.clock.now()
        generation = self.cache.generation()
        expired = await self.store.task_list_expired(config, now, batch)
        if not expired:
            return []
        applied = await self.store.task_update_leased_many(
            [(task, task.lease_token, policy.recover(task, now)) for task in expired], now
        )
        recovered = [task for task in applied if task is not None]
        await self.cache.put(recovered, generation)
        observe.tally(self.metrics, "recovered", observe.recovered(recovered))
        self._announce([t for t in recovered if t.status is TaskStatus.PENDING])
        return recovered


def _leased(task: Task | None, task_id: str, lease_token: str) -> Task:
    """`task`, if `lease_token` is its current lease; else why the call is refused."""
    if task is None:
        raise TaskNotFound(f"task {task_id!r} does not exist", field="task_id")
    if task.status is TaskStatus.CANCELLED:
        raise TaskCancelled(
            f"task {task_id} was cancelled: stop its stage, the call is refused", field="task_id"
        )
    if task.status is not TaskStatus.PROCESSING:
        raise TaskNotProcessing(
            f"task {task_id} is {task.status.name}, not PROCESSING: the call is refused",
            field="task_id",
        )
    # Both are ASCII (check_lease_token): compare_digest raises on other strings.
    if not secrets.compare_digest(task.lease_token, lease_token):
        raise LeaseLost(
            f"lease_token is not the current lease of task {task_id}"
            f" (attempt {task.hold_count}): the call is refused",
            field="lease_token",
        )
    return task


def _pick(value: int | None, current: int) -> int:
    return current if value is None else value


def _check_outcome(outcome: Outcome) -> None:
    match outcome:
        case NextStage(task_stage=stage):
            check_text(stage, "next_stage.task_stage", MAX_STAGE_CHARS)
        case Retry(error=error, delay=delay):
            check_text(error, "retry.error_message", MAX_ERROR_CHARS)
            if delay is not None:
                check_range(delay, "retry.delay_seconds", 0, policy.MAX_PRIORITY)
        case Fail(error=error):
            check_text(error, "fail.error_message", MAX_ERROR_CHARS)


def _apply(task: Task, outcome: Outcome, now: int, context: str) -> TaskChange:
    match outcome:
        case Success():
            return policy.succeed(task, now, context)
        case NextStage(task_stage=stage):
            return policy.next_stage(task, now, stage, context)
        case Retry(error=error, delay=delay):
            return policy.retry(task, now, context, error, delay)
        case Fail(error=error):
            return policy.fail(task, now, context, error)
        case Release():
            return policy.release(task, now, context)


def _encode_page_token(task_type: str, cursor: PageCursor) -> str:
    raw = json.dumps({"t": task_type, "p": cursor.pos, "i": cursor.row_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str, task_type: str) -> PageCursor:
    bad = InvalidArgument("page_token is not a token from this listing", field="page_token")
    # Our tokens are about 130 characters; the bound also keeps json from nesting deep
    # enough to raise RecursionError.
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if (
        not isinstance(data, dict)
        or data.get("t") != task_type
        or not all(type(data.get(k)) is int for k in ("p", "i"))
        # Ranges the stores can bind: SQLite overflows past 64 bits.
        or not 1 <= data["p"] <= MAX_POS
        or not 0 <= data["i"] <= MAX_ROW_ID
    ):
        raise bad
    return PageCursor(pos=data["p"], row_id=data["i"])
