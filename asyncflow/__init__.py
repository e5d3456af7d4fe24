"""asyncflow: a durable asynchronous task scheduler served over gRPC."""
