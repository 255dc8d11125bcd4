"""The `dask` executor: a Dask distributed cluster, the scheduler at `dask_address` or a
LocalCluster started for the run (for the lifetime of `serve`) and closed after it. What its
tasks run on the workers is in dask_worker_tasks.py."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import uuid
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.results import SourceError, SourceFunction, one_line
from parallel_workflow_runtime._core.usage import ExecutorError, missing_extra
from parallel_workflow_runtime._execution.dask_worker_tasks import (
    RERUN_ERROR,
    STARTED_TOPIC,
    pause_worker,
    run_once,
    run_once_async,
    tasks_still_wanted,
    unpacked,
)
from parallel_workflow_runtime._execution.executor_base import (
    CallLimits,
    Executor,
    ExecutorSpec,
    settled,
)

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

log = logging.getLogger("parallel_workflow_runtime")

DASK_STOP_GRACE_SECONDS = 3.0  # how long a cancelled task is watched for a worker running it
# How long a worker running a timed-out source may finish the other tasks it runs before it
# is restarted anyway (which makes Dask run those again, each then a failed attempt).
DASK_DRAIN_SECONDS = 30.0
# How long after the first source that losing the scheduler failed the others are gathered
# into one warning: Dask cancels all its tasks at once, which then fail within milliseconds.
LOST_SOURCES_GATHERED_SECONDS = 0.2
DISTRIBUTED_EXTRA = missing_extra("executor: dask", "distributed")


class DaskExecutor(Executor):
    """Dask distributed through its asynchronous Client, so the event loop never blocks."""

    reports_start = True  # a task may wait in the cluster's queue (see `timed_from_start`)

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.where = spec.dask_address or "a LocalCluster"
        self.unusable: str | None = None  # set by start: why no source can run there
        self.cleanups: set[asyncio.Task[None]] = set()
        # The sources that losing the scheduler failed, not yet reported (see `scheduler_lost`).
        self.lost_sources: list[str] = []
        self.quiet_client_logs = LostSchedulerFilter(self)
        self.task_starts: dict[str, TaskStarts] = {}  # of the tasks in progress, by name
        # The calls waiting for this turn of the event loop to end, to be submitted together.
        self.pending: list[tuple[Any, tuple[Any, ...], asyncio.Future[Future]]] = []

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
                # Nor its statistical profiler, which nobody can see without it: each worker
                # walked every running task's stack every 10 ms, on its event loop, and with
                # a hundred tasks at once that took more of its CPU than running them did.
                config={"distributed.worker.profile.enabled": False},
            )
            self.client = await Client(self.cluster, asynchronous=True)
        logging.getLogger("distributed.client").addFilter(self.quiet_client_logs)
        assert self.client is not None  # for mypy with Dask's older annotations
        self.client.subscribe_topic(STARTED_TOPIC, self.task_started)
        self.unusable = await self.import_problem()

    async def import_problem(self) -> str | None:
        """Why the cluster cannot run this project's sources, if it cannot: the scheduler and
        the workers find each source's `run` by its module's name, so they need this project
        installed, and a worker without it does not fail the task, it dies and the task never
        ends."""
        assert self.client is not None
        package = current().package
        try:
            await self.client.run_on_scheduler(importlib.import_module, package)
            await self.client.run(importlib.import_module, package)
        except Exception as error:
            return (
                f"the Dask cluster at {self.where} cannot import {package} ({one_line(error)}): "
                "install this project where the scheduler and every worker run (pip install -e .)"
            )
        return None

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        assert self.client is not None, "started by Executors.get"
        if self.unusable is not None:
            raise SourceError(self.unusable)
        if self.client.status != "running":  # reconnecting to a lost scheduler, or given up
            raise self.scheduler_lost(source)
        remote = run_once_async if inspect.iscoroutinefunction(function) else run_once
        started_name = f"{current().package}-started-{uuid.uuid4().hex}"
        # Outcomes stay out of the event log of a scheduler that others may share.
        told = self.cluster is not None
        future = await self.submitted(
            remote,
            (started_name, function, source, limits.max_details_bytes, told, limits.traceparent),
        )
        try:
            return settled(unpacked(await self.timed_from_start(future, started_name, limits)))
        except asyncio.CancelledError:
            # A timeout or Ctrl-C: stop the task without making this attempt wait for it.
            cleanup = asyncio.create_task(self.stop_task(future.key))
            self.cleanups.add(cleanup)
            cleanup.add_done_callback(self.cleanups.discard)
            raise
        except SourceError:
            raise
        except Exception as error:  # e.g. KilledWorker: the workers running it kept dying
            if self.client.status != "running":  # Dask cancelled every task it had: one line
                raise self.scheduler_lost(source) from None
            raise SourceError(f"on the Dask cluster at {self.where}: {one_line(error)}") from None

    def submitted(self, remote: Any, arguments: tuple[Any, ...]) -> asyncio.Future[Future]:
        """The Dask future of `remote(*arguments)`. The calls of one turn of the event loop
        (a Parallel block starts all its sources in one) go to the scheduler together, as one
        `client.map`: one graph update for all of them, where a `submit` each cost the
        scheduler more than running the tasks did."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Future] = loop.create_future()
        if not self.pending:
            loop.call_soon(self.submit_pending)
        self.pending.append((remote, arguments, waiter))
        return waiter

    def submit_pending(self) -> None:
        client = self.client_of_run()
        pending, self.pending = self.pending, []
        for remote in dict.fromkeys(remote for remote, _, _ in pending):  # in order, once each
            calls = [(arguments, waiter) for each, arguments, waiter in pending if each is remote]
            try:
                futures = client.map(remote, *zip(*(a for a, _ in calls), strict=True), pure=False)
            except Exception:  # one of them does not pickle: each alone, so only it fails
                for arguments, waiter in calls:
                    try:
                        future = client.submit(remote, *arguments, pure=False)
                    except Exception as error:
                        if not waiter.done():
                            waiter.set_exception(SourceError(untravelled(error)))
                    else:
                        self.hand_over(future, waiter)
                continue
            for future, (_, waiter) in zip(futures, calls, strict=True):
                self.hand_over(future, waiter)

    @staticmethod
    def hand_over(future: Future, waiter: asyncio.Future[Future]) -> None:
        if waiter.done():  # its attempt was cancelled while it waited to be submitted
            future.cancel()
        else:
            waiter.set_result(future)

    async def timed_from_start(self, future: Future, started_name: str, limits: CallLimits) -> str:
        """The task's outcome. `limits.started()` is called once a worker starts the task, so
        that the time it waited in the cluster's queue (behind other runs' tasks, say) does
        not count against its timeout. A task that Dask starts a second time (its worker
        stopped while running it) fails the attempt at once, and is not waited for.

        The task's start and, on a LocalCluster of our own, its outcome (unless it is large)
        come with the workers' events (see `note`), which `task_started` hands to its
        TaskStarts: no fetching of each result from its worker, and no task or event of its
        own per call, which for hundreds of calls cost the event loop (which the scheduler of
        a LocalCluster shares) more than Dask itself did. A task that ended without its
        outcome heard (another's cluster, a large outcome, an error, a cancelled task) is
        awaited as a Dask future: its result or Dask's error."""
        heard: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        finished = asyncio.ensure_future(future.exception())  # without fetching its result
        finished.add_done_callback(lambda _: unheard(heard))
        starts = self.task_starts[started_name] = TaskStarts(limits, heard)
        try:
            text = None
            try:
                text = await heard
            except asyncio.CancelledError:
                if not starts.again or being_cancelled():
                    raise  # a timeout or Ctrl-C: `call` stops the task
            if starts.again:
                # Not stop_task: restarting the worker would re-run other tasks in turn.
                with contextlib.suppress(Exception):
                    await self.client_of_run().cancel([future.key], force=True)
                raise SourceError(RERUN_ERROR)
            if text is None:
                text = str(await future)
            starts.start()  # its start was not heard (yet): it ran all the same
            return text
        finally:
            finished.cancel()
            del self.task_starts[started_name]

    def task_started(self, event: tuple[float, Any]) -> None:
        """Hears the starts and the outcomes of tasks (`run_once`) that the workers log to
        the scheduler, each worker those of a moment together (see `note`)."""
        _, noted = event
        for item in noted:
            if isinstance(item, str):  # a start
                starts = self.task_starts.get(item)
                if starts is not None:
                    starts.heard()
            else:  # an end: [its name, its outcome] (a list arrives as a tuple)
                starts = self.task_starts.get(str(item[0]))
                if starts is not None:
                    starts.ended(str(item[1]))

    def client_of_run(self) -> Client:
        assert self.client is not None, "started by Executors.get"
        return self.client

    def scheduler_lost(self, source: Source) -> SourceError:
        """The error of a source that the loss of the scheduler failed. The sources it fails
        together are named in one warning, soon after (Dask cancels all its tasks at once),
        instead of Dask's own tracebacks."""
        if not self.lost_sources:
            asyncio.get_running_loop().call_later(LOST_SOURCES_GATHERED_SECONDS, self.report_lost)
        self.lost_sources.append(source.id)
        return SourceError(f"lost the Dask scheduler at {self.where}")

    def report_lost(self) -> None:
        if self.lost_sources:
            log.warning(
                "lost the Dask scheduler at %s: %d source(s) failed: %s",
                self.where,
                len(self.lost_sources),
                ", ".join(self.lost_sources),
            )
        self.lost_sources = []

    async def stop_task(self, key: Any) -> None:
        """Cancel a task; a worker still running it is restarted (by its nanny), because
        Python cannot stop a running thread, but only once the other tasks running there
        have finished: restarting it at once made Dask run them again (other runs' healthy
        sources among them)."""
        assert self.client is not None
        with contextlib.suppress(Exception):  # the cluster may be going away already
            await self.client.cancel([key], force=True)
            # A worker that was still unpacking the task when the cancel came runs it anyway:
            # watch for it a little while, not just once.
            for _ in range(int(DASK_STOP_GRACE_SECONDS / 0.25)):
                running = await self.client.call_stack(keys=[key])
                if running:
                    await self.restart_when_drained(list(running))
                    return
                await asyncio.sleep(0.25)

    async def restart_when_drained(self, workers: list[str]) -> None:
        """Restart `workers` once no task that anyone still wants runs there: each is
        paused first (Dask gives a paused worker no new task), so that this happens as soon
        as the tasks it runs for other sources and runs have finished, or timed out in turn.
        After DASK_DRAIN_SECONDS it is restarted anyway, and Dask runs those again."""
        assert self.client is not None
        await self.client.run(pause_worker, workers=workers)
        deadline = asyncio.get_running_loop().time() + DASK_DRAIN_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            wanted = await self.client.run(tasks_still_wanted, workers=workers)
            if not any(wanted.values()):
                break
            await asyncio.sleep(0.25)
        log.warning("restarting the Dask workers %s: a timed-out source is stuck", workers)
        await self.client.restart_workers(workers)

    async def close(self) -> None:
        self.report_lost()  # the run ended before the warning was due
        if self.cleanups and self.cluster is None:
            # Another's cluster: leave no stuck task behind. A LocalCluster of our own is
            # closed below, which stops its workers anyway.
            await asyncio.gather(*self.cleanups, return_exceptions=True)
        for cleanup in self.cleanups:
            cleanup.cancel()
        if self.client is not None:
            await self.client.close()  # closing a client that lost its scheduler logs an error
        logging.getLogger("distributed.client").removeFilter(self.quiet_client_logs)
        if self.cluster is not None:
            # Stops its worker processes; awaitable as the cluster is asynchronous.
            await self.cluster.close()  # type: ignore[misc]


class LostSchedulerFilter(logging.Filter):
    """Keeps Dask's client from logging tracebacks about a scheduler that went away (it tries
    to reconnect, gives up, is closed): the executor says so itself, in one line."""

    def __init__(self, executor: DaskExecutor) -> None:
        super().__init__()
        self.executor = executor

    def filter(self, record: logging.LogRecord) -> bool:
        client = self.executor.client
        return client is None or client.status == "running"


class TaskStarts:
    """When a task of ours started on a worker, whether it started again, and its outcome
    once it is heard."""

    def __init__(self, limits: CallLimits, outcome: asyncio.Future[str | None]) -> None:
        self.limits = limits
        self.outcome = outcome
        self.started = False
        self.again = False

    def heard(self) -> None:
        if not self.started:
            self.start()
        elif not self.again:
            self.again = True
            self.outcome.cancel()  # the attempt fails at once (see `timed_from_start`)

    def ended(self, text: str) -> None:
        self.start()
        if not self.outcome.done():
            self.outcome.set_result(text)

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.limits.started()


def unheard(outcome: asyncio.Future[str | None]) -> None:
    """The task has ended: if its outcome was not heard, it is to be fetched (`None`)."""
    if not outcome.done():
        outcome.set_result(None)


def being_cancelled() -> bool:
    """Whether the running task is being cancelled (a timeout, Ctrl-C), rather than only
    what it awaits."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def untravelled(error: BaseException) -> str:
    """The one line of a source that Dask could not send: Dask's own error names its task
    graph, the error it was raised from names what did not pickle."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"cannot be sent to the Dask cluster: {one_line(error)}"
