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
one (running.py for a run, serve for its lifetime), else each run gets its own.

Another engine (Ray, say) is one more Executor subclass and one more name in config.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import json
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import CancelledError as FutureCancelled
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pebble

from .config import ConfigError, ExecutorName, Source, WorkflowConfig
from .results import SourceError, SourceFunction, checked_summary, one_line
from .settings import PACKAGE

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

log = logging.getLogger(PACKAGE)

# An `async def run` that holds the event loop this long in one go (e.g. `time.sleep` in it)
# stops every other source meanwhile: it is named in a warning and in its result.
BLOCKING_SECONDS = 0.25
PROCESS_START_SECONDS = 60  # how long a new pool's workers may take to start
DASK_STOP_GRACE_SECONDS = 3.0  # how long a cancelled task is watched for a worker running it
POOLED = ("process", "dask")  # the executors with a pool or cluster to start and close
DISTRIBUTED_EXTRA = 'executor: dask needs the distributed extra: pip install -e ".[distributed]"'


@dataclass(frozen=True)
class CallLimits:
    """What an executor needs to know besides the source: the checks on its summary, and
    where to send a warning about it."""

    max_details_bytes: int
    warn: Callable[[str], None]


class ExecutorError(Exception):
    """An executor cannot start (no extra installed, no scheduler there): one line, exit 2."""


class Executor:
    """Runs one attempt at a source somewhere and returns what its `run` returned."""

    async def start(self) -> None:
        """Get ready (start a pool, reach a cluster); ExecutorError if it cannot."""

    def slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held while an attempt runs: a pool's free worker, so that the time an attempt is
        measured to take does not include its wait for one."""
        return contextlib.nullcontext()

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop whatever this executor started; nothing it ran keeps running."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Which executor a source runs on, with the sizes a pool or cluster needs."""

    name: ExecutorName
    max_workers: int | None = None  # None: one per CPU
    threads_per_worker: int = 1  # a Dask LocalCluster's; enough for max_concurrency at once
    dask_address: str = ""

    @property
    def workers(self) -> int:
        return self.max_workers or os.cpu_count() or 1


class ThreadExecutor(Executor):
    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        if inspect.iscoroutinefunction(function):
            # An async def on `thread`: an event loop of its own in that thread.
            return await in_own_thread(
                lambda source: asyncio.run(awaited(function(source))), source
            )
        return await in_own_thread(function, source)


class AsyncExecutor(Executor):
    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        coroutine = function(source)
        if not inspect.isawaitable(coroutine):
            raise SourceError("executor async needs an async def run; use executor thread")
        return await LoopWatch(coroutine, limits.warn)


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
            initargs=(started,),
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
            run_elsewhere, args=(function, source, limits.max_details_bytes)
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


class DaskExecutor(Executor):
    """Dask distributed through its asynchronous Client, so the event loop never blocks."""

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.where = spec.dask_address or "a LocalCluster"
        self.unusable: str | None = None  # set by start: why no source can run there
        self.cleanups: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError(DISTRIBUTED_EXTRA) from None
        if self.spec.dask_address:
            # Tried for Dask's distributed.comm.timeouts.connect (30 s unless configured).
            try:
                self.client = await Client(self.spec.dask_address, asynchronous=True)
            except (OSError, TimeoutError) as error:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {self.spec.dask_address}: "
                    f"{one_line(error)}"
                ) from None
        else:
            self.cluster = await LocalCluster(
                n_workers=self.spec.workers,
                threads_per_worker=self.spec.threads_per_worker,
                processes=True,
                asynchronous=True,
                dashboard_address=None,  # no web server nobody asked for
            )
            self.client = await Client(self.cluster, asynchronous=True)
        self.unusable = await self.import_problem()

    async def import_problem(self) -> str | None:
        """Why the cluster cannot run this project's sources, if it cannot: the scheduler and
        the workers find each source's `run` by its module's name, so they need this project
        installed, and a worker without it does not fail the task, it dies and the task never
        ends."""
        assert self.client is not None
        try:
            await self.client.run_on_scheduler(importlib.import_module, PACKAGE)
            await self.client.run(importlib.import_module, PACKAGE)
        except Exception as error:
            return (
                f"the Dask cluster at {self.where} cannot import {PACKAGE} ({one_line(error)}): "
                "install this project where the scheduler and every worker run (pip install -e .)"
            )
        return None

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        assert self.client is not None, "started by Executors.get"
        if self.unusable is not None:
            raise SourceError(self.unusable)
        remote = run_elsewhere_async if inspect.iscoroutinefunction(function) else run_elsewhere
        future = self.client.submit(remote, function, source, limits.max_details_bytes, pure=False)
        try:
            return settled(await future)
        except asyncio.CancelledError:
            # A timeout or Ctrl-C: stop the task without making this attempt wait for it.
            cleanup = asyncio.create_task(self.stop_task(future.key))
            self.cleanups.add(cleanup)
            cleanup.add_done_callback(self.cleanups.discard)
            raise
        except SourceError:
            raise
        except Exception as error:  # e.g. KilledWorker: the workers running it kept dying
            raise SourceError(f"on the Dask cluster at {self.where}: {one_line(error)}") from None

    async def stop_task(self, key: Any) -> None:
        """Cancel a task; a worker still running it is restarted (by its nanny), because
        Python cannot stop a running thread."""
        assert self.client is not None
        with contextlib.suppress(Exception):  # the cluster may be going away already
            await self.client.cancel([key], force=True)
            # A worker that was still unpacking the task when the cancel came runs it anyway:
            # watch for it a little while, not just once.
            for _ in range(int(DASK_STOP_GRACE_SECONDS / 0.25)):
                running = await self.client.call_stack(keys=[key])
                if running:
                    stuck = ", ".join(running)
                    log.warning(
                        "restarting the Dask workers %s: a timed-out source is stuck", stuck
                    )
                    await self.client.restart_workers(list(running))
                    return
                await asyncio.sleep(0.25)

    async def close(self) -> None:
        if self.cleanups and self.cluster is None:
            # Another's cluster: leave no stuck task behind. A LocalCluster of our own is
            # closed below, which stops its workers anyway.
            await asyncio.gather(*self.cleanups, return_exceptions=True)
        for cleanup in self.cleanups:
            cleanup.cancel()
        if self.client is not None:
            await self.client.close()
        if self.cluster is not None:
            # Stops its worker processes; awaitable as the cluster is asynchronous.
            await self.cluster.close()  # type: ignore[misc]


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


def executor_for(spec: ExecutorSpec) -> Executor:
    if spec.name == "process":
        return ProcessExecutor(spec)
    if spec.name == "dask":
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


def run_elsewhere(
    function: SourceFunction, source: Source, max_details_bytes: int
) -> tuple[bool, str]:
    """Runs in a worker process: (True, the checked summary as JSON) or (False, the error).

    Only text travels back, so a summary or an exception that does not pickle fails only
    this source, and SystemExit stays in the worker.
    """
    try:
        summary = function(source)
        if inspect.isawaitable(summary):
            summary = asyncio.run(awaited(summary))
        return True, json.dumps(checked_summary(summary, max_details_bytes))
    except BaseException as error:
        return False, one_line(error)


async def run_elsewhere_async(
    function: SourceFunction, source: Source, max_details_bytes: int
) -> tuple[bool, str]:
    """`run_elsewhere` for an `async def run` on Dask, which awaits it on the worker's own
    event loop rather than starting one per task."""
    try:
        summary = function(source)
        if inspect.isawaitable(summary):
            summary = await summary
        return True, json.dumps(checked_summary(summary, max_details_bytes))
    except BaseException as error:
        return False, one_line(error)


async def awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def settled(outcome: tuple[bool, str]) -> Any:
    succeeded, text = outcome
    if not succeeded:
        raise SourceError(text)
    return json.loads(text)


def start_worker(started: multiprocessing.Queue[int]) -> None:
    """Runs in each new worker process of the pool, once it has imported this module.

    The worker leads a process group of its own, which the programs its sources start join;
    when Pebble stops it (SIGTERM), it kills that group, so that a `sleep 600` started by a
    timed-out source does not run on as an orphan.
    """
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.killpg(0, signal.SIGKILL))
    started.put(os.getpid())


class LoopWatch:
    """Awaits an `async def run` one step at a time, timing each step: a step is the code
    between two awaits, during which no other source on the event loop can run."""

    def __init__(self, coroutine: Awaitable[Any], warn: Callable[[str], None]) -> None:
        self.coroutine: Coroutine[Any, Any, Any] = awaited(coroutine)
        self.warn = warn
        self.longest = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                if thrown is None:
                    waiting_on = self.coroutine.send(sent)
                else:
                    waiting_on = self.coroutine.throw(thrown)
            except StopIteration as finished:
                self.timed(started)
                return finished.value
            self.timed(started)
            try:
                sent, thrown = (yield waiting_on), None
            except BaseException as error:  # e.g. the timeout's cancellation: pass it on
                sent, thrown = None, error

    def timed(self, started: float) -> None:
        held = time.perf_counter() - started
        if held >= BLOCKING_SECONDS and held > self.longest:
            self.longest = held
            self.warn(
                f"blocked the event loop for {held:.2f} s in one go, holding up every other "
                "source: blocking code belongs in a plain def run (or executor: thread)"
            )


def in_own_thread(function: Callable[[Source], Any], source: Source) -> asyncio.Future[Any]:
    """Call `function(source)` in a new daemon thread; the future gets its result, or a
    SourceError whatever it raised (a `SystemExit` or `StopIteration` cannot travel to the
    event loop as itself: the first would end the program, the second cannot be set on a
    future at all).

    Not `asyncio.to_thread`: its pool has a fixed number of threads, which hung sources would
    use up, and the interpreter waits for them at exit. Python cannot stop a thread: one still
    stuck after its timeout runs on until it returns or the program ends (use `process`).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[Any], None], value: Any) -> None:
        def apply() -> None:
            if not future.done():  # a timeout may have cancelled it
                outcome(value)

        # RuntimeError: the run is over and its event loop closed; nobody waits for this now.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(apply)

    def work() -> None:
        try:
            result = function(source)
        except BaseException as error:
            settle(future.set_exception, SourceError(one_line(error)))
        else:
            settle(future.set_result, result)

    threading.Thread(target=work, name=f"source-{source.id}", daemon=True).start()
    return future
