"""Where per-shard work runs: `inline` (the caller's thread, one shard after another), `process` (a local pool of
spawned processes) or `ray` (Ray tasks, on a local Ray or a cluster). The engine builds the tasks
(engine/shard_tasks.py: top-level functions over small frozen inputs) and an executor only maps a callable over
them, in order; it knows nothing of stores, so this package imports no engine module.

    with make_executor(ExecutorSpec("process", workers=2)) as ex:
        results = ex.map(task_function, inputs)
"""

from forgetd.server.executors.base import ExecutorSpec, InlineExecutor, ShardExecutor
from forgetd.server.executors.factory import make_executor

__all__ = ["ExecutorSpec", "ShardExecutor", "InlineExecutor", "make_executor"]
