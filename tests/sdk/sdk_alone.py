"""`python sdk_alone.py ARGS...` runs the `asyncflow` command as if only the SDK were
installed (`pip install asyncflow`): the server's dependencies cannot be imported."""

from __future__ import annotations

import sys

SERVER_ONLY = ("aiomysql", "pymysql", "redis", "grpc_health", "grpc_reflection")

for name in SERVER_ONLY:
    sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail

from asyncflow.cli import main  # noqa: E402  (after the block above, on purpose)

if __name__ == "__main__":
    sys.exit(main())
