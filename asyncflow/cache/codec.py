"""Task <-> JSON for cache entries (no pickle: a cache must never execute data).

CODEC_VERSION names the payload format. Bump it whenever the JSON a Task
encodes to changes (a field added, renamed or given another meaning): replicas
store and read only the payloads of their own version (the Redis entry keeps
one payload per version beside the row version), so during a rolling upgrade
neither side ever decodes the other's payloads. tests/unit/test_codec.py pins
the fields so that a change to Task cannot forget the bump.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from asyncflow.core.model import RetryPolicy, RetryStrategy, Task, TaskStatus

CODEC_VERSION = 1

FIELDS = tuple(f.name for f in dataclasses.fields(Task))


class UndecodablePayload(ValueError):
    """A cache payload that is not a Task of this codec version."""


def encode(task: Task) -> str:
    # A copy of the instance's fields (the dataclass keeps them in __dict__, in
    # field order): dataclasses.asdict deep-copies and showed up in profiles.
    data = dict(task.__dict__)
    data["status"] = int(task.status)
    data["retry"] = [task.retry.strategy.value, task.retry.interval, task.retry.max_interval]
    return json.dumps(data, separators=(",", ":"))


def decode(text: str | bytes) -> Task:
    """The Task in `text`; UndecodablePayload for anything else."""
    try:
        data: dict[str, Any] = json.loads(text)
        strategy, interval, max_interval = data["retry"]
        data["retry"] = RetryPolicy(RetryStrategy(strategy), interval, max_interval)
        data["status"] = TaskStatus(data["status"])
        return Task(**data)
    except (ValueError, KeyError, TypeError) as exc:
        # ValueError covers JSON and UTF-8 errors and unknown enum values;
        # TypeError a missing or unknown field; KeyError a missing "retry".
        raise UndecodablePayload(f"{type(exc).__name__}: {exc}") from None
