"""A first round trip through a real server on both backends."""

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


async def test_round_trip(stub: pb_grpc.TaskServiceStub) -> None:
    await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
    created = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", context="c"))
    held = await stub.HoldTasks(pb.HoldTasksRequest(task_type="lark"))
    assert [t.task_id for t in held.tasks] == [created.task.task_id]
    done = await stub.SetTask(
        pb.SetTaskRequest(
            task_id=created.task.task_id,
            lease_token=held.tasks[0].lease.token,
            success=pb.SetTaskRequest.Success(),
        )
    )
    assert done.task.status == pb.TASK_STATUS_SUCCESS
    got = await stub.GetTask(pb.GetTaskRequest(task_id=created.task.task_id))
    assert got.task.status == pb.TASK_STATUS_SUCCESS
