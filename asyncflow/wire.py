"""Enum mappings between the protobuf contract and the core's domain values.

Server side only: the SDK's enums (asyncflow._sdk.types) carry the protobuf
values themselves and never import the core.
"""

from __future__ import annotations

from asyncflow.core.model import RetryStrategy
from asyncflow.v1 import task_service_pb2 as pb

STRATEGY_TO_PB = {
    RetryStrategy.PROGRESSIVE: pb.RETRY_STRATEGY_PROGRESSIVE,
    RetryStrategy.UNIFORM: pb.RETRY_STRATEGY_UNIFORM,
}
STRATEGY_FROM_PB = {v: k for k, v in STRATEGY_TO_PB.items()}
