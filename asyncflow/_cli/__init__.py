"""The operator commands of `asyncflow` (task, type, schedule), over gRPC with the SDK."""
