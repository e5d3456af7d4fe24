"""Task cache adapters: in-process (memory) and shared (redis).

Both implement the core's TaskCache port (asyncflow.core.ports.TaskCache), whose
docstring states the promise every cache keeps.
"""
