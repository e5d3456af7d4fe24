"""Guarded registration: what it refuses to wrap, at start rather than per call."""

from __future__ import annotations

import logging

import pytest

from asyncflow.clock import ManualClock
from asyncflow.logs import ClientErrorLog
from asyncflow.server.decoding import guarded_handlers
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


def test_an_unimplemented_method_fails_at_registration() -> None:
    """The generated base servicer's stubs are synchronous and raise per call;
    registering one is refused when the server starts."""
    client_log = ClientErrorLog(logging.getLogger("test"), ManualClock())
    service = pb.DESCRIPTOR.services_by_name["TaskService"]
    with pytest.raises(TypeError, match=r"/asyncflow\.v1\.TaskService/RegisterTaskType"):
        guarded_handlers(service, pb_grpc.TaskServiceServicer(), client_log)
