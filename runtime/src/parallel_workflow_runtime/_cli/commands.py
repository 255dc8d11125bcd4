"""What each command of the command line does, one small function per command: cli.py
parses the arguments and calls the one that `set_defaults(func=...)` names. Here: `run`,
`list`, `check`, `engine-edits` and `serve`, and what the commands share (choose,
writable_page, quiet_agno_logs); the families of commands have modules of their own:
history_commands.py, schedule_commands.py, bench_commands.py.

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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live

from parallel_workflow_runtime._cli.views import (
    ProgressTable,
    event_line,
    print_summary,
    workflows_table,
)
from parallel_workflow_runtime._core.connector_config import cursor_of
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry, default_entry, discover
from parallel_workflow_runtime._core.results import RunOutcome
from parallel_workflow_runtime._core.settings import history_elsewhere, load_settings
from parallel_workflow_runtime._core.usage import UsageError
from parallel_workflow_runtime._execution.running import execute
from parallel_workflow_runtime._execution.steps import effective_report_model
from parallel_workflow_runtime._observe import tracing
from parallel_workflow_runtime._store.history import history_location
from parallel_workflow_runtime._store.history_opening import (
    HistoryOpening,
    history_while_running,
    opened,
)

if TYPE_CHECKING:
    from agno.db.base import BaseDb


def run_command(args: argparse.Namespace) -> int:
    entry = choose(discover(), args.workflow)
    args.full_refresh = refreshed_sources(entry, args.full_refresh)
    html = writable_page(args.html)  # before the run, not after
    quiet_agno_logs(args.verbose)
    # Progress goes to stderr when stdout carries the JSON document.
    console = Console(stderr=args.json, highlight=False, soft_wrap=True)
    if tracing.wanted(args.trace, load_settings().tracing):
        tracing.import_modules()  # before the history's thread starts importing (tracing.py)
    # Opening while the sources run, when nothing needs it sooner (history_opening.py).
    db = history_while_running()
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
            if isinstance(db, HistoryOpening):
                db.done()  # its thread ends with the command
    if args.json:
        print(json.dumps(outcome.to_json_dict(), indent=2, ensure_ascii=False, allow_nan=False))
    elif outcome.aggregation is not None:
        print_summary(console, outcome.aggregation, outcome.report)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    if html is not None and outcome.aggregation is not None:
        from parallel_workflow_runtime._observe.page import outcome_page, write_page

        write_page(html, outcome_page(outcome, opened(db)))  # the stored run's, as history show's
        print(f"The run's page: {html}", file=sys.stderr)
    return outcome.exit_code


def run_with_progress(
    args: argparse.Namespace,
    entry: WorkflowEntry,
    console: Console,
    db: BaseDb | HistoryOpening | None,
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
    from parallel_workflow_runtime._cli.check import check_project
    from parallel_workflow_runtime._cli.check_findings import (
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
