"""The connector kinds: dlt reads a source's rows (`sql`, `http`, `file`) and hands them to the
source's `run(source, rows)`; the cursor of each kind keeps where the last run stopped.

- `connectors`: the kinds' readers and what they share (rows, cursors, credentials);
- `connector_files`: the `file` kind's folder of CSV and Parquet files;
- `connector_imports`: dlt, pandas and pyarrow imported once per process, under one lock;
- `profile`, `sample_data`: what a rendered source does until its user writes it.
"""
