"""The SDK's values and errors follow the contract and the error tree by construction."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from asyncflow import errors
from asyncflow._sdk.convert import config_from_pb, spec_to_pb, task_from_pb
from asyncflow._sdk.errors import _CLASSES, from_pb, from_rpc_error
from asyncflow._sdk.types import RetryStrategy, TaskSpec, TaskStatus, TaskTypeConfig
from asyncflow.server.convert import error_to_pb
from asyncflow.server.errors import to_status
from asyncflow.v1 import task_service_pb2 as pb


def every_error_class() -> list[type[errors.AsyncflowError]]:
    found, todo = [], [errors.AsyncflowError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_known_to_the_sdk() -> None:
    assert set(_CLASSES) == set(every_error_class())
    reasons = [cls.reason for cls in _CLASSES]
    assert len(reasons) == len(set(reasons)), "two classes share a reason"


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_every_reason_round_trips_as_a_status(cls: type[errors.AsyncflowError]) -> None:
    """Server error -> gRPC status with ErrorInfo -> the same class in the SDK."""
    status = to_status(cls("it went wrong", field="task_id"))
    rpc_error = grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        status.details,
    )
    back = from_rpc_error(rpc_error)
    assert type(back) is cls
    assert (back.code, back.reason, back.field, back.message) == (
        cls.code,
        cls.reason,
        "task_id",
        "it went wrong",
    )


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_every_reason_round_trips_as_a_stream_item(cls: type[errors.AsyncflowError]) -> None:
    back = from_pb(error_to_pb(cls("refused", field="lease_token")))
    assert type(back) is cls
    assert (back.code, back.field, back.message) == (cls.code, "lease_token", "refused")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.Unavailable),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.UNKNOWN, errors.AsyncflowError),
    ],
)
def test_a_status_without_error_info_maps_by_its_code(
    code: grpc.StatusCode, expected: type[errors.AsyncflowError]
) -> None:
    """What a proxy, the channel or a deadline produces: a bare status."""
    bare = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "bare")
    back = from_rpc_error(bare)
    assert type(back) is expected
    assert back.code == code.name


@pytest.mark.parametrize(("ours", "theirs"), [(TaskStatus, pb.TaskStatus),
                                              (RetryStrategy, pb.RetryStrategy)])  # fmt: skip
def test_enums_have_every_protobuf_value(ours: type, theirs: type) -> None:
    prefix = "TASK_STATUS_" if ours is TaskStatus else "RETRY_STRATEGY_"
    from_proto = {
        name.removeprefix(prefix): value
        for name, value in theirs.items()  # type: ignore[attr-defined]
        if value != 0  # UNSPECIFIED: never a value the server sends
    }
    assert {member.name: member.value for member in ours} == from_proto  # type: ignore[attr-defined]


def test_task_type_config_has_exactly_the_wire_fields() -> None:
    """Named as Client.register_type's arguments (the proto's, without `_seconds`)."""
    wire = {f.name.removesuffix("_seconds") for f in pb.TaskTypeConfig.DESCRIPTOR.fields}
    assert {f.name for f in dataclasses.fields(TaskTypeConfig)} == wire


def test_every_wire_field_reaches_the_sdk_values() -> None:
    """Distinct values in, the same values out: no field is dropped or defaulted."""
    message = pb.TaskTypeConfig()
    for number, field in enumerate(pb.TaskTypeConfig.DESCRIPTOR.fields, start=1):
        if field.name == "task_type":
            message.task_type = "lark"
        elif field.name == "retry_strategy":
            message.retry_strategy = pb.RETRY_STRATEGY_UNIFORM
        else:
            setattr(message, field.name, 100 + number)
    config = config_from_pb(message)
    for field in pb.TaskTypeConfig.DESCRIPTOR.fields:
        value = getattr(config, field.name.removesuffix("_seconds"))
        assert value == getattr(message, field.name), field.name
    assert config.retry_strategy is RetryStrategy.UNIFORM

    task = pb.Task(task_id="k_lark_1", status=pb.TASK_STATUS_PROCESSING, crt_retry_num=2)
    task.lease.attempt, task.lease.deadline = 3, 1_800_000_000
    info = task_from_pb(task)
    assert (info.status, info.retries, info.attempt, info.lease_deadline) == (
        TaskStatus.PROCESSING,
        2,
        3,
        1_800_000_000,
    )


def test_task_spec_becomes_a_create_request() -> None:
    spec = TaskSpec("lark", context="c", stage="s", user_id="u", priority=5, idempotency_key="k")
    assert spec_to_pb(spec) == pb.CreateTaskRequest(
        task_type="lark", context="c", task_stage="s", user_id="u", priority=5,
        idempotency_key="k",
    )  # fmt: skip
