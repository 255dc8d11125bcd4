"""What the `history` commands do, one function each: `history` lists the recent runs,
`history show` prints one, `history prune` deletes old ones, `history cursors` and
`history ticks` list the connector sources' cursors and the schedules' ticks. cli.py's parser
calls them, as it calls commands.py's.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from rich.console import Console

from parallel_workflow_runtime._cli.commands import choose, quiet_agno_logs, writable_page
from parallel_workflow_runtime._cli.views import (
    cursor_document,
    cursors_table,
    history_document,
    history_table,
    print_summary,
    stored_document,
    tick_document,
    ticks_table,
)
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.usage import UsageError
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import (
    existing_history,
    history_location,
    prune,
    recent_runs,
    stored_run,
)


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
