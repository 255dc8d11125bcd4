"""Where a source's `run` runs: the `executor` of config.yaml, one of

- `thread`: a thread of its own, for blocking code (a plain `def run` gets it by default);
- `async`: awaited on the workflow's event loop, for `async def run` (its default);
- `process`: a pool of local worker processes (Pebble), for CPU-bound code;
- `dask`: a Dask distributed cluster: the scheduler at `dask_address`, or a LocalCluster
  started for the run (for the lifetime of `serve`) and closed after it.

Each is an `Executor`: `call(function, source)` runs one attempt and returns what `run`
returned. execution.py's runner puts the limits around it (slots, timeouts, retries), so
they mean the same on every executor. A pool or cluster is started when a run first needs it
and lives in an `Executors` scope, which closes them all; whoever runs the workflow opens
one (running.py for a run, serve for its lifetime), else each run gets its own. The
executors themselves are in in_process.py, process_pool.py and dask_cluster.py.

Another engine (Ray, say) is one more Executor subclass and one more name in config.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import math
from collections.abc import Iterable
from contextvars import ContextVar

from parallel_workflow_runtime._core.config import Source, WorkflowConfig
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.usage import ConfigError, ExecutorError
from parallel_workflow_runtime._execution.executor_base import POOLED, Executor, ExecutorSpec
from parallel_workflow_runtime._execution.in_process import AsyncExecutor, ThreadExecutor


def executor_spec(
    config: WorkflowConfig, source: Source, is_async: bool, dask_address: str = ""
) -> ExecutorSpec:
    """The executor `source` runs on: its own `executor`, else by whether its `run` is
    `async def` (`is_async`)."""
    name = source.executor or ("async" if is_async else "thread")
    if name == "async" and not is_async:
        raise ConfigError(
            f"source {source.id!r}: executor async needs an async def run, and its run is a "
            "plain def: use executor thread (or process, dask)"
        )
    spec = ExecutorSpec(name=name, max_workers=config.max_workers, dask_address=dask_address)
    # A LocalCluster's threads: enough for max_concurrency sources at once over its workers.
    return dataclasses.replace(
        spec, threads_per_worker=max(1, math.ceil(config.max_concurrency / spec.workers))
    )


def pooled_specs(config: WorkflowConfig, dask_address: str = "") -> set[ExecutorSpec]:
    """The process pools and Dask clusters that the sources of `config` run on."""
    return {
        executor_spec(config, source, is_async=False, dask_address=dask_address)
        for source in config.sources
        if source.executor in POOLED
    }


def start_process_workers_early(configs: Iterable[WorkflowConfig]) -> None:
    """When a source of `configs` runs on `process`: start the fork server that its pool's
    workers come from now, importing those sources' modules while the run (or the server)
    starts itself, not after (warm_start.py). Not workflow.py, which no worker runs, and
    whose Agno would double what the fork server imports. Returns at once."""
    modules: list[str] = []
    for config in configs:
        package = f"{current().package}.workflows.{config.path.parent.name}"
        modules += [
            f"{package}.sources.{source.id}"
            for source in config.sources
            if source.executor == "process"
        ]
    if modules:
        from parallel_workflow_runtime._execution.process_pool import workflows_root
        from parallel_workflow_runtime._execution.warm_start import start_fork_server

        start_fork_server(workflows_root(), modules)


def executor_for(spec: ExecutorSpec) -> Executor:
    # The process pool and the Dask client are imported only by a run that uses them.
    if spec.name == "process":
        from parallel_workflow_runtime._execution.process_pool import ProcessExecutor

        return ProcessExecutor(spec)
    if spec.name == "dask":
        from parallel_workflow_runtime._execution.dask_cluster import DaskExecutor

        return DaskExecutor(spec)
    if spec.name == "async":
        return AsyncExecutor()
    return ThreadExecutor()


class Executors:
    """The pools and clusters of one run or of one server's lifetime: each started when
    first needed (or by `start`), all closed by `close`."""

    def __init__(self) -> None:
        self.started: dict[ExecutorSpec, Executor] = {}
        self.lock = asyncio.Lock()

    async def get(self, spec: ExecutorSpec) -> Executor:
        if spec.name not in POOLED:
            return executor_for(spec)  # nothing to start or to share
        if spec in self.started:
            return self.started[spec]  # without queueing for the lock behind every source
        async with self.lock:
            if spec not in self.started:
                executor = executor_for(spec)
                await executor.start()
                self.started[spec] = executor
            return self.started[spec]

    async def start(self, specs: set[ExecutorSpec]) -> None:
        """Start these now: a scheduler that is not there is found before any source runs."""
        for spec in specs:
            await self.get(spec)

    async def close(self) -> None:
        started, self.started = list(self.started.values()), {}
        for executor in started:
            await executor.close()

    async def __aenter__(self) -> Executors:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def preflight(specs: set[ExecutorSpec]) -> None:
    """What can be found wrong before a server listens: ExecutorError for a missing extra or
    a Dask scheduler that cannot be reached (a LocalCluster is not started twice for this)."""
    from parallel_workflow_runtime._execution.dask_cluster import DISTRIBUTED_EXTRA, DaskExecutor

    for spec in specs:
        if spec.name == "dask" and spec.dask_address:
            executor = DaskExecutor(spec)
            try:
                await executor.start()
            finally:
                await executor.close()
        elif spec.name == "dask" and importlib.util.find_spec("distributed") is None:
            raise ExecutorError(DISTRIBUTED_EXTRA)


# The Executors of the run (or server) in progress, set by whoever runs the workflow.
EXECUTORS: ContextVar[Executors | None] = ContextVar("run_executors", default=None)
