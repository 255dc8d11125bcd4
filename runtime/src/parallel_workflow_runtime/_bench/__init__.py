"""The `bench` command's modules: what the engine costs, timed.

Only `bench` imports them (bench_commands.py's bench_command and its helpers, inside the
functions), so that `run`, `serve` and a project's own code never load them;
tests/test_bench_imports.py fails if anything else does. This file imports nothing, so that
importing one of them loads only what that one needs.

- `workflow`: `bench`, synthetic sources through the workflow on each executor, against a
  bare `asyncio.gather` of the same sources and the ideal.
- `results`: the medians and ratios of every bench's runs, as `--json`'s document and as the
  terminal's tables.
- `startup`: `bench --startup`, `run` as a whole process besides its parallel block, against
  the import floor.
- `tracing_cost`: `bench --trace`, the workflow's runs and a `run` process, traced against
  untraced.
- `serve`: `bench --serve`, runs sent at once to a real server, the 95th percentile of their
  answers' times against the median.
- `server`: the server that `bench --serve` starts in a process of its own
  (`python -m parallel_workflow_runtime._bench.server`).
- `connector_cost`: `bench --kind sql|http|file`, connector sources read through the
  workflow against dlt reading the same alone.
- `http_api`: the local HTTP API that `bench --kind http` reads, in a process of its own.
- `page`: `bench --html`, the bench's ways as bars on one HTML page.
"""
