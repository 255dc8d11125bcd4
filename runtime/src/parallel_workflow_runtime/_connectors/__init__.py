"""The connector kinds: dlt reads a source's rows (`sql`, `http`, `file`) and hands them to the
source's `run(source, rows)`; the cursor of each kind keeps where the last run stopped.

- `connectors`: a connector source's run, and what the kinds share (its target, its rows, the
  cursor it starts from, a failure's line);
- `read_context`: what every read carries (target, deadline, notes, secrets) and its rows' shapes;
- `cursor_tracker`: a cursor as a read moves it, and a cursor value as the history keeps it;
- `sql`, `http` (with `http_credentials`), `files`: each kind's target, reading and probe;
- `probe`: for `check`, a source's target reached without reading its rows;
- `connector_imports`: dlt, pandas and pyarrow imported once per process, under one lock;
- `profile`, `sample_data`: what a rendered source does until its user writes it.
"""
