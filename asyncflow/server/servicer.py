"""TaskService over gRPC: decode the request, call the core, encode the reply.

Holds no data and no rules; errors are mapped by @grpc_errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from asyncflow.core.control import TaskControl
from asyncflow.core.model import TaskStatus
from asyncflow.core.schedules import ScheduleCore
from asyncflow.core.service import TaskCore
from asyncflow.server.auth.scope import check_task, check_type
from asyncflow.server.convert import (
    config_to_pb,
    create_request_from_pb,
    fill_task,
    filter_from_pb,
    outcome_from_pb,
    settings_from_pb,
    task_to_pb,
)
from asyncflow.server.dispatch import Dispatcher
from asyncflow.server.errors import grpc_errors, grpc_stream_errors
from asyncflow.server.operator_rpcs import OperatorRpcs
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class TaskServicer(OperatorRpcs, pb_grpc.TaskServiceServicer):
    """The RPCs of producers and workers; those of operators come from OperatorRpcs."""

    def __init__(
        self,
        core: TaskCore,
        dispatcher: Dispatcher,
        control: TaskControl,
        schedules: ScheduleCore,
    ) -> None:
        self._core = core
        self._dispatcher = dispatcher
        self._control = control
        self._schedules = schedules

    @grpc_errors
    async def RegisterTaskType(
        self, request: pb.RegisterTaskTypeRequest, context: Context
    ) -> pb.RegisterTaskTypeResponse:
        config = await self._core.register_type(settings_from_pb(request))
        return pb.RegisterTaskTypeResponse(task_type=config_to_pb(config))

    @grpc_errors
    async def CreateTask(
        self, request: pb.CreateTaskRequest, context: Context
    ) -> pb.CreateTaskResponse:
        task, created = await self._core.create_task(create_request_from_pb(request))
        return pb.CreateTaskResponse(task=task_to_pb(task), created=created)

    @grpc_errors
    async def CreateTasks(
        self, request: pb.CreateTasksRequest, context: Context
    ) -> pb.CreateTasksResponse:
        results = await self._core.create_tasks([create_request_from_pb(r) for r in request.tasks])
        reply = pb.CreateTasksResponse()
        add = reply.results.add  # filled in place: no message built, then copied in
        for task, created in results:
            item = add(created=created)
            fill_task(item.task, task)
        return reply

    @grpc_errors
    async def HoldTasks(
        self, request: pb.HoldTasksRequest, context: Context
    ) -> pb.HoldTasksResponse:
        check_type(request.task_type)
        tasks = await self._core.hold_tasks(request.task_type, request.limit)
        return pb.HoldTasksResponse(tasks=[task_to_pb(t, with_token=True) for t in tasks])

    @grpc_errors
    async def SetTask(self, request: pb.SetTaskRequest, context: Context) -> pb.SetTaskResponse:
        check_task(request.task_id)
        task = await self._core.set_task(
            request.task_id,
            request.lease_token,
            outcome_from_pb(request),
            request.context if request.HasField("context") else None,
        )
        return pb.SetTaskResponse(task=task_to_pb(task))

    @grpc_errors
    async def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: Context
    ) -> pb.ExtendLeaseResponse:
        check_task(request.task_id)
        task = await self._core.extend_lease(request.task_id, request.lease_token)
        return pb.ExtendLeaseResponse(lease=task_to_pb(task, with_token=True).lease)

    @grpc_stream_errors
    async def WorkTasks(
        self, request_iterator: AsyncIterator[pb.WorkTasksRequest], context: Context
    ) -> AsyncIterator[pb.WorkTasksResponse]:
        async for response in self._dispatcher.serve(request_iterator):
            yield response

    @grpc_errors
    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.GetTaskResponse:
        return pb.GetTaskResponse(task=task_to_pb(await self._core.get_task(request.task_id)))

    @grpc_errors
    async def ListTasks(
        self, request: pb.ListTasksRequest, context: Context
    ) -> pb.ListTasksResponse:
        tasks, next_token = await self._core.list_tasks(
            request.task_type, filter_from_pb(request), request.page_size, request.page_token
        )
        return pb.ListTasksResponse(
            tasks=[task_to_pb(t) for t in tasks], next_page_token=next_token
        )

    @grpc_errors
    async def ListTaskTypes(
        self, request: pb.ListTaskTypesRequest, context: Context
    ) -> pb.ListTaskTypesResponse:
        types = await self._core.list_types()
        return pb.ListTaskTypesResponse(task_types=[config_to_pb(c) for c in types])

    @grpc_errors
    async def CountTasks(
        self, request: pb.CountTasksRequest, context: Context
    ) -> pb.CountTasksResponse:
        counts = await self._core.count_tasks(request.task_type)
        return pb.CountTasksResponse(
            counts=[
                pb.StatusCount(status=pb.TaskStatus.ValueType(int(s)), count=counts[s])
                for s in TaskStatus
            ],
            total=sum(counts.values()),
        )

    @grpc_errors
    async def Ping(self, request: pb.PingRequest, context: Context) -> pb.PingResponse:
        return pb.PingResponse(message="pong", server_time=self._core.clock.now())
