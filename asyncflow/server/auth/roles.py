"""The one table of which role may call which RPC of TaskService.

Fail closed: a method that is not in the table is refused to everyone but no
one is silently allowed (tests/unit/test_auth_roles.py checks that the table
names every method of the service descriptor, and nothing else).
"""

from __future__ import annotations

from typing import Final

ROLES: Final = ("producer", "worker", "reader", "admin")
"""Every role a token or a certificate entry may have."""

_READ = frozenset({"producer", "reader", "admin"})
_WORK = frozenset({"worker", "admin"})
_ADMIN = frozenset({"admin"})
_ANYONE = frozenset(ROLES)

ALLOWED: Final[dict[str, frozenset[str]]] = {
    # Producers create and follow their tasks.
    "CreateTask": frozenset({"producer", "admin"}),
    "CreateTasks": frozenset({"producer", "admin"}),
    "GetTask": _READ,
    "ListTasks": _READ,
    "CountTasks": _READ,
    "ListTaskTypes": _READ,
    # Workers hold, report and renew (limited to some task types if their entry says).
    "HoldTasks": _WORK,
    "SetTask": _WORK,
    "ExtendLease": _WORK,
    "WorkTasks": _WORK,
    # Any known caller may check that the server answers.
    "Ping": _ANYONE,
    # Dashboards may read schedules; changing anything below is the operator's.
    "ListSchedules": frozenset({"reader", "admin"}),
    "RegisterTaskType": _ADMIN,
    "CancelTask": _ADMIN,
    "CancelTasks": _ADMIN,
    "RetryTask": _ADMIN,
    "RetryTasks": _ADMIN,
    "PauseTaskType": _ADMIN,
    "ResumeTaskType": _ADMIN,
    "CreateSchedule": _ADMIN,
    "UpdateSchedule": _ADMIN,
    "DeleteSchedule": _ADMIN,
    "PauseSchedule": _ADMIN,
    "ResumeSchedule": _ADMIN,
}

ADMIN_ACTIONS: Final = frozenset(m for m, roles in ALLOWED.items() if roles == _ADMIN)
"""The calls the audit log records with who made them (what only an admin may do)."""

TYPE_SCOPED: Final = frozenset({"HoldTasks", "SetTask", "ExtendLease", "WorkTasks"})
"""The worker calls that a token's `types` limit (checked where the type is known:
asyncflow.server.auth.scope)."""


def allows(roles: frozenset[str], method: str) -> bool:
    """Whether any of `roles` may call TaskService `method` (unknown methods: no)."""
    return not roles.isdisjoint(ALLOWED.get(method, frozenset()))
