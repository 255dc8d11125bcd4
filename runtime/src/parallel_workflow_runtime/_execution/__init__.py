"""How a workflow runs: its steps, each source's attempts within their limits, and the
executors they run on (`thread`, `async`, `process`, `dask`).

- `steps`: the steps every workflow.py is built from (Preparation, the sources, Aggregation,
  Report);
- `running`: one run of a workflow, as `run`, `serve` and `bench` start it;
- `execution`: each source's attempts, bounded in number, time and concurrency;
- `executor_base`, `executors`, `in_process`, `process_pool`, `dask_cluster`: where `run` runs;
- `contained_loop`, `interruption`, `children`: what a source leaves behind is contained;
- `progress`, `source_clock`: what a run's sources do as it happens, and when.
"""
