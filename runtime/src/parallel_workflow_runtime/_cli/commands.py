"""What each command of the command line does, one small function per command: cli.py
parses the arguments and calls the one that `set_defaults(func=...)` names.

What only some commands use (the web server, the bench, the HTML pages, the engine's old
files) is imported in the functions that use it: `run` does not wait for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.live import Live

from parallel_workflow_runtime._cli.views import (
    ProgressTable,
    cursor_document,
    cursors_table,
    event_line,
    history_document,
    history_table,
    print_summary,
    schedule_document,
    schedules_table,
    stored_document,
    tick_document,
    ticks_table,
    utc_text,
    workflows_table,
)
from parallel_workflow_runtime._core.connector_config import CONNECTOR_KINDS, cursor_of
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry, default_entry, discover
from parallel_workflow_runtime._core.results import RunOutcome
from parallel_workflow_runtime._core.settings import history_elsewhere, load_settings
from parallel_workflow_runtime._core.usage import RunInterrupted, UsageError
from parallel_workflow_runtime._execution.running import execute
from parallel_workflow_runtime._execution.steps import effective_report_model
from parallel_workflow_runtime._observe import tracing
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import (
    existing_history,
    history_for_run,
    history_location,
    prune,
    recent_runs,
    stored_run,
)

if TYPE_CHECKING:
    from agno.db.base import BaseDb

    from parallel_workflow_runtime._bench.workflow import BenchSettings
    from parallel_workflow_runtime._core.config import WorkflowConfig


Results = TypeVar("Results")  # what a bench returns, as its table printer takes it


def run_command(args: argparse.Namespace) -> int:
    entry = choose(discover(), args.workflow)
    args.full_refresh = refreshed_sources(entry, args.full_refresh)
    html = writable_page(args.html)  # before the run, not after
    quiet_agno_logs(args.verbose)
    # Progress goes to stderr when stdout carries the JSON document.
    console = Console(stderr=args.json, highlight=False, soft_wrap=True)
    db = history_for_run()
    # A history outside the project's .data/ (an installed project's user data folder) is said
    # once: a cron job's runs should not seem lost to someone looking in .data/.
    elsewhere = history_elsewhere(load_settings())
    if elsewhere is not None:
        print(elsewhere, file=sys.stderr)
    # With --json, stdout carries the document alone: what the sources print goes to stderr.
    with printed_to_stderr() if args.json else contextlib.nullcontext():
        try:
            outcome = run_with_progress(args, entry, console, db)
        finally:
            tracing.flush()  # the run's last spans, into the history before it is read
    if args.json:
        print(json.dumps(outcome.to_json_dict(), indent=2, ensure_ascii=False, allow_nan=False))
    elif outcome.aggregation is not None:
        print_summary(console, outcome.aggregation, outcome.report)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    if html is not None and outcome.aggregation is not None:
        from parallel_workflow_runtime._observe.page import outcome_page, write_page

        write_page(html, outcome_page(outcome, db))  # the stored run's, as history show's
        print(f"The run's page: {html}", file=sys.stderr)
    return outcome.exit_code


def run_with_progress(
    args: argparse.Namespace, entry: WorkflowEntry, console: Console, db: BaseDb | None
) -> RunOutcome:
    """Run the workflow, showing its progress as `run`'s options ask."""
    options: dict[str, Any] = {
        "executor": args.executor,
        "full_refresh": args.full_refresh,
        "trace": tracing.wanted(args.trace, load_settings().tracing),
    }
    if args.stream:
        source_ids = {source.id for source in entry.config.sources}

        def print_line(event: Any) -> None:
            line = event_line(event, source_ids)
            if line is not None:
                console.print(line)

        return execute(entry, args.message, db=db, on_event=print_line, **options)
    if console.is_terminal and not args.json:
        # A live table of the sources on a terminal; it gives way to the summary at the end.
        table = ProgressTable(entry.config.sources)
        with Live(table, console=console, refresh_per_second=8, transient=True):
            return execute(entry, args.message, db=db, listener=table, **options)
    return execute(entry, args.message, db=db, **options)


def refreshed_sources(entry: WorkflowEntry, names: list[str] | None) -> frozenset[str] | None:
    """`--full-refresh`'s sources, checked: each a connector source that keeps a cursor."""
    if names is None:
        return None
    with_cursor = [s.id for s in entry.config.sources if cursor_of(s.connector) is not None]
    for name in names:
        if name not in with_cursor:
            raise UsageError(
                f"--full-refresh: {name!r} is not a source of {entry.config.workflow_id} that"
                f" keeps a cursor; those that do: {', '.join(with_cursor) or 'none'}"
            )
    return frozenset(names)


@contextlib.contextmanager
def printed_to_stderr() -> Iterator[None]:
    """Whatever is printed meanwhile goes to stderr: through sys.stdout, and through file
    descriptor 1, which C code writes to and worker processes started meanwhile inherit."""
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()  # what code that kept the real sys.stdout wrote, still to stderr
        os.dup2(stdout, 1)
        os.close(stdout)


def list_command(args: argparse.Namespace) -> int:
    entries = discover()
    models = {wid: effective_report_model(entry.config) for wid, entry in entries.items()}
    Console().print(workflows_table(entries, models))
    return 0


def check_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._cli.check import (
        check_project,
        env_file_line,
        findings_table,
        problems,
    )

    quiet_agno_logs(verbose=False)
    findings = check_project(args.workflow, args.timeout)
    count = problems(findings)
    if args.json:
        document = {
            "ok": count == 0,
            "problems": count,
            "checks": [finding.to_json_dict() for finding in findings],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 1 if count else 0
    # Piped output gets a wide page, as for history: the details are long lines.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(findings_table(findings))
    loaded = env_file_line()
    if loaded is not None:
        print(loaded)
    print(f"{count} problem{'s' if count != 1 else ''}." if count else "All is well.")
    return 1 if count else 0


def engine_edits_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._cli.engine_edits import EngineEditsError, removed_edits

    try:
        removed = removed_edits(current())
    except EngineEditsError as error:
        raise UsageError(str(error)) from None
    for path in removed:
        print(
            f"{path}: you had edited it, and the template update removed it (the engine is"
            f" parallel-workflow-runtime now); your version: git show HEAD:{path}"
        )
    if not removed:
        print("no file you had edited was removed by the template update")
    return 1 if removed else 0


def history_command(args: argparse.Namespace) -> int:
    if args.workflow is not None:
        choose(discover(), args.workflow)  # refuses an unknown id
    quiet_agno_logs(verbose=False)
    location = history_location()
    db = existing_history(location)
    records = recent_runs(db, args.workflow, args.limit) if db is not None else []
    # Which database this is, on a line of its own that rich does not wrap: it depends on where
    # the command runs (settings.sqlite_file), and a path is there to be copied.
    if args.json:
        print(json.dumps([history_document(record) for record in records], indent=2))
        print(f"History: {location}", file=sys.stderr)  # stdout stays one JSON document
        return 0
    if not records:
        print(f"No runs yet in {location}.")
        return 0
    print(f"Recent runs in {location}:")
    table = history_table(records, location)
    table.title = None  # the line above, which a title as wide as the table would break
    # Piped output gets a wide page rather than rich's 80 columns: eight columns need it.
    Console(highlight=False, width=None if sys.stdout.isatty() else 140).print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    html = writable_page(args.html)
    quiet_agno_logs(verbose=False)
    location = history_location()
    db = existing_history(location)
    if db is None:
        raise UsageError(f"no run {args.run_id!r}: no runs yet in {location}")
    record = stored_run(db, args.run_id)
    from parallel_workflow_runtime._observe.trace_view import run_spans, trace_tree

    # The page shows the trace whenever the run has one.
    spans = run_spans(db, record.run_id) if args.trace or html is not None else None
    if args.trace and not spans:
        raise UsageError(
            f"run {record.run_id} has no trace: it ran with tracing off (run --trace, or "
            f"`tracing: true` in {current().settings_path})"
        )
    if html is not None:
        from parallel_workflow_runtime._observe.page import record_page, write_page

        write_page(html, record_page(record, spans))
        print(f"The run's page: {html}", file=sys.stderr)
    elif args.json:
        document = stored_document(record)
        if spans:
            document["trace"] = [span.to_json_dict() for span in spans]
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif spans:
        Console(highlight=False).print(trace_tree(spans))
    elif record.aggregation is None:
        print(f"Run {record.run_id} ({record.status}) stopped before its Aggregation step.")
    else:
        print_summary(Console(highlight=False), record.aggregation, record.report)
    return 0


def prune_command(args: argparse.Namespace) -> int:
    if args.workflow is not None:
        choose(discover(), args.workflow)
    quiet_agno_logs(verbose=False)
    location = history_location()
    older_than = timedelta(days=args.older_than) if args.older_than is not None else None
    db = existing_history(location)
    deleted = prune(db, args.workflow, args.keep, older_than) if db is not None else 0
    if args.json:
        print(json.dumps({"deleted_runs": deleted}))
    else:
        print(f"Deleted {deleted} runs from {location}.")
    return 0


def cursors_command(args: argparse.Namespace) -> int:
    if args.workflow is not None:
        choose(discover(), args.workflow)
    quiet_agno_logs(verbose=False)
    location = history_location()
    db = existing_history(location)
    cursors = CursorStore.of(db).all(args.workflow) if db is not None else []
    if args.json:
        print(json.dumps([cursor_document(cursor) for cursor in cursors], indent=2))
        return 0
    if not cursors:
        print(f"No cursors yet in {location}.")
        return 0
    print(f"Cursors in {location}:")
    Console(highlight=False, width=None if sys.stdout.isatty() else 140).print(
        cursors_table(cursors)
    )
    return 0


def configs_of(args: argparse.Namespace) -> dict[str, WorkflowConfig]:
    """The configs of --workflow's workflow, or of all of them."""
    entries = discover()
    if args.workflow is not None:
        entry = choose(entries, args.workflow)
        return {entry.config.workflow_id: entry.config}
    return {workflow_id: entry.config for workflow_id, entry in entries.items()}


def schedule_list_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._schedule.scheduled import all_schedules, next_fires
    from parallel_workflow_runtime._store.ticks import TickStore

    schedules = all_schedules(configs_of(args))
    quiet_agno_logs(verbose=False)
    db = existing_history(history_location())
    store = TickStore.of(db) if db is not None else None
    rows = []
    for schedule in schedules:
        [fire] = next_fires(schedule, 1)
        last = store.rows(schedule=schedule.key, limit=1) if store is not None else []
        rows.append((schedule, fire, last[0] if last else None))
    if args.json:
        print(json.dumps([schedule_document(*row) for row in rows], indent=2))
        return 0
    if not rows:
        print("No schedules: add them under `schedules:` in a workflow's config.yaml.")
        return 0
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(
        schedules_table(rows)
    )
    return 0


def schedule_next_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._schedule.scheduled import find_schedule, next_fires

    schedule = find_schedule(configs_of(args), args.schedule)
    fires = next_fires(schedule, args.count)
    if args.json:
        print(json.dumps([{"local": f.isoformat(), "utc": utc_text(f)} for f in fires]))
        return 0
    print(f"{schedule.key}: {schedule.cron} in {schedule.timezone}")
    for fire in fires:
        print(f"  {fire.strftime('%Y-%m-%d %H:%M:%S %Z')}   {utc_text(fire)}")
    return 0


def schedule_trigger_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._schedule.scheduled import find_schedule, request_of
    from parallel_workflow_runtime._schedule.scheduler import Scheduler
    from parallel_workflow_runtime._store.ticks import RUNNING, TickStore

    schedule = find_schedule(configs_of(args), args.schedule)
    entry = discover()[schedule.workflow_id]
    quiet_agno_logs(verbose=False)
    db = history_for_run()
    if db is None:
        raise UsageError("schedule trigger needs the run history (the serve extra)")

    async def not_here(*_: Any) -> tuple[str | None, bool]:  # the run is `execute`, below
        raise NotImplementedError

    scheduler = Scheduler(store=TickStore.of(db), schedules=[schedule], start_run=not_here)
    tick = scheduler.claim_trigger(schedule)
    if tick.state != RUNNING:
        print(f"{schedule.key}: {tick.state}: {tick.reason or 'behind the run under way'}")
        return 1 if tick.state == "skipped" else 0
    # The run as `run` makes it, here: Ctrl-C stops it as it stops `run`.
    try:
        outcome = execute(entry, request_of(schedule, tick), db=db)
    except RunInterrupted as interrupted:
        scheduler.finish(tick, "cancelled", interrupted.outcome.run_id, "interrupted (Ctrl-C)")
        raise
    except BaseException as problem:  # a usage error (a broken executor), Ctrl-C twice
        scheduler.finish(tick, "failed", None, " ".join(str(problem).split())[:300])
        raise
    scheduler.finish(tick, "ok" if outcome.exit_code == 0 else "failed", outcome.run_id)
    if args.json:
        print(json.dumps(outcome.to_json_dict(), indent=2, ensure_ascii=False, allow_nan=False))
    elif outcome.aggregation is not None:
        print_summary(Console(highlight=False), outcome.aggregation, outcome.report)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    return outcome.exit_code


def ticks_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._store.ticks import TickStore

    quiet_agno_logs(verbose=False)
    location = history_location()
    db = existing_history(location)
    ticks = TickStore.of(db).rows(limit=args.limit) if db is not None else []
    if args.workflow is not None:
        choose(discover(), args.workflow)
        ticks = [tick for tick in ticks if tick.schedule.startswith(f"{args.workflow}/")]
    if args.json:
        print(json.dumps([tick_document(tick) for tick in ticks], indent=2))
        return 0
    if not ticks:
        print(f"No ticks yet in {location}.")
        return 0
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(ticks_table(ticks))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._serve.serve import serve

    location = history_location()
    serve(
        args.host,
        args.port,
        location,
        allow_unauthenticated=args.allow_unauthenticated,
        executor=args.executor,
        trace=args.trace,
    )
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._bench.page import bench_page
    from parallel_workflow_runtime._bench.results import print_bench
    from parallel_workflow_runtime._bench.workflow import run_bench
    from parallel_workflow_runtime._observe.page import write_page

    entry = choose(discover(), args.workflow)
    writable_page(args.html)
    quiet_agno_logs(verbose=False)
    if args.serve:
        return serve_bench_command(args, entry)
    if args.runs is not None:
        raise UsageError("--runs is for --serve")
    if args.startup:
        return startup_bench_command(args, entry)
    if args.trace:
        return trace_bench_command(args, entry)
    if args.kind in CONNECTOR_KINDS:
        return connector_bench_command(args, entry)
    results = run_bench(entry, bench_settings(args), progress=to_stderr)
    if args.html is not None:
        write_page(args.html, bench_page(results))
        print(f"The bench's page: {args.html}", file=sys.stderr)
    # Piped output gets a wide page, as for history: seven columns need it.
    wide = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    return print_results(args, results, print_bench, wide)


def bench_settings(args: argparse.Namespace) -> BenchSettings:
    """The synthetic sources and runs that `bench` (and `bench --trace`) time."""
    from parallel_workflow_runtime._bench.workflow import BenchSettings

    return BenchSettings(
        sources=args.sources or 200,
        latencies=args.latency or (0.2,),
        max_concurrency=args.max_concurrency,
        repeat=args.repeat,
        source_kind=args.kind,
        sequential=args.sequential,
        executors=args.executors,
        max_workers=args.max_workers,
    )


def to_stderr(line: str) -> None:
    """A bench's progress: on stderr, so that `--json` output stays one document."""
    print(line, file=sys.stderr)


def print_results(
    args: argparse.Namespace,
    results: Results,
    print_table: Callable[[Console, Results], None],
    console: Console | None = None,
) -> int:
    """A bench's results: one JSON document with --json, else its table."""
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(console or Console(highlight=False), results)
    return 0


def refuse_workflow_bench_options(args: argparse.Namespace, what: str) -> None:
    """The bench's options that only its timing of the workflow's executors reads."""
    if args.html is not None or args.executors or args.sequential:
        raise UsageError(f"{what} takes no --html, --executor or --sequential")


def startup_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.results import print_startup_bench
    from parallel_workflow_runtime._bench.startup import run_startup_bench

    refuse_workflow_bench_options(args, "--startup")
    results = run_startup_bench(entry, args.repeat, to_stderr)
    return print_results(args, results, print_startup_bench)


def trace_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.results import print_trace_bench
    from parallel_workflow_runtime._bench.tracing_cost import run_trace_bench

    refuse_workflow_bench_options(args, "--trace")
    if args.kind not in ("async", "sync"):
        raise UsageError("--trace times --kind async or sync sources")
    results = run_trace_bench(entry, bench_settings(args), to_stderr)
    return print_results(args, results, print_trace_bench)


def serve_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.serve import (
        DEFAULT_LATENCY_SECONDS,
        DEFAULT_RUNS,
        SERVE_KINDS,
        ServeBenchSettings,
        print_serve_bench,
        run_serve_bench,
    )

    refuse_workflow_bench_options(args, "--serve")
    if args.startup or args.kind not in SERVE_KINDS or args.rows is not None:
        raise UsageError("--serve takes no --startup or --rows, and --kind async or sync only")
    settings = ServeBenchSettings(
        runs=args.runs or DEFAULT_RUNS,
        sources=args.sources,
        latencies=args.latency or (DEFAULT_LATENCY_SECONDS,),
        source_kind=args.kind,
        max_concurrency=args.max_concurrency,
        repeat=args.repeat,
    )
    results = run_serve_bench(entry, settings, to_stderr)
    return print_results(args, results, print_serve_bench, Console(highlight=False, soft_wrap=True))


def connector_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.connector_cost import (
        ConnectorBenchSettings,
        run_connector_bench,
    )
    from parallel_workflow_runtime._bench.results import print_connector_bench

    refuse_workflow_bench_options(args, f"--kind {args.kind}")
    http = args.kind == "http"
    settings = ConnectorBenchSettings(
        kind=args.kind,
        sources=args.sources or (8 if http else 1),
        rows=args.rows or (2_000 if http else 1_000_000),
        repeat=args.repeat,
        page_delay=args.page_delay,
    )
    results = run_connector_bench(entry, settings, progress=to_stderr)
    return print_results(args, results, print_connector_bench)


def writable_page(path: Path | None) -> Path | None:
    """`--html`'s file, checked before the command's work (PageError if it cannot be written
    there), or None without --html."""
    if path is None:
        return None
    from parallel_workflow_runtime._observe.page import writable

    return writable(path)


def choose(entries: dict[str, WorkflowEntry], workflow_id: str | None) -> WorkflowEntry:
    """The workflow `--workflow` names, else the default one (registry.default_entry)."""
    if workflow_id is None:
        return default_entry(entries)
    if workflow_id not in entries:
        raise UsageError(
            f"unknown workflow id {workflow_id!r}; known: {', '.join(entries) or 'none'}"
        )
    return entries[workflow_id]


def quiet_agno_logs(verbose: bool) -> None:
    # Agno logs failures itself, to stdout when it is not a terminal; this CLI reports them
    # (once, on stderr), so Agno's loggers stay off unless --verbose asks for them.
    for name in ("agno", "agno-team", "agno-workflow"):
        logging.getLogger(name).disabled = not verbose
