"""The server that `bench --serve` times: `python -m parallel_workflow_runtime._bench.server`.

It serves one workflow of a project as `serve` does (the app of http_app.py, uvicorn with the
limits of http_limits.py, on the history that the environment names, no process left behind),
with the workflow's sources replaced by the bench's synthetic ones (workflow.py), each waiting
its `--latency`, and the offline report. It listens on a free loopback port, which it writes
to `--port-file` once it listens; SIGINT or SIGTERM stop it. Only the bench starts it
(serve.py): users serve their own sources with `serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from parallel_workflow_runtime._bench.serve import SERVE_KINDS
from parallel_workflow_runtime._bench.workflow import BenchSettings, bench_source, bench_sources
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.settings import load_settings
from parallel_workflow_runtime._execution.children import no_process_left_behind
from parallel_workflow_runtime._execution.executors import preflight
from parallel_workflow_runtime._serve.http_app import app_serving
from parallel_workflow_runtime._serve.http_limits import (
    LISTEN_BACKLOG,
    LimitedConfig,
    connection_limits,
)
from parallel_workflow_runtime._serve.serve import listen
from parallel_workflow_runtime._store.history import open_history

HOST = "127.0.0.1"  # loopback only: the bench's server needs no key


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    importlib.import_module(args.package)  # which registers the project (its registry.py)
    # Agno logs what fails to stdout, where nobody reads it: the bench reads the answers.
    for name in ("agno", "agno-team", "agno-workflow"):
        logging.getLogger(name).disabled = True
    entry = discover()[args.workflow]
    settings = BenchSettings(
        sources=args.sources, latencies=args.latency, source_kind=args.kind, repeat=1
    )
    sources = bench_sources(entry, settings)
    # The cap counts the sources of every run on the server's loop of runs, as `serve` does:
    # by default it is never reached, so that what is timed is the engine, not the cap.
    cap = args.max_concurrency or len(sources) * args.runs
    config = dataclasses.replace(entry.config, sources=sources, max_concurrency=cap)
    db = open_history()  # the bench's own: the environment names its file
    function = bench_source(settings.source_kind)
    workflow = entry.factory(
        db=db,
        config=config,
        report_model="",  # the offline report: the bench times the engine, not a model
        source_functions={source.id: function for source in sources},
    )
    app = app_serving({config.workflow_id: workflow}, {config.workflow_id: config}, db)
    asyncio.run(preflight(app.state.executor_specs))
    limits = connection_limits(load_settings().serve)
    with listen(HOST, 0, LISTEN_BACKLOG) as sock, no_process_left_behind():
        port = sock.getsockname()[1]
        uvicorn_config = LimitedConfig(app, limits, host=HOST, port=port, log_level="warning")
        server = uvicorn.Server(uvicorn_config)
        write_port(args.port_file, port)
        server.run(sockets=[sock])
    return 0


def write_port(path: Path, port: int) -> None:
    """The port, in a file that appears whole: the bench reads it as soon as it exists."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(str(port), encoding="utf-8")
    os.replace(partial, path)


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m parallel_workflow_runtime._bench.server",
        description="The server that `bench --serve` starts and times; not for other uses.",
    )
    arguments.add_argument("package", help="the project's package, which registers it")
    arguments.add_argument("workflow", help="the workflow id to serve")
    arguments.add_argument("--port-file", type=Path, required=True)
    arguments.add_argument("--sources", type=int, required=True)
    arguments.add_argument("--latency", type=float, nargs="+", required=True)
    arguments.add_argument("--kind", choices=SERVE_KINDS, required=True)
    arguments.add_argument("--runs", type=int, required=True, help="at once, at most")
    arguments.add_argument("--max-concurrency", type=int)
    return arguments


if __name__ == "__main__":
    raise SystemExit(main())
