"""Task <-> JSON for cache entries (no pickle: a cache must never execute data)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from asyncflow.core.model import RetryPolicy, RetryStrategy, Task, TaskStatus

FIELDS = tuple(f.name for f in dataclasses.fields(Task))


def encode(task: Task) -> str:
    # Field by field: dataclasses.asdict deep-copies and showed up in profiles.
    data = {name: getattr(task, name) for name in FIELDS}
    data["status"] = int(task.status)
    data["retry"] = [task.retry.strategy.value, task.retry.interval, task.retry.max_interval]
    return json.dumps(data, separators=(",", ":"))


def decode(text: str | bytes) -> Task:
    data: dict[str, Any] = json.loads(text)
    strategy, interval, max_interval = data["retry"]
    data["retry"] = RetryPolicy(RetryStrategy(strategy), interval, max_interval)
    data["status"] = TaskStatus(data["status"])
    return Task(**data)
