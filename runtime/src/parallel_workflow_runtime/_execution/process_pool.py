"""The `process` executor: a Pebble pool of local worker processes, for CPU-bound code.

The workers are forked by a fork server that has imported the runtime and the workflows'
code already (warm_start.py), so that a worker costs milliseconds, not a second of imports;
where there is none (Windows), each is a fresh interpreter (`spawn`). A pool lives in an
`Executors` scope (executors.py): one per `run`, one per `serve` for all its runs, which then
share its workers; kept workers still run a source's code as it is on disk (fresh_code.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
from concurrent.futures import CancelledError as FutureCancelled
from typing import Any

import pebble

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.results import SourceError, SourceFunction, one_line
from parallel_workflow_runtime._core.usage import ExecutorError
from parallel_workflow_runtime._execution.executor_base import (
    CallLimits,
    Executor,
    ExecutorSpec,
    settled,
)
from parallel_workflow_runtime._execution.fresh_code import run_fresh
from parallel_workflow_runtime._execution.warm_start import (
    available,
    pool_closed,
    pool_started,
    start_fork_server,
)

PROCESS_START_SECONDS = 60  # how long a new pool's workers may take to start


class ProcessExecutor(Executor):
    """A Pebble process pool: cancelling a task that is running stops its process (Pebble
    then starts a fresh one), so a timed-out source leaves nothing running behind it.

    Its `slot` is one per worker, and the runs that share the pool (under `serve`) share it
    too: the pool never queues more attempts than it has workers, so that an attempt's time
    and timeout count from when a worker runs it, and each run's own sources are bounded by
    its max_concurrency besides."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.pool: pebble.ProcessPool | None = None
        self.free_workers = asyncio.Semaphore(spec.workers)
        self.root = workflows_root()
        self.forked = available()

    def slot(self) -> asyncio.Semaphore:
        return self.free_workers

    async def start(self) -> None:
        # A worker is forked by the fork server, a process that runs no thread; where there
        # is none, spawned (a fresh interpreter). This process's threads are never forked.
        if self.forked:
            start_fork_server(self.root)  # unless `run` or `serve` started it already
        context = multiprocessing.get_context("forkserver" if self.forked else "spawn")
        # Released by each worker once ready: unlike a queue, with no pipe that fills up
        # over a long `serve` whose workers Pebble keeps replacing.
        started = context.Semaphore(0)
        self.pool = pebble.ProcessPool(
            max_workers=self.spec.workers,
            context=context,
            initializer=start_worker,
            initargs=[started],  # lists: Pebble before 5.2.3 annotates these as list
        )
        if self.forked:
            pool_started()
        # Wait until every worker is ready (past the fork server's imports, or its own), so
        # that the start-up is paid here and not by the first sources. Pebble starts the
        # workers for the first task scheduled, in this thread: a fork waits for the fork
        # server's imports, so not on the event loop.
        try:
            await asyncio.to_thread(self.pool.schedule, os.getpid)
            for _ in range(self.spec.workers):
                ready = await asyncio.to_thread(started.acquire, timeout=PROCESS_START_SECONDS)
                if not ready:
                    raise TimeoutError
        except TimeoutError:
            await self.close()
            raise ExecutorError(
                f"the process pool's workers did not start within {PROCESS_START_SECONDS} s"
            ) from None
        except BaseException:
            await self.close()
            raise

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        assert self.pool is not None, "started by Executors.get"
        try:
            # Pickled here, unpickled by the worker once it has looked for edited code.
            pickled = pickle.dumps(function)
        except Exception as error:  # e.g. a local function, which pickles by no name
            raise SourceError(f"cannot run in a worker process: {one_line(error)}") from None
        future = self.pool.schedule(
            run_fresh,
            args=[pickled, self.root, source, limits.max_details_bytes, limits.traceparent],
        )
        try:
            return settled(await asyncio.wrap_future(future))
        except SourceError:
            raise
        except pebble.ProcessExpired as error:
            raise SourceError(f"its worker process died (exit code {error.exitcode})") from None
        except (FutureCancelled, asyncio.CancelledError):
            future.cancel()  # a timeout or Ctrl-C: Pebble stops the process running it
            raise
        except Exception as error:  # e.g. a source that does not pickle
            raise SourceError(f"cannot run in a worker process: {one_line(error)}") from None

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()  # stops the workers, running or not
            await asyncio.to_thread(self.pool.join)
            self.pool = None
            if self.forked:
                pool_closed()


def workflows_root() -> str:
    """The project's workflows folder, whose code a kept worker keeps fresh; "" if no
    project is registered (then nothing is looked at)."""
    try:
        return str(current().workflows_dir.resolve())
    except RuntimeError:
        return ""


def start_worker(started: Any) -> None:
    """Runs in each new worker process of the pool, once it has imported this module.

    The worker leads a process group of its own, which the programs its sources start join;
    when Pebble stops it (SIGTERM), it kills that group, so that a `sleep 600` started by a
    timed-out source does not run on as an orphan.
    """
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.killpg(0, signal.SIGKILL))
    started.release()
