"""`asyncflow task|type|schedule ...`: operator commands over gRPC.

    asyncflow task get|list|cancel|retry
    asyncflow type list|register|pause|resume
    asyncflow schedule list|create|delete|pause|resume

Each takes --address (default $ASYNCFLOW_ADDRESS, else localhost:50051) and
--json (JSON instead of a table). Exit status: 0 done, 1 refused by the server or
the server unreachable (the reason on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from asyncflow._cli.render import show
from asyncflow._cli.security import add_tls_arguments, tls_settings
from asyncflow.client import (
    AsyncflowError,
    CatchUp,
    ChannelSettings,
    Client,
    RetryStrategy,
    TaskStatus,
    TaskTemplate,
)

COMMANDS = ("task", "type", "schedule")
DEFAULT_ADDRESS = "localhost:50051"

Action = Callable[[Client, argparse.Namespace], Awaitable[Any]]


def _status(choices: tuple[str, ...]) -> Callable[[str], TaskStatus]:
    def parse(text: str) -> TaskStatus:
        if text.lower() not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}")
        return TaskStatus[text.upper()]

    return parse


# -- task ---------------------------------------------------------------------------


async def task_get(client: Client, args: argparse.Namespace) -> Any:
    return await client.get(args.task_id)


async def task_list(client: Client, args: argparse.Namespace) -> Any:
    listing = client.list(args.task_type, status=args.status, stage=args.stage,
                          user_id=args.user, page_size=min(args.limit, 1000))  # fmt: skip
    return [task async for task in _first(listing, args.limit)]


async def task_cancel(client: Client, args: argparse.Namespace) -> Any:
    if args.task_id:
        return await client.cancel(args.task_id, reason=args.reason)
    cancelled = client.cancel_many(args.task_type, status=args.status, stage=args.stage,
                                   reason=args.reason)  # fmt: skip
    return [task async for task in cancelled]


async def task_retry(client: Client, args: argparse.Namespace) -> Any:
    if args.task_id:
        return await client.retry(args.task_id, stage=args.new_stage)
    retried = client.retry_many(args.task_type, status=args.status, stage=args.stage,
                                new_stage=args.new_stage)  # fmt: skip
    return [task async for task in retried]


async def _first(items: Any, count: int) -> Any:
    async for item in items:
        if count <= 0:
            return
        count -= 1
        yield item


# -- type ---------------------------------------------------------------------------


async def type_list(client: Client, args: argparse.Namespace) -> Any:
    return await client.list_types()


async def type_register(client: Client, args: argparse.Namespace) -> Any:
    strategy = RetryStrategy[args.retry_strategy.upper()] if args.retry_strategy else None
    return await client.register_type(
        args.task_type,
        schedule_limit=args.schedule_limit,
        schedule_interval=args.schedule_interval,
        max_processing_time=args.max_processing_time,
        max_retry_num=args.max_retry_num,
        retry_strategy=strategy,
        retry_interval=args.retry_interval,
        max_retry_interval=args.max_retry_interval,
    )


async def type_pause(client: Client, args: argparse.Namespace) -> Any:
    return await client.pause_type(args.task_type)


async def type_resume(client: Client, args: argparse.Namespace) -> Any:
    return await client.resume_type(args.task_type)


# -- schedule -------------------------------------------------------------------------


async def schedule_list(client: Client, args: argparse.Namespace) -> Any:
    return await client.list_schedules()


async def schedule_create(client: Client, args: argparse.Namespace) -> Any:
    template = TaskTemplate(args.task_type, args.stage, args.context, args.priority)
    catch_up = CatchUp[args.catch_up.upper()] if args.catch_up else None
    return await client.create_schedule(args.name, args.cron, template,
                                        time_zone=args.time_zone, catch_up=catch_up,
                                        catch_up_limit=args.catch_up_limit)  # fmt: skip


async def schedule_delete(client: Client, args: argparse.Namespace) -> Any:
    await client.delete_schedule(args.name)
    return {"deleted": args.name} if args.json else f"deleted schedule {args.name}"


async def schedule_pause(client: Client, args: argparse.Namespace) -> Any:
    return await client.pause_schedule(args.name)


async def schedule_resume(client: Client, args: argparse.Namespace) -> Any:
    return await client.resume_schedule(args.name)


# -- the parser ---------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Add `task`, `type` and `schedule` to the `asyncflow` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=os.environ.get("ASYNCFLOW_ADDRESS") or
                        DEFAULT_ADDRESS, help="server host:port (default $ASYNCFLOW_ADDRESS,"
                        f" else {DEFAULT_ADDRESS})")  # fmt: skip
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    add_tls_arguments(common)

    def action(group: Any, name: str, run: Action, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=text)
        parser.set_defaults(run=run)
        return parser

    def bulk(parser: argparse.ArgumentParser, statuses: tuple[str, ...]) -> None:
        parser.add_argument("task_id", nargs="?", help="one task (or --type for many)")
        parser.add_argument("--type", dest="task_type", help="every matching task of this type")
        parser.add_argument("--status", type=_status(statuses), help=" or ".join(statuses))
        parser.add_argument("--stage", default="", help="only tasks at this stage (with --type)")

    tasks = commands.add_parser("task", help="look at, cancel and retry tasks")
    task = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")
    action(task, "get", task_get, "one task").add_argument("task_id")
    listing = action(task, "list", task_list, "tasks of a type, oldest first")
    listing.add_argument("task_type")
    listing.add_argument("--status", type=_status(tuple(s.name.lower() for s in TaskStatus)))
    listing.add_argument("--stage", default="")
    listing.add_argument("--user", default="")
    listing.add_argument("--limit", type=int, default=100, help="most tasks shown (100)")
    cancel = action(task, "cancel", task_cancel, "cancel a task, or --type: many")
    bulk(cancel, ("pending", "processing"))
    cancel.add_argument("--reason", default="", help="kept in the task's schedule_log")
    retry = action(task, "retry", task_retry, "retry a FAILED/CANCELLED task, or --type: many")
    bulk(retry, ("failed", "cancelled"))
    retry.add_argument("--new-stage", help="run this stage instead of the one it stopped at")

    types = commands.add_parser("type", help="list, register, pause and resume task types")
    kind = types.add_subparsers(dest="action", required=True, metavar="ACTION")
    action(kind, "list", type_list, "every task type")
    register = action(kind, "register", type_register, "create or update a type")
    register.add_argument("task_type")
    for option in ("schedule-limit", "schedule-interval", "max-processing-time", "max-retry-num",
                   "retry-interval", "max-retry-interval"):  # fmt: skip
        register.add_argument(f"--{option}", type=int)
    register.add_argument("--retry-strategy", choices=("progressive", "uniform"))
    action(kind, "pause", type_pause, "hold and push nothing of a type").add_argument("task_type")
    action(kind, "resume", type_resume, "resume a paused type").add_argument("task_type")

    schedules = commands.add_parser("schedule", help="cron schedules")
    schedule = schedules.add_subparsers(dest="action", required=True, metavar="ACTION")
    action(schedule, "list", schedule_list, "every schedule")
    create = action(schedule, "create", schedule_create, "a schedule creating a task per tick")
    create.add_argument("name")
    create.add_argument("--cron", required=True, help="e.g. '0 3 * * *'; a 6th field: seconds")
    create.add_argument("--type", dest="task_type", required=True)
    create.add_argument("--stage", default="")
    create.add_argument("--context", default="")
    create.add_argument("--priority", type=int, default=0)
    create.add_argument("--time-zone", default="", help="IANA name (default UTC)")
    create.add_argument("--catch-up", choices=("skip", "latest", "all"))
    create.add_argument("--catch-up-limit", type=int)
    action(schedule, "delete", schedule_delete, "remove a schedule").add_argument("name")
    action(schedule, "pause", schedule_pause, "stop a schedule firing").add_argument("name")
    action(schedule, "resume", schedule_resume, "fire from the next tick").add_argument("name")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run a parsed operator command; its exit status."""
    if args.command == "task" and args.action in ("cancel", "retry"):
        if bool(args.task_id) == bool(args.task_type):
            parser.error(f"task {args.action}: give a TASK_ID or --type, not both")
        if args.task_id and (args.status or args.stage):
            parser.error(f"task {args.action}: --status and --stage go with --type")
    try:
        result = asyncio.run(_call(args))
    except ValueError as error:  # the TLS or token settings
        print(f"asyncflow {args.command} {args.action}: {error}", file=sys.stderr)
        return 2
    except AsyncflowError as error:
        print(f"asyncflow {args.command} {args.action}: {error.reason}: {error.message}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(result if isinstance(result, str) else show(result, json_output=args.json))
    return 0


async def _call(args: argparse.Namespace) -> Any:
    settings = ChannelSettings(**tls_settings(args))
    async with Client(args.address, timeout=args.timeout, settings=settings) as client:
        return await args.run(client, args)
