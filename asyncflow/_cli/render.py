"""How the operator commands print what they get: readable tables, or JSON."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from asyncflow._sdk.types import CatchUp, ScheduleInfo, TaskInfo, TaskTypeConfig

Column = tuple[str, Callable[[Any], object]]


def when(seconds: int) -> str:
    """Unix seconds as UTC, or "-" for none."""
    if seconds <= 0:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return value.name
    return str(value)


def table(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    """Left-aligned columns under a header row; "(none)" for no rows."""
    if not rows:
        return "(none)"
    cells = [[name for name, _ in columns]]
    cells += [[_text(cell(row)) for _, cell in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def fields(value: Any, times: Sequence[str], prefix: str = "") -> str:
    """One `name: value` line per field of a dataclass (a nested one's as
    `outer.inner`); `times` are Unix seconds."""
    lines = []
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            lines.append(fields(item, times, prefix=f"{prefix}{field.name}."))
            continue
        text = f"{when(item)} ({item})" if field.name in times and item else _text(item)
        lines.append(f"{prefix + field.name + ':':<16} {text}".rstrip())
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def as_json(value: Any) -> str:
    """Dataclasses as objects (enums by name, times as Unix seconds)."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False)


def _back_off(config: TaskTypeConfig) -> str:
    strategy = config.retry_strategy.name.lower()
    return f"{strategy} {config.retry_interval}s..{config.max_retry_interval}s"


def _catch_up(schedule: ScheduleInfo) -> str:
    limit = f" {schedule.catch_up_limit}" if schedule.catch_up is CatchUp.ALL else ""
    return schedule.catch_up.name + limit


TASK_COLUMNS: list[Column] = [
    ("TASK ID", lambda t: t.task_id),
    ("STAGE", lambda t: t.stage or "-"),
    ("STATUS", lambda t: t.status),
    ("RETRIES", lambda t: f"{t.retries}/{t.max_retries}"),
    ("DUE", lambda t: when(t.order_time)),
    ("MODIFIED", lambda t: when(t.modify_time)),
]
TASK_TIMES = ("order_time", "create_time", "modify_time", "lease_deadline")

TYPE_COLUMNS: list[Column] = [
    ("TYPE", lambda c: c.task_type),
    ("PAUSED", lambda c: c.paused),
    ("LIMIT", lambda c: c.schedule_limit),
    ("LEASE", lambda c: f"{c.max_processing_time}s"),
    ("RETRIES", lambda c: c.max_retry_num),
    ("BACK-OFF", _back_off),
    ("TABLES", lambda c: f"{c.begin_pos}..{c.end_pos}"),
]

SCHEDULE_COLUMNS: list[Column] = [
    ("NAME", lambda s: s.name),
    ("CRON", lambda s: s.cron),
    ("TIME ZONE", lambda s: s.time_zone),
    ("TASK", lambda s: s.task.task_type + (f"/{s.task.stage}" if s.task.stage else "")),
    ("CATCH-UP", _catch_up),
    ("PAUSED", lambda s: s.paused),
    ("LAST FIRE", lambda s: when(s.last_fire_time)),
    ("NEXT FIRE", lambda s: "-" if s.paused else when(s.next_fire_time)),
]
SCHEDULE_TIMES = ("last_fire_time", "next_fire_time", "create_time", "modify_time")


def show(value: object, *, json_output: bool) -> str:
    """What a command prints for its result."""
    if json_output:
        return as_json(value)
    if isinstance(value, TaskInfo):
        return fields(value, TASK_TIMES)
    if isinstance(value, ScheduleInfo):
        return fields(value, SCHEDULE_TIMES)
    if isinstance(value, TaskTypeConfig):
        return table([value], TYPE_COLUMNS)
    assert isinstance(value, list), value
    kinds = {type(item) for item in value}
    if kinds <= {TaskTypeConfig}:
        return table(value, TYPE_COLUMNS)
    if kinds <= {ScheduleInfo}:
        return table(value, SCHEDULE_COLUMNS)
    return table(value, TASK_COLUMNS)
