"""The `process` executor: a Pebble pool of local worker processes, for CPU-bound code."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import signal
from concurrent.futures import CancelledError as FutureCancelled
from typing import Any

import pebble

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import SourceError, SourceFunction, one_line
from parallel_workflow_runtime._core.usage import ExecutorError
from parallel_workflow_runtime._execution.executor_base import (
    CallLimits,
    Executor,
    ExecutorSpec,
    run_elsewhere,
    settled,
)

PROCESS_START_SECONDS = 60  # how long a new pool's workers may take to start


class ProcessExecutor(Executor):
    """A Pebble process pool: cancelling a task that is running stops its process (Pebble
    then starts a fresh one), so a timed-out source leaves nothing running behind it."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.pool: pebble.ProcessPool | None = None
        self.free_workers = asyncio.Semaphore(spec.workers)

    def slot(self) -> asyncio.Semaphore:
        return self.free_workers

    async def start(self) -> None:
        # spawn: a fresh interpreter per worker. fork would copy this process's threads' locks.
        context = multiprocessing.get_context("spawn")
        started: multiprocessing.Queue[int] = context.Queue()
        self.pool = pebble.ProcessPool(
            max_workers=self.spec.workers,
            context=context,
            initializer=start_worker,
            initargs=[started],  # lists: Pebble before 5.2.3 annotates these as list
        )
        # Each worker imports Python and this package before its first task: wait until all
        # of them have, so that the start-up is paid here and not by the first sources.
        # (Pebble starts the workers for the first task scheduled.)
        self.pool.schedule(os.getpid)
        try:
            for _ in range(self.spec.workers):
                await asyncio.to_thread(started.get, timeout=PROCESS_START_SECONDS)
        except queue.Empty:
            raise ExecutorError(
                f"the process pool's workers did not start within {PROCESS_START_SECONDS} s"
            ) from None

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        assert self.pool is not None, "started by Executors.get"
        future = self.pool.schedule(
            run_elsewhere, args=[function, source, limits.max_details_bytes, limits.traceparent]
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
        except Exception as error:  # e.g. a function or source that does not pickle
            raise SourceError(f"cannot run in a worker process: {one_line(error)}") from None

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()  # stops the workers, running or not
            await asyncio.to_thread(self.pool.join)


def start_worker(started: multiprocessing.Queue[int]) -> None:
    """Runs in each new worker process of the pool, once it has imported this module.

    The worker leads a process group of its own, which the programs its sources start join;
    when Pebble stops it (SIGTERM), it kills that group, so that a `sleep 600` started by a
    timed-out source does not run on as an orphan.
    """
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.killpg(0, signal.SIGKILL))
    started.put(os.getpid())
